"""What a replay publishes and when: one event-time stream of transactions and labels.

Pure (stdlib + numpy). ``services.replay`` publishes the plan to Kafka; the backtest
feeds the monitor logic in the same order with :func:`merged_order`.

Order. Transactions are ordered by ``event_time``, labels by ``label_time`` (the data
set files are sorted so, see :mod:`services.dataset`). The two are merged by
``(time, kind, position in its file)``: at the same millisecond a transaction goes
before a label (a label is about an earlier or simultaneous transaction), and within a
kind the file order is kept. The result is one total order, the same on every run.

Slice. ``[start_ms, end_ms)`` on each event's own time (label_time for a label).

Pacing. At speed ``s`` an event with time ``t`` is due ``(t - t0) / s`` after the first
event (``t0``) was released; ``s = 0`` never waits. The schedule stays anchored to the
first event, so a slow stretch is caught up and the average rate holds. The pacer only
says how long to wait; the caller waits on its stop flag, so SIGTERM cuts a long gap.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

Kind = Literal["txn", "label"]
TXN: Final = "txn"
LABEL: Final = "label"
KIND_RANK: Final = {TXN: 0, LABEL: 1}  # a transaction goes first at the same millisecond
TIME_FIELD: Final = {TXN: "event_time", LABEL: "label_time"}


class ReplayOrderError(ValueError):
    """An input stream is not sorted by its time field. The message is one line."""


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    kind: Kind
    time_ms: int
    seq: int  # position in its own stream (0-based)
    record: Mapping[str, Any]


def _checked(kind: Kind, records: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, int, int, ReplayEvent]]:
    """``(time, kind rank, seq, event)`` heap entries; refuses a stream that goes back in time."""
    time_field, rank = TIME_FIELD[kind], KIND_RANK[kind]
    last = None
    for seq, record in enumerate(records):
        t = int(record[time_field])
        if last is not None and t < last:
            raise ReplayOrderError(
                f"{kind} #{seq} has {time_field} {t} before the previous one ({last}); "
                f"the input must be sorted by {time_field}"
            )
        last = t
        yield t, rank, seq, ReplayEvent(kind, t, seq, record)


def merge_events(
    txns: Iterable[Mapping[str, Any]], labels: Iterable[Mapping[str, Any]] = ()
) -> Iterator[ReplayEvent]:
    """Transactions and labels in one stream ordered by ``(time, kind, seq)``; lazy."""
    for entry in heapq.merge(_checked(TXN, txns), _checked(LABEL, labels), key=lambda e: e[:3]):
        yield entry[3]


def select(events: Iterable[ReplayEvent], start_ms: int | None, end_ms: int | None) -> Iterator[ReplayEvent]:
    """The events with ``start_ms <= time < end_ms`` (either bound optional)."""
    for ev in events:
        if start_ms is not None and ev.time_ms < start_ms:
            continue
        if end_ms is not None and ev.time_ms >= end_ms:
            continue
        yield ev


def merged_order(
    txn_times: npt.ArrayLike, label_times: npt.ArrayLike
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int64]]:
    """The :func:`merge_events` order of two time columns, vectorised.

    Returns ``(kinds, positions)``: ``kinds[i]`` is 0 for a transaction and 1 for a label,
    ``positions[i]`` its row in its own column. Inputs need not be sorted here: rows are
    ordered by ``(time, kind, row)``, which for sorted inputs is exactly the merge.
    """
    t = np.asarray(txn_times, dtype=np.int64)
    lab = np.asarray(label_times, dtype=np.int64)
    times = np.concatenate([t, lab])
    kinds = np.concatenate([np.zeros(t.size, np.int8), np.ones(lab.size, np.int8)])
    rows = np.concatenate([np.arange(t.size, dtype=np.int64), np.arange(lab.size, dtype=np.int64)])
    order = np.lexsort((rows, kinds, times))
    return kinds[order], rows[order]


# --------------------------------------------------------------------------- pacing


@dataclass
class Pacer:
    """How long to wait before releasing an event, at ``speed`` (0 = never wait).

    ``clock`` is a monotonic clock in seconds, injected so tests need no sleeping.
    """

    speed: float
    clock: Callable[[], float]
    _anchor: tuple[float, int] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0, got {self.speed}")

    def delay(self, time_ms: int) -> float:
        """Seconds until the event at ``time_ms`` is due (0 when it is due already)."""
        if self.speed == 0:
            return 0.0
        now = self.clock()
        if self._anchor is None:
            self._anchor = (now, time_ms)
            return 0.0
        wall0, t0 = self._anchor
        due = wall0 + (time_ms - t0) / 1000.0 / self.speed
        return max(0.0, due - now)


# --------------------------------------------------------------------------- time, summary


def parse_instant(text: str) -> int:
    """ISO-8601 date or date-time as epoch ms UTC; no offset means UTC.

    ``2026-01-15``, ``2026-01-15T06:00``, ``2026-01-15T06:00:00Z``, ``...+01:00``.
    Raises ``ValueError`` with a one-line message.
    """
    raw = text.strip()
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 date or date-time, e.g. 2026-01-15T06:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def iso(ms: int) -> str:
    """Epoch ms as ``2026-01-15T06:00:00Z``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ReplaySummary:
    """What a replay did: counts per kind, the event-time span, the wall time."""

    counts: dict[str, int] = field(default_factory=lambda: {TXN: 0, LABEL: 0})
    first_ms: int | None = None
    last_ms: int | None = None
    wall_s: float = 0.0
    skipped: int = 0  # records that could not be encoded (logged, counted)
    delivery_failures: int = 0
    stopped_early: bool = False

    def add(self, kind: Kind, time_ms: int) -> None:
        self.counts[kind] += 1
        if self.first_ms is None:
            self.first_ms = time_ms
        self.last_ms = time_ms

    @property
    def published(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        return self.published / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "transactions": self.counts[TXN],
            "labels": self.counts[LABEL],
            "first_event_time": None if self.first_ms is None else iso(self.first_ms),
            "last_event_time": None if self.last_ms is None else iso(self.last_ms),
            "wall_s": round(self.wall_s, 3),
            "events_per_s": round(self.rate, 1),
            "skipped": self.skipped,
            "delivery_failures": self.delivery_failures,
            "stopped_early": self.stopped_early,
        }

    def render(self) -> str:
        span = "nothing"
        if self.first_ms is not None and self.last_ms is not None:
            days = (self.last_ms - self.first_ms) / 86_400_000
            span = f"{iso(self.first_ms)} .. {iso(self.last_ms)} ({days:.1f} days)"
        rows = [
            ("transactions", f"{self.counts[TXN]:,}"),
            ("labels", f"{self.counts[LABEL]:,}"),
            ("event time", span),
            ("wall time", f"{self.wall_s:.1f} s"),
            ("rate", f"{self.rate:,.0f} events/s"),
        ]
        if self.skipped:
            rows.append(("skipped", f"{self.skipped:,} (could not be encoded; see the log)"))
        if self.delivery_failures:
            rows.append(("NOT delivered", f"{self.delivery_failures:,}"))
        if self.stopped_early:
            rows.append(("stopped", "early, on a signal (everything produced was flushed)"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
