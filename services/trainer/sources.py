"""Read a time range of a Kafka topic (read_committed): the retrain's training data.

Kafka finds offsets by *record timestamp*, while a range is asked for in *event time*
(``event_time`` of a transaction, ``label_time`` of a label). The link:

* **Seek**: per partition, ``offsets_for_times(start - slack)``, the first record whose
  timestamp is at or after ``start - slack``. This assumes that a record's timestamp is
  never earlier than its event time minus ``slack``: a producer cannot publish a payment
  before it happens (CreateTime is set when producing; LogAppendTime is later still), so
  ``slack`` only covers clock skew. Every record of the range is at or after the seek.
  A replay publishes history *now*, far after its event times: the seek then starts
  early and the event-time filter does the rest (correct, just more to read).
* **End**: each partition's high watermark when the read starts (or end of partition,
  whichever comes first: with read_committed a partition can end at its last stable
  offset). Records written after the read started are not part of it.
* **Filter**: every record is decoded with our Avro codec and kept when the caller's
  ``keep`` says so (the event-time range, plus domain checks). Undecodable records are
  counted and skipped: the scorer dead-letters them, so no model should learn from them.

A read that makes no progress for ``idle_timeout_s`` (broker down, a long open
transaction) raises :class:`SourceError`; the caller retries the whole event later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.core.codec import Codec, DecodeError

log = logging.getLogger(__name__)

BATCH = 2_000
POLL_S = 0.5

Keep = Callable[[dict[str, Any]], bool]


class SourceError(Exception):
    """The range could not be read now (Kafka unreachable, slow, topic missing)."""


@dataclass
class RangeStats:
    """What one read saw, for the manifest's lineage."""

    topic: str
    seek_ms: int
    partitions: dict[int, tuple[int, int]] = field(default_factory=dict)  # [start, end) offsets
    records: int = 0
    kept: int = 0
    undecodable: int = 0
    rejected: int = 0  # decoded but not kept (outside the range or failing the domain checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "seek_ms": self.seek_ms,
            "offsets": {str(p): list(r) for p, r in sorted(self.partitions.items())},
            "records": self.records,
            "kept": self.kept,
            "undecodable": self.undecodable,
            "not_kept": self.rejected,
        }


class RangeReader:
    """Reads ranges with short-lived consumers from ``consumer_factory`` (assign mode,
    no commits; configure them read_committed with ``enable.partition.eof``)."""

    def __init__(
        self,
        consumer_factory: Callable[[], Consumer],
        codec: Codec,
        *,
        slack_ms: int,
        timeout_s: float = 15.0,
        idle_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = consumer_factory
        self._codec = codec
        self._slack_ms = slack_ms
        self._timeout_s = timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock

    def read(
        self, topic: str, schema: str, start_ms: int, keep: Keep
    ) -> tuple[list[dict[str, Any]], RangeStats]:
        """Every record of ``topic`` kept by ``keep``, from event time ``start_ms`` on."""
        stats = RangeStats(topic=topic, seek_ms=max(0, start_ms - self._slack_ms))
        try:
            consumer = self._factory()
        except KafkaException as exc:
            raise SourceError(f"cannot create a Kafka consumer: {_text(exc)}") from None
        try:
            stats.partitions = self._ranges(consumer, topic, stats.seek_ms)
            records = self._consume(consumer, topic, schema, keep, stats)
        except KafkaException as exc:
            raise SourceError(f"reading {topic}: {_text(exc)}") from None
        finally:
            consumer.close()
        log.info(
            "read %s: %d records, kept %d (%d undecodable, %d outside the range or invalid)",
            topic,
            stats.records,
            stats.kept,
            stats.undecodable,
            stats.rejected,
        )
        return records, stats

    def _ranges(self, consumer: Consumer, topic: str, seek_ms: int) -> dict[int, tuple[int, int]]:
        meta = consumer.list_topics(topic, timeout=self._timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise SourceError(
                f"topic {topic} does not exist; create the topics first "
                f"(`fraudstream topics create` with the same --topic-prefix)"
            )
        wanted = [TopicPartition(topic, p, seek_ms) for p in sorted(meta.partitions)]
        found = consumer.offsets_for_times(wanted, timeout=self._timeout_s)
        ranges: dict[int, tuple[int, int]] = {}
        for tp in found:
            if tp.error is not None:
                raise SourceError(f"offsets_for_times on {topic}[{tp.partition}]: {tp.error}")
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=self._timeout_s, cached=False
            )
            start = high if tp.offset < 0 else max(tp.offset, low)  # < 0: every record is older
            if start < high:
                ranges[tp.partition] = (start, high)
        return ranges

    def _consume(
        self, consumer: Consumer, topic: str, schema: str, keep: Keep, stats: RangeStats
    ) -> list[dict[str, Any]]:
        ranges = stats.partitions
        if not ranges:
            return []
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in ranges.items()])
        pending = set(ranges)
        out: list[dict[str, Any]] = []
        last_progress = self._clock()
        while pending:
            batch = consumer.consume(BATCH, POLL_S)
            for msg in batch:
                partition = msg.partition()
                if partition is None or partition not in pending:
                    continue
                if msg.error() is not None:
                    self._on_error(msg, pending, consumer, topic)
                    continue
                offset = msg.offset() or 0
                end = ranges[partition][1]
                if offset < end:
                    self._add(msg, schema, keep, stats, out)
                if offset >= end - 1:
                    self._done(consumer, topic, partition, pending)
            now = self._clock()
            if batch:
                last_progress = now
            elif now - last_progress > self._idle_timeout_s:
                raise SourceError(
                    f"no progress reading {topic} for {self._idle_timeout_s:g} s "
                    f"(partitions {sorted(pending)} unfinished)"
                )
        return out

    def _add(
        self, msg: Message, schema: str, keep: Keep, stats: RangeStats, out: list[dict[str, Any]]
    ) -> None:
        stats.records += 1
        try:
            record = self._codec.decode(schema, msg.value())
        except DecodeError as exc:
            stats.undecodable += 1
            log.debug("skipped %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), exc.reason)
            return
        if keep(record):
            stats.kept += 1
            out.append(record)
        else:
            stats.rejected += 1

    def _on_error(self, msg: Message, pending: set[int], consumer: Consumer, topic: str) -> None:
        err = msg.error()
        if err is None:
            return
        if err.code() == KafkaError._PARTITION_EOF:
            self._done(consumer, topic, int(msg.partition() or 0), pending)
            return
        if err.fatal() or not err.retriable():
            raise SourceError(f"reading {topic}[{msg.partition()}]: {err.str()}")
        log.warning("reading %s[%s]: %s (retrying)", topic, msg.partition(), err.str())

    @staticmethod
    def _done(consumer: Consumer, topic: str, partition: int, pending: set[int]) -> None:
        pending.discard(partition)
        consumer.pause([TopicPartition(topic, partition)])  # nothing more is wanted from it


def _text(exc: KafkaException) -> str:
    arg = exc.args[0] if exc.args else exc
    return str(arg.str() if isinstance(arg, KafkaError) else arg)
