from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import drift, psi
from services.core.drift import (
    DetectorState,
    DriftConfig,
    DriftTracker,
    Reference,
    RetrainState,
    WindowConfig,
    WindowEvaluation,
)

MIN = 60_000


def make_reference(seed: int = 0, n: int = 20_000, n_features: int = 3) -> Reference:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    scores = 1.0 / (1.0 + np.exp(-X[:, 0]))
    names = [f"f{j}" for j in range(n_features)]
    return Reference.from_manifest(psi.build_references(X, names, scores), names)


def stream(
    seed: int,
    windows: int,
    per_window: int,
    shift_from: int | None = None,
    shift: float = 1.5,
    n_features: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded records, ``per_window`` per one-minute window, in time order; from window
    ``shift_from`` on, feature f0 (and so the score) moves by ``shift`` sd."""
    rng = np.random.default_rng(seed)
    n = windows * per_window
    t = np.repeat(np.arange(windows) * MIN, per_window) + rng.integers(0, MIN, size=n)
    t.sort()
    X = rng.normal(size=(n, n_features))
    if shift_from is not None:
        X[t >= shift_from * MIN, 0] += shift
    return t, X, 1.0 / (1.0 + np.exp(-X[:, 0]))


# --------------------------------------------------------------------------- windows


def test_window_assignment_with_lateness() -> None:
    cfg = WindowConfig(window_ms=MIN, allowed_lateness_ms=10_000)
    t = [5_000, 65_000, 59_000, 75_000, 30_000, 119_999, 120_000]
    a = drift.assign(cfg, t, None)
    assert a.starts.tolist() == [0, 60_000, 0, 60_000, 0, 60_000, 120_000]
    # 59 s: watermark 55 s < end 60 s, on time; 30 s after 75 s was seen: watermark 65 s, late.
    assert a.late.tolist() == [False, False, False, False, True, False, False]
    assert a.max_event_ms == 120_000
    assert cfg.is_closed(0, cfg.watermark(a.max_event_ms))
    assert not cfg.is_closed(60_000, cfg.watermark(a.max_event_ms))


def test_window_start_is_floor_for_negative_and_boundary_times() -> None:
    cfg = WindowConfig(window_ms=MIN)
    assert cfg.starts_of([0, MIN - 1, MIN, -1]).tolist() == [0, 0, MIN, -MIN]
    assert cfg.start_of(-1) == -MIN


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(0, 10 * MIN), min_size=1, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    lateness=st.integers(0, 2 * MIN),
)
def test_lateness_does_not_depend_on_batching(times: list[int], cuts: list[int], lateness: int) -> None:
    cfg = WindowConfig(window_ms=MIN, allowed_lateness_ms=lateness)
    whole = drift.assign(cfg, times, None)
    late: list[bool] = []
    max_seen = None
    bounds = sorted({0, len(times), *[c for c in cuts if c <= len(times)]})
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        part = drift.assign(cfg, times[lo:hi], max_seen)
        late += part.late.tolist()
        max_seen = part.max_event_ms
    assert late == whole.late.tolist()
    assert max_seen == max(times)


def test_late_records_are_counted_not_added() -> None:
    ref = make_reference()
    tracker = DriftTracker(ref, WindowConfig(MIN, 0, 1), DriftConfig())
    X = np.zeros((3, 3))
    tracker.ingest([1_000, 61_000, 2_000], X, np.full(3, 0.5))
    assert tracker.windows[0].n == 1 and tracker.windows[0].late == 1
    assert tracker.windows[MIN].n == 1


# --------------------------------------------------------------------------- the test


def test_chi2_quantile_matches_known_values() -> None:
    # Table values of the chi-square distribution.
    assert drift.chi2_quantile(0.99, 9) == pytest.approx(21.666, rel=0.01)
    assert drift.chi2_quantile(0.95, 3) == pytest.approx(7.815, rel=0.01)
    assert drift.chi2_quantile(0.999, 12) == pytest.approx(32.909, rel=0.01)
    with pytest.raises(ValueError):
        drift.chi2_quantile(1.0, 3)


def test_chi2_quantile_against_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for dof in (3, 5, 9, 13, 20, 40):
        for p in (0.9, 0.99, 0.999, 1 - 0.01 / 30):
            tolerance = 0.03 if dof < 9 else 0.015
            assert drift.chi2_quantile(p, dof) == pytest.approx(stats.chi2.ppf(p, dof), rel=tolerance)


def test_threshold_shrinks_with_window_size_and_grows_with_tests() -> None:
    small = drift.psi_threshold(9, 100, 20_000, 0.01, 4)
    large = drift.psi_threshold(9, 10_000, 20_000, 0.01, 4)
    more_tests = drift.psi_threshold(9, 100, 20_000, 0.01, 40)
    assert small > more_tests / 2 > large > 0
    assert more_tests > small
    expected = drift.chi2_quantile(1 - 0.01 / 4, 9) * (1 / 100 + 1 / 20_000)
    assert small == pytest.approx(expected, rel=1e-12)


def test_evaluation_psi_equals_direct_numpy_computation() -> None:
    ref = make_reference()
    t, X, s = stream(seed=3, windows=4, per_window=700, shift_from=2)
    tracker = DriftTracker(ref, WindowConfig(MIN, 0, 100), DriftConfig(alpha=0.01, min_psi=0.0))
    tracker.ingest(t, X, s)
    tracker.ingest([10 * MIN], np.zeros((1, 3)), np.zeros(1))  # advance the watermark
    evaluations = [ev for ev, _ in tracker.close_due()]
    assert [ev.start for ev in evaluations] == [0, MIN, 2 * MIN, 3 * MIN]
    for ev in evaluations:
        rows = (t >= ev.start) & (t < ev.end)
        assert ev.n == int(rows.sum())
        for j, name in enumerate(["f0", "f1", "f2"]):
            spec = ref.specs[j]
            expected = np.asarray(spec.expected)
            counts = np.bincount(_bins(spec, X[rows, j]), minlength=spec.n_bins)
            assert ev.psi[name] == pytest.approx(_psi_numpy(expected, counts, ref.epsilon), abs=1e-12)
    assert "f0" not in evaluations[0].drifted and "f0" in evaluations[2].drifted


def _bins(spec: psi.BinSpec, values: np.ndarray) -> np.ndarray:
    # An independent re-statement of the bin layout: missing, below, inner..., above.
    assert spec.minimum is not None and spec.maximum is not None
    inner = np.searchsorted(np.asarray(spec.edges), values, side="left")
    out = 2 + inner
    out[values < spec.minimum] = 1
    out[values > spec.maximum] = spec.n_bins - 1
    out[np.isnan(values)] = 0
    return out


def _psi_numpy(expected: np.ndarray, counts: np.ndarray, eps: float) -> float:
    e = (expected + eps) / (1 + eps * expected.size)
    a = (counts / counts.sum() + eps) / (1 + eps * counts.size)
    return float(np.sum((a - e) * np.log(a / e)))


def test_psi_of_a_window_against_a_hand_computed_value() -> None:
    # Bins: missing, below 0, [0, 0.5], (0.5, 1], above 1; expected 50/50 inside.
    spec = {"edges": [0.5], "min": 0.0, "max": 1.0, "expected": [0, 0, 0.5, 0.5, 0], "n": 1000}
    ref = Reference.from_manifest({"features": {"x": spec}, "score": spec, "n": 1000, "epsilon": 0.0}, ["x"])
    values = np.array([0.25] * 30 + [0.75] * 70)
    tracker = DriftTracker(ref, WindowConfig(MIN, 0, 1), DriftConfig(alpha=0.01, min_psi=0.0))
    tracker.ingest(np.arange(100), values[:, None], values)
    tracker.ingest([MIN], np.zeros((1, 1)), np.zeros(1))
    [(ev, _)] = tracker.close_due()
    expected = 0.2 * math.log(5 / 3) + 0.2 * math.log(7 / 5)  # (a - e) ln(a / e) summed
    assert ev.psi == {"x": pytest.approx(expected, rel=1e-12), "score": pytest.approx(expected, rel=1e-12)}
    # 1 degree of freedom (two bins with mass); threshold chi2(1 - 0.01/2, 1) * (1/100 + 1/1000).
    assert ev.threshold["x"] == pytest.approx(drift.chi2_quantile(0.995, 1) * 0.011, rel=1e-12)
    assert ev.drifted == ("x", "score")


def test_small_window_is_not_evaluated() -> None:
    ref = make_reference()
    w = drift.WindowCounts.empty(0, ref)
    ev = drift.evaluate(w, ref, WindowConfig(MIN, 0, 10), DriftConfig())
    assert not ev.evaluated and ev.drifted == () and ev.psi == {}


# --------------------------------------------------------------------------- the detector


def run_stream(
    ref: Reference, t: np.ndarray, X: np.ndarray, s: np.ndarray, dcfg: DriftConfig, batch: int = 257
) -> tuple[list[WindowEvaluation], list[int]]:
    tracker = DriftTracker(ref, WindowConfig(MIN, 5_000, 50), dcfg)
    evaluations, alarms = [], []
    for lo in range(0, t.size, batch):
        tracker.ingest(t[lo : lo + batch], X[lo : lo + batch], s[lo : lo + batch])
        for ev, alarm in tracker.close_due():
            evaluations.append(ev)
            if alarm is not None:
                alarms.append(ev.start // MIN)
    return evaluations, alarms


def test_unchanged_data_in_small_windows_does_not_fire() -> None:
    ref = make_reference()
    t, X, s = stream(seed=11, windows=300, per_window=100)
    # min_psi 0: the size-aware threshold alone keeps the noise of 100-record windows out.
    evaluations, alarms = run_stream(ref, t, X, s, DriftConfig(alpha=0.01, min_psi=0.0, consecutive=3))
    assert len(evaluations) == 299 and alarms == []
    drifted_windows = sum(1 for ev in evaluations if ev.drifted)
    # The family-wise rate per window is alpha = 1% asymptotically; 100-record windows
    # have a slightly heavier tail (7 of 299 here), and three in a row never happen.
    assert drifted_windows <= 0.03 * len(evaluations)
    # ...whereas a fixed 0.1 cut would call most of these windows drifted.
    assert sum(1 for ev in evaluations if max(ev.psi.values()) > 0.1) > 100


def test_shifted_data_fires_at_exact_window() -> None:
    ref = make_reference()
    t, X, s = stream(seed=12, windows=40, per_window=300, shift_from=20)
    evaluations, alarms = run_stream(ref, t, X, s, DriftConfig(alpha=0.01, min_psi=0.1, consecutive=3))
    assert alarms == [22]  # windows 20, 21, 22 drift: one incident, one alarm
    assert [ev.start // MIN for ev in evaluations if ev.drifted][:3] == [20, 21, 22]
    assert all(not ev.drifted for ev in evaluations if ev.start < 20 * MIN)
    assert set(evaluations[25].drifted) == {"f0", "score"}


def test_detector_runs_skips_and_one_alarm_per_incident() -> None:
    def ev(i: int, drifted: bool, evaluated: bool = True) -> WindowEvaluation:
        return WindowEvaluation(
            i * MIN, (i + 1) * MIN, 100, 0, evaluated, {"f0": 1.0}, {"f0": 0.1}, ("f0",) if drifted else ()
        )

    pattern: list[tuple[int, bool, bool]] = [
        (0, True, True),
        (1, True, True),
        (2, False, True),
        (3, True, True),
        (4, True, False),
        (5, True, True),
        (6, True, True),
        (7, True, True),
        (8, False, True),
        (9, True, True),
        (10, True, True),
        (11, True, True),
    ]
    state, alarms = DetectorState(), []
    for i, drifted, evaluated in pattern:
        state, alarm = drift.detect(state, ev(i, drifted, evaluated), consecutive=3)
        if alarm:
            alarms.append((alarm.first_start // MIN, alarm.last.start // MIN, alarm.windows))
    # Window 4 is too small: it neither breaks nor extends the run 3, 5, 6.
    assert alarms == [(3, 6, 3), (9, 11, 3)]
    assert DetectorState.from_dict(state.to_dict()) == state


# --------------------------------------------------------------------------- retrain


def test_event_id_is_stable_and_specific() -> None:
    a = drift.retrain_event_id("fraud", "3", drift.DRIFT, 1_000)
    assert a == drift.retrain_event_id("fraud", "3", drift.DRIFT, 1_000)
    assert len(a) == 64
    others = {
        drift.retrain_event_id("fraud", "4", drift.DRIFT, 1_000),
        drift.retrain_event_id("fraud", "3", drift.RECALL_DECAY, 1_000),
        drift.retrain_event_id("fraud", "3", drift.DRIFT, 2_000),
    }
    assert a not in others and len(others) == 3


def test_cooldown_lets_one_event_per_incident() -> None:
    ev = WindowEvaluation(0, MIN, 500, 0, True, {"f0": 0.5, "score": math.nan}, {"f0": 0.1}, ("f0",))
    alarm = drift.DriftAlarm(first_start=-2 * MIN, last=ev, windows=3)
    event = drift.drift_event(alarm, "fraud", "3", now_ms=MIN)
    assert event["psi"] == {"f0": 0.5}  # nan is not a valid Avro double map value here
    assert event["window_start"] == -2 * MIN and event["window_end"] == MIN
    state, out = drift.decide(RetrainState(), event, MIN, cooldown_ms=10 * MIN)
    assert out is event and state.last_emitted_ms == MIN
    state2, out2 = drift.decide(state, {**event, "event_id": "other"}, 5 * MIN, cooldown_ms=10 * MIN)
    assert out2 is None and state2 == state
    _, out3 = drift.decide(state, {**event, "event_id": "later"}, 11 * MIN, cooldown_ms=10 * MIN)
    assert out3 is not None
    assert RetrainState.from_dict(state.to_dict()) == state


def test_reference_from_manifest_requires_every_variable() -> None:
    ref = make_reference()
    good = psi.build_references(np.zeros((10, 2)), ["a", "b"], np.zeros(10))
    with pytest.raises(ValueError, match="c"):
        Reference.from_manifest(good, ["a", "b", "c"])
    assert ref.names == ("f0", "f1", "f2", "score") and ref.n_ref == 20_000


def test_warmup_windows_report_psi_but_never_drift() -> None:
    """The first windows of a stream (cold feature history) differ from the reference:
    within the warm-up they are evaluated, never counted; the onset after it fires at
    its exact window."""
    ref = make_reference()
    t, X, s = stream(seed=7, windows=16, per_window=300, shift_from=None)
    X[t < 4 * MIN, 0] += 1.5  # a cold start that looks like drift
    X[t >= 10 * MIN, 0] += 1.5  # the real onset
    s = 1.0 / (1.0 + np.exp(-X[:, 0]))
    wcfg = WindowConfig(window_ms=MIN, min_records=100)
    cold = DriftTracker(ref, wcfg, DriftConfig(consecutive=2))
    cold.ingest(t, X, s)
    alarms = [a for _, a in cold.close_due() if a is not None]
    assert [a.first_start for a in alarms] == [0, 10 * MIN]
    tracker = DriftTracker(ref, wcfg, DriftConfig(consecutive=2, warmup_ms=5 * MIN))
    tracker.ingest(t[:10], X[:10], s[:10])
    tracker.ingest(t[10:], X[10:], s[10:])
    assert tracker.origin_ms == int(t[0])
    out = tracker.close_due()
    warm = [ev for ev, _ in out if ev.warmup]
    # Windows that start within 5 minutes of the first record (which is after 0).
    assert [ev.start for ev in warm] == [w * MIN for w in range(6)]
    assert all(ev.evaluated and ev.psi["f0"] > 0.1 and ev.drifted == () for ev in warm[:4])
    assert [a.first_start for _, a in out if a is not None] == [10 * MIN]
    assert WindowEvaluation.from_dict(warm[0].to_dict()) == warm[0]


def test_windows_before_the_reference_period_ends_never_drift() -> None:
    """A replay from the champion's own training period: windows before the end of the
    data its reference was taken on are reported, never drift."""
    from dataclasses import replace

    ref = replace(make_reference(), fitted_until_ms=8 * MIN)
    t, X, s = stream(seed=8, windows=14, per_window=300, shift_from=None)
    X[:, 0] += 1.5  # differs from the reference throughout
    s = 1.0 / (1.0 + np.exp(-X[:, 0]))
    tracker = DriftTracker(ref, WindowConfig(window_ms=MIN, min_records=100), DriftConfig(consecutive=2))
    tracker.ingest(t, X, s)
    out = tracker.close_due()
    assert [ev.start for ev, _ in out if ev.warmup] == [w * MIN for w in range(8)]
    assert [a.first_start for _, a in out if a is not None] == [8 * MIN]
