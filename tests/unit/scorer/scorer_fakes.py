"""In-memory stand-ins for the consumer, the delivery and the store, for loop unit tests.

They model only what the loop relies on: partitions with offsets, assignment, pause,
seek, committed offsets (moved only by a successful delivery), rebalance callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message, TopicPartition

from services.core.offline import OfflineFeatureStore
from services.online.store import StoreUnavailable
from services.runtime import StopFlag
from services.scorer.batch import OutRecord
from services.scorer.delivery import DeliveryError

TP = tuple[str, int]
Record = tuple[bytes | None, bytes | None]


class FakeConsumer:
    def __init__(
        self, logs: Mapping[TP, Sequence[tuple[bytes | None, bytes | None]]], stop: StopFlag
    ) -> None:
        self.logs = {tp: list(records) for tp, records in logs.items()}
        self.pos = dict.fromkeys(self.logs, 0)
        self.committed_offsets: dict[TP, int] = {}
        self.assigned: set[TP] = set()
        self.paused: set[TP] = set()
        self.stop = stop
        self.calls: list[tuple[Any, ...]] = []
        self.seeks: list[tuple[TP, int]] = []
        self.on_poll_while_paused: Callable[[FakeConsumer], None] | None = None
        self.callbacks: dict[str, Any] = {}
        self.closed = False

    # -- group membership
    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks
        self.calls.append(("subscribe", topics))

    def _join(self) -> None:
        if not self.assigned and not self.closed and "joined" not in self.callbacks:
            self.callbacks["joined"] = True
            self.callbacks["on_assign"](self, [TopicPartition(t, p) for t, p in self.logs])

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        self.assigned |= {(tp.topic, tp.partition) for tp in tps}

    def revoke(self, tps: list[TP]) -> None:
        self.callbacks["on_revoke"](self, [TopicPartition(t, p) for t, p in tps])
        self.assigned -= set(tps)
        self.paused -= set(tps)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in sorted(self.assigned)]

    def pause(self, tps: list[TopicPartition]) -> None:
        self.calls.append(("pause", sorted((tp.topic, tp.partition) for tp in tps)))
        self.paused |= {(tp.topic, tp.partition) for tp in tps}

    def resume(self, tps: list[TopicPartition]) -> None:
        self.calls.append(("resume", sorted((tp.topic, tp.partition) for tp in tps)))
        self.paused -= {(tp.topic, tp.partition) for tp in tps}

    # -- fetching
    def _next(self) -> Message | None:
        for tp in sorted(self.assigned - self.paused):
            if self.pos[tp] < len(self.logs[tp]):
                key, value = self.logs[tp][self.pos[tp]]
                msg = Message(topic=tp[0], partition=tp[1], offset=self.pos[tp], key=key, value=value)
                self.pos[tp] += 1
                return msg
        return None

    def poll(self, timeout: float) -> Message | None:
        self._join()
        self.calls.append(("poll", timeout))
        if self.paused and self.on_poll_while_paused is not None:
            self.on_poll_while_paused(self)
        msg = self._next()
        if msg is None and self.drained():
            self.stop.set()
        return msg

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.calls.append(("consume", num_messages, timeout))
        out: list[Message] = []
        while len(out) < num_messages and (msg := self._next()) is not None:
            out.append(msg)
        return out

    def drained(self) -> bool:
        return all(self.committed_offsets.get(tp, 0) == len(log) for tp, log in self.logs.items())

    # -- offsets
    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        got = self.committed_offsets
        return [
            TopicPartition(tp.topic, tp.partition, got.get((tp.topic, tp.partition), -1001)) for tp in tps
        ]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append(((tp.topic, tp.partition), tp.offset))
        self.pos[(tp.topic, tp.partition)] = tp.offset

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.pos[(tp.topic, tp.partition)]) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, len(self.logs[(tp.topic, tp.partition)])

    def consumer_group_metadata(self) -> object:
        return object()

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeDelivery:
    """Commits offsets into the fake consumer, like a Kafka transaction would; fails the
    first ``fail`` deliveries."""

    fail: int = 0
    delivered: list[tuple[list[OutRecord], dict[TP, int]]] = field(default_factory=list)
    attempts: int = 0
    closed: bool = False

    def deliver(
        self, records: Sequence[OutRecord], offsets: list[TopicPartition], consumer: Any
    ) -> dict[str, float]:
        self.attempts += 1
        if self.fail:
            self.fail -= 1
            raise DeliveryError("abortable", "injected")
        committed = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        consumer.committed_offsets.update(committed)
        self.delivered.append((list(records), committed))
        return {}

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeStore:
    """The offline store behind the online interface, failing ``fail`` times first."""

    fail: int = 0
    calls: int = 0
    store: OfflineFeatureStore = field(default_factory=OfflineFeatureStore)
    on_fail: Callable[[], None] | None = None

    def process_batch(self, txns: Sequence[Mapping[str, Any]]) -> list[Any]:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            if self.on_fail is not None:
                self.on_fail()
            raise StoreUnavailable("injected outage")
        return [self.store.process(t) for t in txns]
