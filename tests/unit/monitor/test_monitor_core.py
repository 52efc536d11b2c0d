"""MonitorCore with dict tables: drift events, restart, redelivery, recall, cooldown."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from services.core import psi
from services.core.drift import DriftConfig, WindowConfig
from services.core.recall import DAY_MS
from services.monitor.champion import champion_from_manifest
from services.monitor.core import MonitorConfig, MonitorCore
from services.monitor.metrics import MonitorMetrics
from services.monitor.records import LabelRows, ScoreRows

MIN = 60_000
T0 = 1_767_225_600_000
NAMES = ["f0", "f1", "f2"]


def champion(baseline: float = 0.8) -> Any:
    X = np.random.default_rng(0).normal(size=(20_000, 3))
    return champion_from_manifest(
        {
            "name": "fraud",
            "version": "1",
            "feature_names": NAMES,
            "psi_reference": psi.build_references(X, NAMES, 1 / (1 + np.exp(-X[:, 0]))),
            "metrics": {"test": {"label_based": {"recall_at_review_threshold": baseline}}},
        }
    )


def config(**kw: Any) -> MonitorConfig:
    base: dict[str, Any] = dict(
        window=WindowConfig(MIN, 0, 100),
        drift=DriftConfig(0.01, 0.1, 3),
        horizon_days=90,
        min_maturity=0.8,
        recall_margin=0.1,
        cooldown_ms=7 * DAY_MS,
        min_frauds=20,
    )
    base.update(kw)
    return MonitorConfig(**base)


def rows(
    t: np.ndarray,
    X: np.ndarray,
    offsets: np.ndarray,
    *,
    flagged: np.ndarray | None = None,
    ids: list[str] | None = None,
) -> ScoreRows:
    s = 1 / (1 + np.exp(-X[:, 0]))
    n = t.size
    return ScoreRows(
        partition=np.zeros(n, dtype=np.int64),
        offset=offsets.astype(np.int64),
        event_ms=t.astype(np.int64),
        score=s,
        flagged=(s > 0.8) if flagged is None else flagged,
        txn_id=ids or [f"t{o}" for o in offsets.tolist()],
        version=["1"] * n,
        psi_rows=np.ones(n, dtype=bool),
        features=X,
        outcomes=Counter(counted=n),
    )


def drift_stream(seed: int = 1, windows: int = 20, per: int = 300, shift_from: int = 10) -> tuple:
    rng = np.random.default_rng(seed)
    t = np.sort(T0 + np.repeat(np.arange(windows) * MIN, per) + rng.integers(0, MIN, windows * per))
    X = rng.normal(size=(t.size, 3))
    X[t >= T0 + shift_from * MIN, 0] += 1.5
    return t, X


def new_core(state: dict, txns: dict, **kw: Any) -> MonitorCore:
    core = MonitorCore(config(**kw), champion(), state, txns, MonitorMetrics(CollectorRegistry()))
    core.load()
    return core


def feed(
    core: MonitorCore, t: np.ndarray, X: np.ndarray, lo: int, hi: int, batch: int = 500, deliver: bool = True
) -> list[dict]:
    out = []
    for a in range(lo, hi, batch):
        b = min(hi, a + batch)
        events = core.on_scores(rows(t[a:b], X[a:b], np.arange(a, b)))
        # No labels topic here: every label there is (none) has been read.
        events += core.labels_complete(int(t[b - 1]))
        for e in events:
            if deliver:
                core.emitted(e)
        out += events
    return out


def summary(core: MonitorCore) -> list[tuple]:
    return [(e.start, e.n, e.late, tuple(sorted(e.psi.items())), e.drifted) for e in core.drift.evaluations()]


def test_drift_event_at_the_third_drifting_window_once() -> None:
    t, X = drift_stream()
    core = new_core({}, {})
    events = feed(core, t, X, 0, t.size)
    assert len(events) == 1
    ev = events[0]
    assert (ev["reason"], ev["window_start"], ev["window_end"]) == ("DRIFT", T0 + 10 * MIN, T0 + 13 * MIN)
    assert set(ev["drifted_features"]) == {"f0", "score"}
    assert ev["emitted_at"] == ev["window_end"]  # event time of the decision, not the wall clock
    reg = core.metrics.registry
    assert reg.get_sample_value("fraudstream_monitor_retrain_events_total", {"reason": "DRIFT"}) == 1
    assert reg.get_sample_value("fraudstream_monitor_drift_active") == 1
    assert reg.get_sample_value("fraudstream_monitor_windows_closed_total", {"result": "evaluated"}) == 19


def test_restart_gives_the_same_figures_as_an_uninterrupted_run() -> None:
    t, X = drift_stream()
    whole = new_core({}, {})
    events_whole = feed(whole, t, X, 0, t.size)
    state: dict = {}
    txns: dict = {}
    first = new_core(state, txns)
    events = feed(first, t, X, 0, 3_100)
    second = new_core(state, txns)  # a fresh process: state only from the tables
    events += feed(second, t, X, 3_100, t.size)
    assert summary(second) == summary(whole)
    assert events == events_whole


def test_redelivered_batches_are_not_counted_twice() -> None:
    t, X = drift_stream(windows=6, shift_from=99)
    state: dict = {}
    core = new_core(state, {})
    feed(core, t, X, 0, 1_000)
    again = new_core(state, {})  # crashed before committing offsets: 600..1000 come again
    feed(again, t, X, 600, t.size)
    once = new_core({}, {})
    feed(once, t, X, 0, t.size)
    assert summary(again) == summary(once)
    assert (
        again.metrics.registry.get_sample_value(
            "fraudstream_monitor_records_total", {"topic": "scores", "outcome": "redelivered"}
        )
        == 400
    )


def test_a_record_twice_in_one_batch_is_counted_once() -> None:
    t, X = drift_stream(windows=6, shift_from=99)
    # 600..999 come again within the batch, as after a consumer's seek back.
    idx = np.concatenate([np.arange(0, 1_000), np.arange(600, t.size)])
    twice = new_core({}, {})
    twice.on_scores(rows(t[idx], X[idx], idx))
    once = new_core({}, {})
    once.on_scores(rows(t, X, np.arange(t.size)))
    assert summary(twice) == summary(once)
    assert twice.recall.tracked == t.size
    assert (
        twice.metrics.registry.get_sample_value(
            "fraudstream_monitor_records_total", {"topic": "scores", "outcome": "redelivered"}
        )
        == 400
    )


def test_undelivered_event_is_proposed_again_with_the_same_id() -> None:
    t, X = drift_stream()
    state: dict = {}
    txns: dict = {}
    core = new_core(state, txns)
    lost = feed(core, t, X, 0, t.size, deliver=False)  # crash before the event was delivered
    assert len(lost) == 1
    # Replaying the tail after a restart proposes it again (same id), as the cooldown
    # was never stored.
    state_copy = {k: v for k, v in state.items() if not k.startswith("w|1|") and k != "d|1"}
    again = new_core(state_copy, {})
    replayed = feed(again, t, X, 0, t.size)
    assert [e["event_id"] for e in replayed] == [lost[0]["event_id"]]


def two_incidents() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    windows, per = 40, 300
    t = np.sort(T0 + np.repeat(np.arange(windows) * MIN, per) + rng.integers(0, MIN, windows * per))
    X = rng.normal(size=(t.size, 3))
    phase = (t - T0) // MIN
    X[((phase >= 5) & (phase < 10)) | (phase >= 20), 0] += 1.5
    return t, X


def test_a_crash_while_an_event_is_undelivered_loses_no_later_incident() -> None:
    """The second incident's windows close (and are stored closed) while the first event
    is still undelivered; a crash then must still give both events after the restart."""
    t, X = two_incidents()
    state: dict = {}
    txns: dict = {}
    core = new_core(state, txns, cooldown_ms=10 * MIN)
    lost = feed(core, t, X, 0, t.size, deliver=False)  # nothing delivered, every batch committed
    assert [e["window_start"] for e in lost] == [T0 + 5 * MIN, T0 + 20 * MIN]
    again = new_core(state, txns, cooldown_ms=10 * MIN)  # the same tables: the crash
    replayed = again.labels_complete(int(t.max()))
    assert [e["event_id"] for e in replayed] == [e["event_id"] for e in lost]


def test_cooldown_holds_back_a_second_incident() -> None:
    t, X = two_incidents()
    core = new_core({}, {}, cooldown_ms=10 * MIN)
    events = feed(core, t, X, 0, t.size)
    assert [e["window_start"] for e in events] == [T0 + 5 * MIN, T0 + 20 * MIN]
    core2 = new_core({}, {}, cooldown_ms=60 * MIN)
    assert len(feed(core2, t, X, 0, t.size)) == 1
    assert (
        core2.metrics.registry.get_sample_value(
            "fraudstream_monitor_retrain_suppressed_total", {"reason": "DRIFT"}
        )
        == 1
    )


# --------------------------------------------------------------------------- recall


def recall_world(seed: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """10 days of scores, 40 frauds a day; half of them flagged."""
    rng = np.random.default_rng(seed)
    n = 10 * 400
    t = np.sort(T0 + rng.integers(0, 10 * DAY_MS, n))
    X = rng.normal(size=(n, 3))
    fraud = np.zeros(n, dtype=bool)
    fraud[rng.choice(n, 400, replace=False)] = True
    flagged = fraud & (rng.random(n) < 0.5)
    delay = rng.integers(1, 20, n) * DAY_MS + rng.integers(0, DAY_MS, n)
    return t, X, fraud, flagged, t + delay


def label_rows(ids: list[str], at: list[int], fraud: list[bool]) -> LabelRows:
    return LabelRows(ids, at, fraud, [0] * len(ids), list(range(len(ids))))


def tick(core: MonitorCore, at: int, name: str) -> list[dict]:
    """One score at ``at``: moves the clock (time is the scores' time)."""
    X = np.zeros((1, 3))
    events = core.on_scores(rows(np.array([at]), X, np.array([10**9 + at // MIN]), ids=[name]))
    return events + core.labels_complete(at)


def test_recall_with_labels_before_and_after_scores_and_duplicates() -> None:
    t, X, fraud, flagged, label_t = recall_world()
    ids = [f"t{i}" for i in range(t.size)]
    lab = np.flatnonzero(fraud)
    rng = np.random.default_rng(8)
    order = rng.permutation(lab)
    core = new_core({}, {}, recall_margin=0.9, window=WindowConfig(DAY_MS, 0, 100))
    early, late = order[:150], order[150:]
    core.on_labels(label_rows([ids[i] for i in early], label_t[early].tolist(), [True] * early.size))
    assert core.recall.buffered == early.size  # ahead of the clock: held
    for a in range(0, t.size, 1000):
        part = slice(a, a + 1000)
        core.on_scores(rows(t[part], X[part], np.arange(a, a + 1000), flagged=flagged[part]))
    both = np.concatenate([late, late[:50]])  # duplicates
    core.on_labels(label_rows([ids[i] for i in both], label_t[both].tolist(), [True] * both.size))
    end = int(label_t.max()) + DAY_MS
    tick(core, end, "tick")
    assert core.recall.buffered == 0 and core.recall.pending == 0 and core.recall.tracked == t.size + 1
    now = int(label_t.max()) + 200 * DAY_MS
    figs = [f for f in core.recall.figures(now, 0.8) if f.day_ms < end - end % DAY_MS]
    for f in figs:
        in_day = (t >= f.day_ms) & (t < f.day_ms + DAY_MS)
        assert f.frauds == int(fraud[in_day].sum())
        assert f.recall == pytest.approx(flagged[in_day & fraud].sum() / fraud[in_day].sum())
        assert f.mature
    # The log in the table rebuilds the same records.
    again = new_core({}, dict(core.recall.kv.items()))
    assert again.recall.records == core.recall.records


def test_labels_wait_for_the_scores_clock() -> None:
    """A label is applied only once the clock (the scores' time) has passed a window
    boundary after its label time: recall as of T sees exactly the labels before T."""
    core = new_core({}, {}, window=WindowConfig(DAY_MS, 0, 1))
    tick(core, T0, "a")
    core.on_labels(label_rows(["a", "b"], [T0 + DAY_MS + 5, T0 + 3 * DAY_MS], [True, True]))
    assert core.recall.buffered == 2 and core.recall.records["a"].label_ms is None
    tick(core, T0 + 2 * DAY_MS + 1, "c")  # evaluations at day 1 and day 2
    assert core.released_ms == T0 + 2 * DAY_MS
    assert core.recall.records["a"].is_fraud and core.recall.buffered == 1
    # A label the clock has passed already is late: applied at once.
    core.on_labels(label_rows(["c"], [T0 + DAY_MS], [True]))
    assert core.recall.records["c"].is_fraud
    assert (
        core.metrics.registry.get_sample_value(
            "fraudstream_monitor_records_total", {"topic": "labels", "outcome": "late"}
        )
        == 1
    )


def test_decisions_wait_for_the_labels_frontier() -> None:
    """Scores ahead of the labels: nothing is decided until the labels (or the reader's
    word that the topic is read) pass the decision's time."""
    t, X = drift_stream()
    core = new_core({}, {})
    events = core.on_scores(rows(t, X, np.arange(t.size)))
    assert events == [] and core.waiting_on_labels() and len(core.queue) == 1
    # A label 12 minutes in: the drift decision at minute 13 still waits.
    assert core.on_labels(label_rows(["x"], [T0 + 12 * MIN], [False])) == []
    [event] = core.on_labels(label_rows(["y"], [T0 + 13 * MIN], [False]))
    assert (event["reason"], event["emitted_at"]) == ("DRIFT", T0 + 13 * MIN)
    # The drift decision is stored with the queue only once delivered.
    assert core.undelivered == 1
    core.emitted(event)
    assert core.state.get("r|fraud")["queue"] == [] and core.undelivered == 0


def recall_stream(seed: int = 5, days: int = 60, per_day: int = 150) -> tuple:
    """Scores for ``days`` days, 6% fraud, a third of it flagged; labels 1-40 days later
    (many after the last score); a few later labels clear a fraud."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    t = np.sort(T0 + rng.integers(0, days * DAY_MS, n))
    X = rng.normal(size=(n, 3))
    fraud = rng.random(n) < 0.06
    flagged = fraud & (rng.random(n) < 0.33)
    lab = np.flatnonzero(fraud)
    label_t = t[lab] + rng.integers(DAY_MS, 40 * DAY_MS, lab.size)
    ids = [f"t{i}" for i in lab]
    cleared = lab[:20]
    ids += [f"t{i}" for i in cleared]
    label_t = np.concatenate([label_t, label_t[:20] + 3 * DAY_MS])
    is_fraud = [True] * lab.size + [False] * cleared.size
    order = np.argsort(label_t, kind="stable")
    return t, X, flagged, [ids[i] for i in order], label_t[order], [is_fraud[i] for i in order]


def run_interleaved(
    schedule: list[tuple[str, int, int]],
    stream: tuple,
    restart_at: int | None = None,
    reader_says: bool = True,
) -> list[dict]:
    """Feed score and label slices in the order given; returns the delivered events."""
    t, X, flagged, lids, lt, ly = stream
    state: dict = {}
    txns: dict = {}
    kw: dict[str, Any] = dict(window=WindowConfig(DAY_MS, 600_000, 100), recall_margin=0.1)
    core = new_core(state, txns, **kw)
    events: list[dict] = []
    for step, (kind, lo, hi) in enumerate(schedule):
        if step == restart_at:
            core = new_core(state, txns, **kw)
        if kind == "s":
            out = core.on_scores(rows(t[lo:hi], X[lo:hi], np.arange(lo, hi), flagged=flagged[lo:hi]))
            if reader_says:
                out += core.labels_complete(int(t[hi - 1]))
        else:
            out = core.on_labels(label_rows(lids[lo:hi], lt[lo:hi].tolist(), ly[lo:hi]))
        for e in out:
            core.emitted(e)
        events += out
    return events


def test_recall_decisions_do_not_depend_on_which_stream_runs_ahead() -> None:
    """The live agents read scores and labels at their own pace; decisions are the same
    whichever runs ahead, however the batches fall, and across a restart."""
    stream = recall_stream()
    t, lt = stream[0], stream[4]
    n, m = t.size, lt.size

    def chunks(kind: str, total: int, size: int) -> list[tuple[str, int, int]]:
        return [(kind, a, min(total, a + size)) for a in range(0, total, size)]

    # The backtest's order: merged by time, a score before a label at the same time.
    merged: list[tuple[str, int, int]] = []
    si = li = 0
    while si < n or li < m:
        if li >= m or (si < n and t[si] <= lt[li]):
            hi = si + 1
            while hi < n and (li >= m or t[hi] <= lt[li]) and hi - si < 500:
                hi += 1
            merged.append(("s", si, hi))
            si = hi
        else:
            hi = li + 1
            while hi < m and (si >= n or lt[hi] < t[si]):
                hi += 1
            merged.append(("l", li, hi))
            li = hi
    reference = run_interleaved(merged, stream)
    decays = [e for e in reference if e["reason"] == "RECALL_DECAY"]
    assert len(decays) >= 2 and all(e["emitted_at"] % DAY_MS == 0 for e in decays)
    assert all(e["emitted_at"] <= int(t.max()) for e in reference)  # time is the scores' time
    # Only mature cohorts whose day has ended decide.
    assert all(e["maturity"] >= 0.8 and e["window_end"] <= e["emitted_at"] for e in decays)

    labels_first = chunks("l", m, 97) + chunks("s", n, 2000)
    scores_first = chunks("s", n, 2000) + chunks("l", m, 60)
    rng = np.random.default_rng(9)
    shuffled: list[tuple[str, int, int]] = []
    s_parts, l_parts = chunks("s", n, 333), chunks("l", m, 41)
    while s_parts or l_parts:
        pick = s_parts if (s_parts and (not l_parts or rng.random() < 0.7)) else l_parts
        shuffled.append(pick.pop(0))
    assert run_interleaved(labels_first, stream) == reference
    assert run_interleaved(scores_first, stream, reader_says=False) == reference
    assert run_interleaved(shuffled, stream) == reference
    assert run_interleaved(shuffled, stream, restart_at=len(shuffled) // 2) == reference


def test_expiry_drops_old_records_and_log_entries() -> None:
    t, X, fraud, flagged, label_t = recall_world()
    txns: dict = {}
    core = new_core({}, txns, horizon_days=30, window=WindowConfig(DAY_MS, 0, 100))
    core.on_scores(rows(t, X, np.arange(t.size), flagged=flagged))
    core.labels_complete(int(t.max()))
    assert core.recall.tracked == t.size
    # A score 25 days after the last one moves the clock: days older than 30 days go.
    tick(core, int(t.max()) + 25 * DAY_MS, "late")
    now = core.released_ms
    assert now is not None
    cutoff_day = (now - 30 * DAY_MS) - (now - 30 * DAY_MS) % DAY_MS
    kept = (t - t % DAY_MS) >= cutoff_day
    assert 0 < core.recall.tracked - 1 == int(kept.sum()) < t.size
    assert txns and all(int(key.split("|")[0]) >= cutoff_day for key in txns)
    assert min(core.recall.state.cohorts) >= cutoff_day
    assert sum(c.n for c in core.recall.state.cohorts.values()) == int(kept.sum()) + 1


def test_default_policy_waits_out_the_feature_history() -> None:
    from services import settings
    from services.core.drift import FEATURE_HISTORY_MS
    from services.settings import MonitorSettings

    cfg = MonitorConfig.from_settings(settings.load(MonitorSettings, {}, environ={}))
    assert cfg.drift.warmup_ms == FEATURE_HISTORY_MS == 7 * DAY_MS
    assert cfg.label_wait_max_ms is None
