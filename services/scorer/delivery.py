"""Getting one micro-batch's output into Kafka together with its input offsets.

Two strategies share one interface, :meth:`Delivery.deliver`:

* :class:`TransactionalDelivery` (exactly-once, the default): per batch
  ``begin_transaction``, produce the scores and dead letters,
  ``send_offsets_to_transaction`` with the consumer's group metadata,
  ``commit_transaction``. Output and offsets become visible together or not at all.
* :class:`AtLeastOnceDelivery`: an idempotent plain producer, ``flush`` per batch, and
  only then a synchronous commit of the offsets.

Either way a failure raises :class:`DeliveryError` after the producer is fit for the
next try, and the caller rewinds its consumer to the committed offsets and redoes the
batch. Rewinding, not resending the batch held in memory, is what makes it safe: after
a timed-out ``commit_transaction`` nobody knows whether the batch was committed, but
the group's committed offsets do, once a fresh producer has finished or aborted it.

Recovery of the transactional producer:

* an *abortable* error (``txn_requires_abort``): ``abort_transaction``;
* a *timeout*, a retriable or a *fatal* error (fenced, ...): throw the producer away and
  build a new one with the same ``transactional.id``. librdkafka lacks KIP-890, so a
  timed-out transactional call must not be retried on the same producer: a late
  produce of the old attempt could land in the next transaction. ``init_transactions``
  on the new instance bumps the epoch, which fences the old one and completes or aborts
  whatever it left open. If that fails too (the broker is down), the next ``deliver``
  tries again; the caller backs off in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from services.scorer.batch import OutRecord

log = logging.getLogger(__name__)

INIT_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 10.0
FLUSH_TIMEOUT_S = 30.0
BUFFER_FULL_WAIT_S = 0.05
DROPPED_VALUE_HEADER = "dlq.value.dropped"


class DeliveryError(Exception):
    """The batch was not (knowingly) delivered; rewind to the committed offsets and redo.

    ``cause`` is a short slug for logs and the retry metric: abortable, timeout, fatal,
    retriable, init, delivery, commit.
    """

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause
        self.detail = detail


# Wall time of each step of one delivery, seconds: produce, send_offsets, commit (or flush).
StepTimes = dict[str, float]


class Delivery(Protocol):
    def deliver(
        self, records: Sequence[OutRecord], offsets: list[TopicPartition], consumer: Consumer
    ) -> StepTimes: ...

    def close(self) -> None: ...


ProducerFactory = Callable[[], Producer]


def kafka_error(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def describe(exc: KafkaException) -> str:
    err = kafka_error(exc)
    return err.str() if err is not None else str(exc)


def classify(err: KafkaError | None) -> str:
    """Which recovery a failed transactional call needs: abortable, fatal, timeout or other."""
    if err is None:
        return "fatal"
    if err.fatal():
        return "fatal"
    if err.txn_requires_abort():
        return "abortable"
    if err.code() == KafkaError._TIMED_OUT:
        return "timeout"
    if err.retriable():
        return "retriable"
    return "other"


def produce_all(producer: Producer, records: Sequence[OutRecord], on_delivery: Any = None) -> None:
    """Produce every record; waits for room when the local queue is full."""
    for rec in records:
        while True:
            try:
                _produce_one(producer, rec, on_delivery)
                break
            except BufferError:
                producer.poll(BUFFER_FULL_WAIT_S)
        producer.poll(0)


def _produce_one(producer: Producer, rec: OutRecord, on_delivery: Any) -> None:
    kwargs: dict[str, Any] = {"key": rec.key, "value": rec.value, "headers": rec.headers}
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    try:
        producer.produce(rec.topic, **kwargs)
    except KafkaException as exc:
        err = kafka_error(exc)
        if not (rec.droppable_value and err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE):
            raise
        # A dead letter must not block the stream: keep the headers, say what was dropped.
        size = len(rec.value or b"")
        log.warning("dead letter of %d bytes is too large to copy; sending headers only", size)
        headers = [*(rec.headers or []), (DROPPED_VALUE_HEADER, f"too-large:{size}".encode())]
        kwargs.update(value=None, headers=headers)
        producer.produce(rec.topic, **kwargs)


@dataclass
class TransactionalDelivery:
    """Exactly-once: output and input offsets in one Kafka transaction per batch."""

    factory: ProducerFactory
    on_recreate: Callable[[], None] = lambda: None
    call_timeout_s: float = CALL_TIMEOUT_S
    init_timeout_s: float = INIT_TIMEOUT_S
    _producer: Producer | None = field(default=None, init=False)
    _created: int = field(default=0, init=False)

    def start(self) -> None:
        """Create the producer and ``init_transactions`` now (fail fast at start-up)."""
        self._ensure()

    def deliver(
        self, records: Sequence[OutRecord], offsets: list[TopicPartition], consumer: Consumer
    ) -> StepTimes:
        producer = self._ensure()
        try:
            t0 = time.perf_counter()
            producer.begin_transaction()
            produce_all(producer, records)
            t1 = time.perf_counter()
            producer.send_offsets_to_transaction(
                offsets, consumer.consumer_group_metadata(), self.call_timeout_s
            )
            t2 = time.perf_counter()
            producer.commit_transaction(self.call_timeout_s)
            t3 = time.perf_counter()
        except KafkaException as exc:
            kind = classify(kafka_error(exc))
            self._recover(producer, kind)
            raise DeliveryError(kind, describe(exc)) from None
        return {"produce": t1 - t0, "send_offsets": t2 - t1, "commit": t3 - t2}

    def _ensure(self) -> Producer:
        if self._producer is not None:
            return self._producer
        producer = self.factory()
        try:
            producer.init_transactions(self.init_timeout_s)
        except KafkaException as exc:
            _discard(producer)
            raise DeliveryError("init", describe(exc)) from None
        if self._created:
            self.on_recreate()
        self._created += 1
        self._producer = producer
        return producer

    def _recover(self, producer: Producer, kind: str) -> None:
        if kind == "abortable":
            try:
                producer.abort_transaction(self.call_timeout_s)
                return
            except KafkaException as exc:
                log.warning("abort_transaction failed (%s); replacing the producer", describe(exc))
        log.warning("replacing the transactional producer after a %s error", kind)
        self._producer = None
        _discard(producer)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # No transaction is open between batches; flush serves the last callbacks.
            producer.flush(self.call_timeout_s)
            producer.close()


@dataclass
class AtLeastOnceDelivery:
    """At-least-once: produce, flush, then commit the offsets synchronously."""

    factory: ProducerFactory
    flush_timeout_s: float = FLUSH_TIMEOUT_S
    _producer: Producer | None = field(default=None, init=False)

    def start(self) -> None:
        self._ensure()

    def _ensure(self) -> Producer:
        if self._producer is None:
            self._producer = self.factory()
        return self._producer

    def deliver(
        self, records: Sequence[OutRecord], offsets: list[TopicPartition], consumer: Consumer
    ) -> StepTimes:
        producer = self._ensure()
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                failures.append(err)

        t0 = time.perf_counter()
        try:
            produce_all(producer, records, on_delivery)
        except KafkaException as exc:
            raise DeliveryError("produce", describe(exc)) from None
        t1 = time.perf_counter()
        left = producer.flush(self.flush_timeout_s)
        if left or failures:
            first = failures[0].str() if failures else f"{left} records still queued"
            raise DeliveryError("delivery", f"{len(failures) or left} records not delivered: {first}")
        t2 = time.perf_counter()
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise DeliveryError("commit", describe(exc)) from None
        return {"produce": t1 - t0, "flush": t2 - t1, "commit": time.perf_counter() - t2}

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(self.flush_timeout_s)
            producer.close()


def _discard(producer: Producer) -> None:
    """Drop a producer that must not be used again, without waiting on its queue."""
    try:
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.poll(0)
    except (KafkaException, RuntimeError) as exc:
        log.debug("purging a discarded producer failed: %s", exc)
