"""Publish a replay plan to Kafka: the producer loop, with no settings and no files.

Producer idioms (confluent-kafka's ``examples/producer.py``): ``poll(0)`` after each
``produce`` to serve delivery callbacks, a full local queue (``BufferError``) is waited
out by polling, and ``flush()`` runs once, at the end. Records are keyed by card id, so
a card's transactions and labels each keep their order on one partition.

The Kafka record timestamp is left to the producer (now), not set to the event time:
topics expire segments by record timestamp, and months-old event times would make the
broker delete a replay minutes after it was written. Event time travels in the value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from services.core.codec import EncodeError
from services.core.replay_plan import LABEL, TXN, Kind, Pacer, ReplayEvent, ReplaySummary
from services.kafka.protocols import Producer

log = logging.getLogger(__name__)

SCHEMA = {TXN: "Transaction", LABEL: "Label"}
BUFFER_FULL_POLL_S = 0.05
FLUSH_TIMEOUT_S = 60.0


class Stop(Protocol):
    """``services.runtime.StopFlag``: set by SIGTERM/SIGINT."""

    def is_set(self) -> bool: ...
    def wait(self, timeout: float) -> bool: ...


@dataclass(frozen=True)
class ReplayTopics:
    transactions: str
    labels: str

    def of(self, kind: Kind) -> str:
        return self.transactions if kind == TXN else self.labels


class DeliveryTracker:
    """The delivery callback: counts failures and keeps the first reason."""

    def __init__(self) -> None:
        self.failures = 0
        self.first_error: str | None = None

    def __call__(self, err: Any, msg: Any) -> None:
        if err is None:
            return
        self.failures += 1
        if self.first_error is None:
            self.first_error = str(err)
            log.error("a record was not delivered: %s", err)


def produce(
    producer: Producer, topic: str, key: bytes, value: bytes, on_delivery: Callable[[Any, Any], None]
) -> None:
    """Produce one record, waiting out a full local queue by serving callbacks."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(BUFFER_FULL_POLL_S)
    producer.poll(0)


def publish(
    events: Iterable[ReplayEvent],
    *,
    producer: Producer,
    encode: Callable[[str, Mapping[str, Any]], bytes],
    topics: ReplayTopics,
    pacer: Pacer,
    stop: Stop,
    progress: Callable[[ReplayEvent], None] = lambda ev: None,
    clock: Callable[[], float] = time.monotonic,
    flush_timeout_s: float = FLUSH_TIMEOUT_S,
) -> ReplaySummary:
    """Produce every event in order, paced; stop early (and still flush) on ``stop``."""
    summary = ReplaySummary()
    tracker = DeliveryTracker()
    started = clock()
    for ev in events:
        if stop.is_set():
            summary.stopped_early = True
            break
        delay = pacer.delay(ev.time_ms)
        if delay > 0 and stop.wait(delay):
            summary.stopped_early = True
            break
        try:
            value = encode(SCHEMA[ev.kind], ev.record)
        except EncodeError as exc:
            # The data set is ours and valid by construction; a bad record is counted
            # and logged (without ids), never a crash halfway through a replay.
            summary.skipped += 1
            log.warning("skipped %s #%d: cannot encode (%s)", ev.kind, ev.seq, exc.reason)
            continue
        key = str(ev.record["card_id"]).encode("utf-8")
        produce(producer, topics.of(ev.kind), key, value, tracker)
        summary.add(ev.kind, ev.time_ms)
        progress(ev)
    left = producer.flush(flush_timeout_s)
    summary.wall_s = clock() - started
    summary.delivery_failures = tracker.failures + left
    if left:
        log.error("%d records still undelivered after %.0f s of flushing", left, flush_timeout_s)
    return summary
