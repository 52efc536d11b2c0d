"""The replay plan: merge order, ties, slices, pacing and time parsing (pure, no Kafka)."""

from __future__ import annotations

import random

import pytest

from services.core.replay_plan import (
    LABEL,
    TXN,
    Pacer,
    ReplayOrderError,
    ReplaySummary,
    iso,
    merge_events,
    merged_order,
    parse_instant,
    select,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def txn(i: int, t: int) -> dict[str, object]:
    return {"txn_id": f"t{i}", "card_id": f"c{i % 3}", "event_time": t}


def label(i: int, t: int) -> dict[str, object]:
    return {"txn_id": f"t{i}", "card_id": f"c{i % 3}", "label_time": t, "is_fraud": True}


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_merge_orders_by_time_with_transactions_first_on_ties() -> None:
    txns = [txn(0, T0), txn(1, T0 + 10), txn(2, T0 + 10), txn(3, T0 + 30)]
    labels = [label(0, T0 + 10), label(1, T0 + 20), label(2, T0 + 20)]
    got = [(e.kind, e.time_ms, e.seq) for e in merge_events(txns, labels)]
    assert got == [
        (TXN, T0, 0),
        (TXN, T0 + 10, 1),
        (TXN, T0 + 10, 2),
        (LABEL, T0 + 10, 0),
        (LABEL, T0 + 20, 1),
        (LABEL, T0 + 20, 2),
        (TXN, T0 + 30, 3),
    ]


def test_merge_is_deterministic_and_keeps_records() -> None:
    txns = [txn(i, T0 + i // 2) for i in range(50)]
    labels = [label(i, T0 + i) for i in range(0, 50, 5)]
    first = list(merge_events(txns, labels))
    again = list(merge_events(txns, labels))
    assert first == again
    assert [e.record for e in first if e.kind == TXN] == txns
    assert [e.record for e in first if e.kind == LABEL] == labels


def test_an_unsorted_input_is_refused_with_one_line() -> None:
    with pytest.raises(ReplayOrderError, match="label #1 has label_time") as info:
        list(merge_events([txn(0, T0)], [label(0, T0 + 5), label(1, T0 + 4)]))
    assert "\n" not in str(info.value)


def test_select_is_half_open() -> None:
    events = list(merge_events([txn(i, T0 + i) for i in range(10)], [label(1, T0 + 5)]))
    got = [(e.kind, e.time_ms - T0) for e in select(iter(events), T0 + 3, T0 + 6)]
    assert got == [(TXN, 3), (TXN, 4), (TXN, 5), (LABEL, 5)]
    assert len(list(select(iter(events), None, None))) == 11


def test_merged_order_matches_the_streaming_merge() -> None:
    rng = random.Random(5)
    t_times = sorted(T0 + rng.randrange(200) for _ in range(300))
    l_times = sorted(T0 + rng.randrange(200) for _ in range(80))
    stream = list(
        merge_events([txn(i, t) for i, t in enumerate(t_times)], [label(i, t) for i, t in enumerate(l_times)])
    )
    kinds, rows = merged_order(t_times, l_times)
    assert [(TXN if k == 0 else LABEL, int(r)) for k, r in zip(kinds, rows, strict=True)] == [
        (e.kind, e.seq) for e in stream
    ]


def test_pacer_at_speed_zero_never_waits() -> None:
    pacer = Pacer(0, FakeClock())
    assert [pacer.delay(T0 + d) for d in (0, 10_000, 86_400_000)] == [0.0, 0.0, 0.0]


def test_pacer_spaces_events_by_event_time_over_speed() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(60.0, clock)  # a minute of event time per second
    assert pacer.delay(T0) == 0.0
    assert pacer.delay(T0 + 60_000) == pytest.approx(1.0)
    clock.now = 100.5
    assert pacer.delay(T0 + 60_000) == pytest.approx(0.5)
    clock.now = 103.0  # fell behind: due events go at once, the schedule stays anchored
    assert pacer.delay(T0 + 120_000) == 0.0
    assert pacer.delay(T0 + 240_000) == pytest.approx(1.0)


def test_pacer_in_real_time() -> None:
    clock = FakeClock(0.0)
    pacer = Pacer(1.0, clock)
    pacer.delay(T0)
    assert pacer.delay(T0 + 2_500) == pytest.approx(2.5)


def test_pacer_refuses_negative_speed() -> None:
    with pytest.raises(ValueError):
        Pacer(-1.0, FakeClock())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01", T0),
        ("2026-01-01T06:00", T0 + 6 * 3_600_000),
        ("2026-01-01T06:00:00Z", T0 + 6 * 3_600_000),
        ("2026-01-01T07:00:00+01:00", T0 + 6 * 3_600_000),
        (" 2026-01-01T00:00:00.250Z ", T0 + 250),
    ],
)
def test_parse_instant(text: str, expected: int) -> None:
    assert parse_instant(text) == expected


def test_parse_instant_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="not an ISO-8601"):
        parse_instant("yesterday")


def test_summary_counts_span_and_rate() -> None:
    s = ReplaySummary()
    s.add(TXN, T0)
    s.add(LABEL, T0 + 86_400_000)
    s.wall_s = 2.0
    assert s.published == 2 and s.rate == 1.0
    d = s.to_dict()
    assert d["transactions"] == 1 and d["labels"] == 1
    assert d["first_event_time"] == iso(T0) == "2026-01-01T00:00:00Z"
    assert "1.0 days" in s.render()
