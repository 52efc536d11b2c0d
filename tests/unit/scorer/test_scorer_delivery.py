"""Transactional producer lifecycle and at-least-once ordering, with a scripted producer."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services.scorer.batch import OutRecord
from services.scorer.delivery import (
    DROPPED_VALUE_HEADER,
    AtLeastOnceDelivery,
    DeliveryError,
    TransactionalDelivery,
    classify,
)

OFFSETS = [TopicPartition("t", 0, 5)]
RECORDS = [OutRecord("s", b"k", b"v"), OutRecord("dlq", b"k", b"x" * 10, [("h", b"1")], droppable_value=True)]


def error(code: int, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, "injected", **flags))


class FakeProducer:
    """Records calls; ``fail`` maps a method name to the exception its next call raises."""

    def __init__(self, fail: dict[str, list[BaseException]] | None = None) -> None:
        self.fail = fail or {}
        self.calls: list[str] = []
        self.produced: list[dict[str, Any]] = []
        self.pending: list[Any] = []
        self.delivery_error: KafkaError | None = None

    def _call(self, name: str) -> None:
        self.calls.append(name)
        queue = self.fail.get(name)
        if queue:
            raise queue.pop(0)

    def init_transactions(self, timeout: float) -> None:
        self._call("init_transactions")

    def begin_transaction(self) -> None:
        self._call("begin_transaction")

    def produce(self, topic: str, **kwargs: Any) -> None:
        self._call("produce")
        self.produced.append({"topic": topic, **kwargs})
        cb = kwargs.get("on_delivery")
        if cb is not None:
            self.pending.append(cb)

    def poll(self, timeout: float) -> int:
        self.calls.append("poll")
        return 0

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self._call("send_offsets_to_transaction")

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit_transaction")

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort_transaction")

    def purge(self, **kwargs: Any) -> None:
        self.calls.append("purge")

    def flush(self, timeout: float) -> int:
        self.calls.append("flush")
        for cb in self.pending:
            cb(self.delivery_error, None)
        self.pending = []
        return 0

    def close(self) -> None:
        self.calls.append("close")


class FakeConsumer:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.commits: list[Any] = []

    def consumer_group_metadata(self) -> object:
        return "meta"

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        assert asynchronous is False
        if self.fail:
            raise self.fail
        self.commits.append(offsets)


def a_consumer(fail: BaseException | None = None) -> Any:
    return FakeConsumer(fail)


Script = dict[str, list[BaseException]]


def transactional(
    *scripts: dict[str, list[BaseException]],
) -> tuple[TransactionalDelivery, list[FakeProducer], list[int]]:
    made: list[FakeProducer] = []
    recreated: list[int] = []
    queue = list(scripts)

    def factory() -> FakeProducer:
        made.append(FakeProducer(queue.pop(0) if queue else None))
        return made[-1]

    return TransactionalDelivery(factory=factory, on_recreate=lambda: recreated.append(1)), made, recreated  # type: ignore[arg-type]


def test_classify() -> None:
    assert classify(KafkaError(KafkaError._FENCED, "x", fatal=True)) == "fatal"
    assert classify(KafkaError(KafkaError._STATE, "x", txn_requires_abort=True)) == "abortable"
    assert classify(KafkaError(KafkaError._TIMED_OUT, "x", retriable=True)) == "timeout"
    assert classify(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, "x", retriable=True)) == "retriable"
    assert classify(None) == "fatal"


def test_happy_path_is_one_transaction() -> None:
    d, made, _ = transactional()
    d.start()
    d.deliver(RECORDS, OFFSETS, a_consumer())
    calls = [c for c in made[0].calls if c != "poll"]
    assert calls == ["init_transactions", "begin_transaction", "produce", "produce",
                     "send_offsets_to_transaction", "commit_transaction"]  # fmt: skip


def test_abortable_error_aborts_and_keeps_the_producer() -> None:
    d, made, recreated = transactional(
        {"commit_transaction": [error(KafkaError._STATE, txn_requires_abort=True)]}
    )
    with pytest.raises(DeliveryError) as exc:
        d.deliver(RECORDS, OFFSETS, a_consumer())
    assert exc.value.cause == "abortable"
    assert made[0].calls[-1] == "abort_transaction"
    d.deliver(RECORDS, OFFSETS, a_consumer())
    assert len(made) == 1 and recreated == []


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (error(KafkaError._TIMED_OUT, retriable=True), "timeout"),
        (error(KafkaError._FENCED, fatal=True), "fatal"),
        (error(KafkaError.COORDINATOR_NOT_AVAILABLE, retriable=True), "retriable"),
    ],
)
def test_timeout_or_fatal_replaces_the_producer(exc: KafkaException, cause: str) -> None:
    d, made, recreated = transactional({"commit_transaction": [exc]})
    with pytest.raises(DeliveryError) as err:
        d.deliver(RECORDS, OFFSETS, a_consumer())
    assert err.value.cause == cause
    assert "abort_transaction" not in made[0].calls and "purge" in made[0].calls
    d.deliver(RECORDS, OFFSETS, a_consumer())
    assert len(made) == 2 and made[1].calls[0] == "init_transactions" and recreated == [1]


def test_failed_abort_replaces_the_producer() -> None:
    d, made, _ = transactional(
        {
            "send_offsets_to_transaction": [error(KafkaError._STATE, txn_requires_abort=True)],
            "abort_transaction": [error(KafkaError._TIMED_OUT, retriable=True)],
        }
    )
    with pytest.raises(DeliveryError):
        d.deliver(RECORDS, OFFSETS, a_consumer())
    d.deliver(RECORDS, OFFSETS, a_consumer())
    assert len(made) == 2


def test_init_failure_is_retried_on_the_next_delivery() -> None:
    d, made, _ = transactional({"init_transactions": [error(KafkaError._TIMED_OUT, retriable=True)]})
    with pytest.raises(DeliveryError) as exc:
        d.deliver(RECORDS, OFFSETS, a_consumer())
    assert exc.value.cause == "init"
    d.deliver(RECORDS, OFFSETS, a_consumer())
    assert len(made) == 2 and "commit_transaction" in made[1].calls


def test_full_queue_waits_and_an_oversized_dead_letter_keeps_its_headers() -> None:
    d, made, _ = transactional(
        {
            "produce": [
                BufferError(),
                error(KafkaError.MSG_SIZE_TOO_LARGE),
                error(KafkaError.MSG_SIZE_TOO_LARGE),
            ]
        }
    )
    with pytest.raises(DeliveryError):  # a too-large score is a real error: not droppable
        d.deliver([OutRecord("s", b"k", b"v")], OFFSETS, a_consumer())
    d2, made2, _ = transactional({"produce": [BufferError(), error(KafkaError.MSG_SIZE_TOO_LARGE)]})
    d2.deliver([RECORDS[1]], OFFSETS, a_consumer())
    sent = made2[0].produced[-1]
    assert sent["value"] is None
    assert sent["headers"] == [("h", b"1"), (DROPPED_VALUE_HEADER, b"too-large:10")]


def test_at_least_once_commits_only_after_delivery() -> None:
    producer = FakeProducer()
    d = AtLeastOnceDelivery(factory=lambda: producer)  # type: ignore[arg-type,return-value]
    consumer = FakeConsumer()
    d.deliver(RECORDS, OFFSETS, consumer)  # type: ignore[arg-type]
    assert producer.calls[-1] == "flush" and consumer.commits == [OFFSETS]
    producer.delivery_error = KafkaError(KafkaError.NOT_ENOUGH_REPLICAS, "injected")
    with pytest.raises(DeliveryError) as exc:
        d.deliver(RECORDS, OFFSETS, consumer)  # type: ignore[arg-type]
    assert exc.value.cause == "delivery" and len(consumer.commits) == 1
    producer.delivery_error = None
    with pytest.raises(DeliveryError) as exc:
        d.deliver(RECORDS, OFFSETS, a_consumer(fail=error(KafkaError.REBALANCE_IN_PROGRESS)))
    assert exc.value.cause == "commit"


def test_deliveries_say_how_long_each_step_took() -> None:
    d, _, _ = transactional()
    steps = d.deliver(RECORDS, OFFSETS, a_consumer())
    assert set(steps) == {"produce", "send_offsets", "commit"}
    assert all(s >= 0 for s in steps.values())
