"""The trainer service's loop: retrain events in, challengers out (see :mod:`.job`).

Kafka: one consumer in ``--group-id`` on ``retrain``, ``read_committed``, manual commits.
An event's offset is committed only when its job is over and what it wrote is durable:
the challenger is registered (fsync'd, indexed) and announced on ``models.updates``; or
the event was trained already, is for another model, cannot train (too little data;
logged), or cannot be decoded (logged with partition and offset). So:

* a crash before registering (mid-training) re-delivers the event on restart, and it is
  trained from scratch: nothing was written;
* a crash after registering, before the commit, re-delivers it too; the job finds the
  event id in the lineage, trains nothing, and only finishes the verdict and the
  announcements (same event ids, so consumers dedupe).

A job runs in the polling thread and may take minutes: ``max.poll.interval.ms`` is set
to the longest job allowed, while librdkafka's background heartbeats keep the group
session alive (a short ``session.timeout.ms`` lets a restarted trainer take over fast).
Transient failures (the window cannot be read, the feature stage process died, an
announcement is not acknowledged) rewind to the event and retry it after a growing
pause. SIGTERM stops between events, or inside a job before anything is registered (the
event is then re-delivered).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.core.codec import Codec, DecodeError
from services.featurebuild.build import StageError
from services.trainer.job import JobResult, JobStopped
from services.trainer.lineage import PublishError
from services.trainer.sources import SourceError

log = logging.getLogger(__name__)

PREFIX = "fraudstream_trainer_"
POLL_S = 0.5
BACKOFF_S = (1.0, 60.0)  # first and longest pause before retrying a failed event
JOB_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class KafkaFatal(Exception):
    """A fatal consumer error: the process must restart."""


class Stop(Protocol):
    def is_set(self) -> bool: ...
    def wait(self, timeout: float) -> bool: ...


class Job(Protocol):
    """:class:`services.trainer.job.RetrainJob`."""

    def run(self, event: dict[str, Any]) -> JobResult: ...


class TrainerMetrics:
    """The trainer's Prometheus metrics on an injectable registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.events = Counter(
            PREFIX + "events_total",
            "Retrain events handled, by outcome (trained, duplicate, other_model, cannot_train, invalid)",
            ["outcome"],
            registry=r,
        )
        self.retries = Counter(
            PREFIX + "retries_total",
            "Events rewound after a transient failure, by kind",
            ["kind"],
            registry=r,
        )
        self.job_seconds = Histogram(
            PREFIX + "job_duration_seconds",
            "Time to handle one retrain event",
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.verdicts = Counter(
            PREFIX + "verdicts_total", "Promotion verdicts of new challengers (promote, hold)", ["action"],
            registry=r,
        )  # fmt: skip
        self.last_success = Gauge(
            PREFIX + "last_success_timestamp_seconds", "Wall-clock time of the last handled event", registry=r
        )


class TrainerService:
    def __init__(
        self,
        consumer: Consumer,
        job: Job,
        codec: Codec,
        topic: str,
        stop: Stop,
        metrics: TrainerMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer, self.job, self.codec, self.topic = consumer, job, codec, topic
        self.stop, self.metrics, self._clock = stop, metrics, clock
        self._backoff = BACKOFF_S[0]

    def run(self) -> None:
        """Handle events until ``stop``; leaves the group on the way out."""
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.stop.is_set():
                msg = self.consumer.poll(POLL_S)
                if msg is None:
                    continue
                if msg.error() is not None:
                    self._on_error(msg)
                    continue
                if self._handle(msg):
                    self._commit(msg)
        finally:
            self.consumer.close()

    # ------------------------------------------------------------------ one event

    def _handle(self, msg: Message) -> bool:
        """Run the event's job; True when the offset may be committed."""
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        try:
            event = self.codec.decode("RetrainEvent", msg.value())
        except DecodeError as exc:
            log.error("skipped undecodable retrain event %s: %s (%s)", where, exc.reason, exc.detail)
            self.metrics.events.labels("invalid").inc()
            return True
        started = self._clock()
        try:
            result = self.job.run(event)
        except JobStopped as exc:
            log.info("%s; retrain event %s will be handled again after the restart", exc, where)
            return False
        except (SourceError, PublishError, StageError) as exc:  # StageError: the feature stage died
            self._retry_later(msg, type(exc).__name__, str(exc))
            return False
        self.metrics.job_seconds.observe(self._clock() - started)
        self._record(result, where)
        self._backoff = BACKOFF_S[0]
        return True

    def _record(self, result: JobResult, where: str) -> None:
        self.metrics.events.labels(result.outcome).inc()
        self.metrics.last_success.set_to_current_time()
        if result.outcome == "trained" and result.action:
            self.metrics.verdicts.labels(result.action).inc()
        if result.outcome == "other_model":
            log.info("retrain event %s is not for this trainer: %s", where, result.detail)
        elif result.outcome == "cannot_train":
            log.error("retrain event %s gave no model: %s", where, result.detail)

    def _retry_later(self, msg: Message, kind: str, detail: str) -> None:
        """Rewind to ``msg`` so the next poll returns it again, after a growing pause."""
        self.metrics.retries.labels(kind).inc()
        log.warning("retrain event %s[%s]@%s failed (%s); retrying in %.0f s",
                    msg.topic(), msg.partition(), msg.offset(), detail, self._backoff)  # fmt: skip
        try:
            self.consumer.seek(TopicPartition(self.topic, msg.partition() or 0, msg.offset() or 0))
        except KafkaException as exc:  # the partition moved away: its new owner re-reads it
            log.warning("cannot rewind to the failed event (%s)", _text(exc))
        self.stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_S[1])

    def _commit(self, msg: Message) -> None:
        try:
            self.consumer.commit(message=msg, asynchronous=False)
        except KafkaException as exc:
            # Lost the partition meanwhile: the next owner re-delivers the event and the
            # lineage check turns it into a no-op.
            log.warning("commit after %s[%s]@%s failed: %s", msg.topic(), msg.partition(), msg.offset(),
                        _text(exc))  # fmt: skip

    def _on_error(self, msg: Message) -> None:
        err = msg.error()
        if err is None or err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise KafkaFatal(f"fatal Kafka error: {err.str()}")
        log.warning("Kafka: %s", err.str())

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing")

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing")


def _text(exc: KafkaException) -> str:
    arg = exc.args[0] if exc.args else exc
    return str(arg.str() if isinstance(arg, KafkaError) else arg)
