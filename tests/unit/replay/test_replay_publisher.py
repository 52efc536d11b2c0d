"""The replay producer loop against a fake producer and a fake clock: order, keys,
pacing without sleeping, BufferError, SIGTERM and delivery failures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from services.core.codec import Codec, EncodeError
from services.core.replay_plan import LABEL, TXN, Pacer, merge_events
from services.replay.publisher import ReplayTopics, publish

T0 = 1_767_225_600_000
TOPICS = ReplayTopics("p.transactions", "p.labels")


def txn(i: int, t: int) -> dict[str, Any]:
    return {
        "txn_id": f"t{i}", "card_id": f"card-{i % 4}", "merchant_id": "m1", "mcc": 5411,
        "amount": 10.0 + i, "currency": "EUR", "country": "DE", "channel": "POS",
        "device_id": None, "event_time": t,
    }  # fmt: skip


def label(i: int, t: int) -> dict[str, Any]:
    return {
        "txn_id": f"t{i}",
        "card_id": f"card-{i % 4}",
        "is_fraud": i % 2 == 0,
        "label_time": t,
        "source": "CHARGEBACK",
    }


class FakeProducer:
    """Records produce/poll/flush calls; raises BufferError on chosen produce attempts."""

    def __init__(self, buffer_full_on: set[int] | None = None, fail: set[int] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.pending: list[tuple[int, Callable[..., None]]] = []
        self.attempts = 0
        self.buffer_full_on = buffer_full_on or set()
        self.fail = fail or set()

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> None:
        self.attempts += 1
        if self.attempts in self.buffer_full_on:
            self.calls.append(("buffer_full", None))
            raise BufferError("queue full")
        assert value is not None and key is not None
        self.sent.append((topic, key, value))
        self.pending.append((len(self.sent) - 1, kw["on_delivery"]))
        self.calls.append(("produce", topic))

    def poll(self, timeout: float = 0) -> int:
        self.calls.append(("poll", timeout))
        return self._deliver()

    def flush(self, timeout: float = 0) -> int:
        self.calls.append(("flush", timeout))
        self._deliver()
        return 0

    def _deliver(self) -> int:
        n = len(self.pending)
        for index, callback in self.pending:
            callback("broker said no" if index in self.fail else None, None)
        self.pending.clear()
        return n


class FakeTime:
    """A monotonic clock and a stop flag whose wait() advances the clock instead of sleeping."""

    def __init__(self, stop_after_waits: int | None = None) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.stopped = False
        self.stop_after_waits = stop_after_waits

    def clock(self) -> float:
        return self.now

    def is_set(self) -> bool:
        return self.stopped

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        self.now += timeout
        if self.stop_after_waits is not None and len(self.waits) >= self.stop_after_waits:
            self.stopped = True
        return self.stopped


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.load()


def stream() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    txns = [txn(i, T0 + i * 10_000) for i in range(10)]
    labels = [label(1, T0 + 15_000), label(4, T0 + 40_000), label(2, T0 + 95_000)]
    return txns, labels


def run(
    producer: FakeProducer,
    clock: FakeTime,
    speed: float,
    codec: Codec,
    encode: Callable[[str, Mapping[str, Any]], bytes] | None = None,
) -> Any:
    txns, labels = stream()
    return publish(
        merge_events(txns, labels),
        producer=producer,
        encode=encode or codec.encode,
        topics=TOPICS,
        pacer=Pacer(speed, clock.clock),
        stop=clock,
        clock=clock.clock,
    )


@pytest.mark.parametrize("speed", [0.0, 1.0, 1000.0])
def test_publishes_in_merged_event_time_order_at_any_speed(speed: float, codec: Codec) -> None:
    producer, clock = FakeProducer(), FakeTime()
    summary = run(producer, clock, speed, codec)
    txns, labels = stream()
    expected = [(TOPICS.of(e.kind), e.record) for e in merge_events(txns, labels)]
    got = [
        (topic, codec.decode("Transaction" if topic == TOPICS.transactions else "Label", value))
        for topic, _, value in producer.sent
    ]
    assert got == expected
    assert all(
        key == decoded["card_id"].encode()
        for (_, key, _), (_, decoded) in zip(producer.sent, got, strict=True)
    )
    assert summary.counts == {TXN: 10, LABEL: 3} and summary.delivery_failures == 0
    # Waiting only ever happens between events, and adds up to the span over the speed.
    expected_wait = 0.0 if speed == 0 else 95.0 / speed
    assert sum(clock.waits) == pytest.approx(expected_wait)


def test_poll_after_each_produce_and_one_flush_at_the_end(codec: Codec) -> None:
    producer = FakeProducer()
    run(producer, FakeTime(), 0, codec)
    kinds = [c[0] for c in producer.calls]
    assert kinds.count("flush") == 1 and kinds[-1] == "flush"
    for i, kind in enumerate(kinds):
        if kind == "produce":
            assert producer.calls[i + 1] == ("poll", 0)


def test_a_full_queue_is_waited_out_by_polling(codec: Codec) -> None:
    producer = FakeProducer(buffer_full_on={2, 3, 7})
    summary = run(producer, FakeTime(), 0, codec)
    assert len(producer.sent) == 13 and summary.published == 13
    first_full = producer.calls.index(("buffer_full", None))
    assert producer.calls[first_full + 1][0] == "poll" and producer.calls[first_full + 1][1] > 0


def test_stop_ends_the_replay_early_and_still_flushes(codec: Codec) -> None:
    producer, clock = FakeProducer(), FakeTime(stop_after_waits=3)
    summary = run(producer, clock, 1.0, codec)
    assert summary.stopped_early
    assert summary.published == 3  # the fourth event's wait was cut short by the signal
    assert producer.calls[-1][0] == "flush"


def test_delivery_failures_are_counted(codec: Codec) -> None:
    producer = FakeProducer(fail={0, 5})
    summary = run(producer, FakeTime(), 0, codec)
    assert summary.delivery_failures == 2


def test_a_record_that_cannot_be_encoded_is_counted_and_skipped(codec: Codec) -> None:
    def encode(name: str, record: Mapping[str, Any]) -> bytes:
        if record.get("txn_id") == "t3" and name == "Transaction":
            raise EncodeError("out_of_range", "bad amount")
        return codec.encode(name, record)

    producer = FakeProducer()
    summary = run(producer, FakeTime(), 0, codec, encode)
    assert summary.skipped == 1 and summary.published == 12
