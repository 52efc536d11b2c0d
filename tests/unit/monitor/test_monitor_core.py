"""MonitorCore with dict tables: drift events, restart, redelivery, recall, cooldown."""

from __future__ import annotations

import math
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
    return champion_from_manifest({
        "name": "fraud", "version": "1", "feature_names": NAMES,
        "psi_reference": psi.build_references(X, NAMES, 1 / (1 + np.exp(-X[:, 0]))),
        "metrics": {"test": {"label_based": {"recall_at_review_threshold": baseline}}},
    })


def config(**kw: Any) -> MonitorConfig:
    base: dict[str, Any] = dict(window=WindowConfig(MIN, 0, 100), drift=DriftConfig(0.01, 0.1, 3),
                                horizon_days=90, min_maturity=0.8, recall_margin=0.1,
                                cooldown_ms=7 * DAY_MS, min_frauds=20)
    base.update(kw)
    return MonitorConfig(**base)


def rows(t: np.ndarray, X: np.ndarray, offsets: np.ndarray, *, flagged: np.ndarray | None = None,
         ids: list[str] | None = None) -> ScoreRows:
    s = 1 / (1 + np.exp(-X[:, 0]))
    n = t.size
    return ScoreRows(
        partition=np.zeros(n, dtype=np.int64), offset=offsets.astype(np.int64), event_ms=t.astype(np.int64),
        score=s, flagged=(s > 0.8) if flagged is None else flagged,
        txn_id=ids or [f"t{o}" for o in offsets.tolist()], version=["1"] * n,
        psi_rows=np.ones(n, dtype=bool), features=X, outcomes=Counter(counted=n))


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


def feed(core: MonitorCore, t: np.ndarray, X: np.ndarray, lo: int, hi: int, batch: int = 500,
         deliver: bool = True) -> list[dict]:
    out = []
    for a in range(lo, hi, batch):
        b = min(hi, a + batch)
        events = core.on_scores(rows(t[a:b], X[a:b], np.arange(a, b)))
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
    assert again.metrics.registry.get_sample_value(
        "fraudstream_monitor_records_total", {"topic": "scores", "outcome": "redelivered"}) == 400


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


def test_cooldown_holds_back_a_second_incident() -> None:
    rng = np.random.default_rng(3)
    windows, per = 40, 300
    t = np.sort(T0 + np.repeat(np.arange(windows) * MIN, per) + rng.integers(0, MIN, windows * per))
    X = rng.normal(size=(t.size, 3))
    phase = (t - T0) // MIN
    X[((phase >= 5) & (phase < 10)) | (phase >= 20), 0] += 1.5  # two incidents
    core = new_core({}, {}, cooldown_ms=10 * MIN)
    events = feed(core, t, X, 0, t.size)
    assert [e["window_start"] for e in events] == [T0 + 5 * MIN, T0 + 20 * MIN]
    core2 = new_core({}, {}, cooldown_ms=60 * MIN)
    assert len(feed(core2, t, X, 0, t.size)) == 1
    assert core2.metrics.registry.get_sample_value(
        "fraudstream_monitor_retrain_suppressed_total", {"reason": "DRIFT"}) == 1


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


def test_recall_with_labels_before_and_after_scores_and_duplicates() -> None:
    t, X, fraud, flagged, label_t = recall_world()
    ids = [f"t{i}" for i in range(t.size)]
    lab = np.flatnonzero(fraud)
    rng = np.random.default_rng(8)
    order = rng.permutation(lab)
    core = new_core({}, {}, recall_margin=0.9)
    early, late = order[:150], order[150:]
    core.on_labels(label_rows([ids[i] for i in early], label_t[early].tolist(), [True] * early.size))
    for a in range(0, t.size, 1000):
        part = slice(a, a + 1000)
        core.on_scores(rows(t[part], X[part], np.arange(a, a + 1000), flagged=flagged[part]))
    both = np.concatenate([late, late[:50]])  # duplicates
    core.on_labels(label_rows([ids[i] for i in both], label_t[both].tolist(), [True] * both.size))
    assert core.recall.pending == 0 and core.recall.tracked == t.size
    now = int(label_t.max()) + 200 * DAY_MS
    figs = core.recall.figures(now, 0.8)
    for f in figs:
        in_day = (t >= f.day_ms) & (t < f.day_ms + DAY_MS)
        assert f.frauds == int(fraud[in_day].sum())
        assert f.recall == pytest.approx(flagged[in_day & fraud].sum() / fraud[in_day].sum())
        assert f.mature
    # The log in the table rebuilds the same records.
    again = new_core({}, dict(core.recall.kv.items()))
    assert again.recall.records == core.recall.records


