"""In-memory stand-ins for the trainer service's Kafka sides (unit tests only).

:class:`ListSource` serves a data set's records the way the range reader would (the
job's ``keep`` filter decides); :class:`FakeConsumer` plays a subscribed consumer over a
list of messages, remembering commits and seeks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from services.trainer.lineage import PublishError
from services.trainer.sources import RangeStats

DAY_MS = 86_400_000


class ListSource:
    """``RangeReader.read`` over lists; counts reads."""

    def __init__(self, txns: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]]) -> None:
        self.records = {"Transaction": list(txns), "Label": list(labels)}
        self.reads: list[tuple[str, str, int]] = []

    def read(
        self, topic: str, schema: str, start_ms: int, keep: Callable[[dict[str, Any]], bool]
    ) -> tuple[list[dict[str, Any]], RangeStats]:
        self.reads.append((topic, schema, start_ms))
        records = self.records[schema]
        out = [dict(r) for r in records if keep(dict(r))]
        stats = RangeStats(topic=topic, seek_ms=start_ms, records=len(records), kept=len(out))
        stats.rejected = len(records) - len(out)
        return out, stats


class Announcements(list[dict[str, Any]]):
    """The announcer: keeps every model-update record; ``fail`` more calls raise first."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = 0

    def __call__(self, record: dict[str, Any]) -> None:
        if self.fail:
            self.fail -= 1
            raise PublishError("models.updates: broker down (test)")
        self.append(record)

    def actions(self) -> list[tuple[str, str]]:
        return [(r["action"], r["version"]) for r in self]


class Flag:
    """A StopFlag without signals."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(min(timeout, 0.01))  # tests never wait for real


def retrain_event(event_id: str, window_end: int, model_name: str = "fraud") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "emitted_at": window_end,
        "reason": "DRIFT",
        "model_name": model_name,
        "model_version": "1",
        "window_start": window_end - 2 * DAY_MS,
        "window_end": window_end,
        "psi": {"amount": 0.4},
        "drifted_features": ["amount"],
        "recall": None,
        "recall_baseline": None,
        "maturity": None,
        "details": "test",
    }


@dataclass
class FakeError:
    code_: int
    fatal_: bool = False

    def code(self) -> int:
        return self.code_

    def fatal(self) -> bool:
        return self.fatal_

    def str(self) -> str:
        return f"error {self.code_}"


@dataclass
class FakeMessage:
    value_: bytes | None
    offset_: int
    partition_: int = 0
    topic_: str = "retrain"
    error_: FakeError | None = None

    def value(self) -> bytes | None:
        return self.value_

    def offset(self) -> int:
        return self.offset_

    def partition(self) -> int:
        return self.partition_

    def topic(self) -> str:
        return self.topic_

    def error(self) -> FakeError | None:
        return self.error_


@dataclass
class FakeConsumer:
    """Delivers ``messages`` in order; sets ``stop`` once they are all delivered and
    the loop polls again (so ``run`` returns)."""

    messages: list[FakeMessage]
    stop: Flag
    position: int = 0
    commits: list[int] = field(default_factory=list)
    seeks: list[int] = field(default_factory=list)
    closed: bool = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics = topics

    def poll(self, timeout: float) -> FakeMessage | None:
        if self.position >= len(self.messages):
            self.stop.set()
            return None
        msg = self.messages[self.position]
        self.position += 1
        return msg

    def commit(self, message: FakeMessage, asynchronous: bool = True) -> None:
        assert not asynchronous
        self.commits.append(message.offset() + 1)

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append(tp.offset)
        self.position = next(i for i, m in enumerate(self.messages) if m.offset() == tp.offset)

    def close(self) -> None:
        self.closed = True


PARTITION_EOF = KafkaError._PARTITION_EOF