def test_recall_decay_fires_only_on_mature_cohorts() -> None:
    t, X, fraud, flagged, label_t = recall_world()
    ids = [f"t{i}" for i in range(t.size)]
    core = new_core({}, {}, recall_margin=0.1)  # baseline 0.8: recall 0.5 is a decay
    core.on_scores(rows(t, X, np.arange(t.size), flagged=flagged))
    lab = np.flatnonzero(fraud)
    # Labels by label time; "now" moves with them. Early on the cohorts are young.
    order = lab[np.argsort(label_t[lab])]
    events = []
    for chunk in np.array_split(order, 40):
        events += core.on_labels(label_rows([ids[i] for i in chunk], label_t[chunk].tolist(),
                                            [True] * chunk.size))
    assert events == []  # labels up to 20 days: the cohorts are not mature yet (prior median 21 d)
    sentinel = int(label_t.max()) + 60 * DAY_MS
    events = core.on_labels(label_rows(["nobody"], [sentinel], [False]))
    assert len(events) == 1
    ev = events[0]
    assert ev["reason"] == "RECALL_DECAY" and ev["recall_baseline"] == 0.8
    assert ev["recall"] == pytest.approx(0.5, abs=0.1) and ev["maturity"] >= 0.8
    reg = core.metrics.registry
    mature = reg.get_sample_value("fraudstream_monitor_recall",
                                  {"kind": "flagged", "age_bucket": "60d+", "maturity": "mature"})
    assert mature is not None and mature == pytest.approx(flagged[fraud].sum() / fraud.sum())
    young = reg.get_sample_value("fraudstream_monitor_recall",
                                 {"kind": "flagged", "age_bucket": "0-7d", "maturity": "provisional"})
    assert young is not None and math.isnan(young)


def test_recall_decisions_do_not_depend_on_batching() -> None:
    """Recall is evaluated at every window "now" enters, also inside one batch: a batch of
    labels spanning weeks (a fast replay) decides as the same records one by one do."""
    t, X, fraud, flagged, label_t = recall_world()
    lab = np.flatnonzero(fraud)
    ticks = T0 + np.arange(10, 70) * DAY_MS  # labels of unknown transactions: "now" walks on
    label_ids = [f"t{i}" for i in lab] + [f"nobody{k}" for k in range(ticks.size)]
    label_at = np.concatenate([label_t[lab], ticks])
    is_fraud = [True] * lab.size + [False] * ticks.size
    order = np.argsort(label_at, kind="stable")

    def run(score_batch: int, label_batch: int) -> list[dict]:
        core = new_core({}, {}, window=WindowConfig(DAY_MS, 0, 100), recall_margin=0.1)
        events = []
        for a in range(0, t.size, score_batch):
            part = slice(a, a + score_batch)
            events += core.on_scores(rows(t[part], X[part], np.arange(t.size)[part], flagged=flagged[part]))
        for a in range(0, order.size, label_batch):
            idx = order[a:a + label_batch]
            events += core.on_labels(label_rows([label_ids[i] for i in idx], label_at[idx].tolist(),
                                                [is_fraud[i] for i in idx]))
        for event in events:
            core.emitted(event)
        return events

    whole = run(t.size, order.size)
    decays = [e["emitted_at"] for e in whole if e["reason"] == "RECALL_DECAY"]
    # Decays in the middle of the one label batch, a cooldown (7 days) apart.
    assert len(decays) >= 2 and decays[-1] < ticks[-1]
    assert all(b - a >= 7 * DAY_MS for a, b in zip(decays, decays[1:], strict=False))
    assert all(at % DAY_MS == 0 for at in decays)  # as of a window's start
    assert run(37, 1) == whole
    assert run(1000, 53) == whole


def test_expiry_drops_old_records_and_log_entries() -> None:
    t, X, fraud, flagged, label_t = recall_world()
    txns: dict = {}
    core = new_core({}, txns, horizon_days=30)
    core.on_scores(rows(t, X, np.arange(t.size), flagged=flagged))
    assert core.recall.tracked == t.size
    # A label 25 days after the last score moves "now": days older than 30 days go.
    core.on_labels(label_rows(["late"], [int(t.max()) + 25 * DAY_MS], [False]))
    now = core.recall_slot * MIN  # type: ignore[operator]
    cutoff_day = (now - 30 * DAY_MS) - (now - 30 * DAY_MS) % DAY_MS
    kept = (t - t % DAY_MS) >= cutoff_day
    assert 0 < core.recall.tracked == int(kept.sum()) < t.size
    assert txns and all(int(key.split("|")[0]) >= cutoff_day for key in txns)
    assert min(core.recall.state.cohorts) >= cutoff_day
    assert sum(c.n for c in core.recall.state.cohorts.values()) == int(kept.sum())
