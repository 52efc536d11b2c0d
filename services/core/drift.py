"""Feature and score drift: event-time windows, PSI against frozen bins, a k-in-a-row
detector and the retrain decision. Pure (numpy + stdlib); the monitor persists the
state, a backtest drives the same functions from a file.

Windows: tumbling, ``window_ms`` wide, epoch-aligned. Watermark = newest event time -
``allowed_lateness_ms``; a window closes (and is evaluated) once its end is at or below
the watermark. A record whose window was closed by the records before it is *late*:
counted, never added. Lateness is decided record by record against the running
maximum, so batching does not change the outcome.

PSI test: in a closed window with at least ``min_records`` records, each feature and
the score are counted into the champion's frozen bins (:mod:`services.core.psi`).
Without drift, ``PSI / (1/n + 1/n_ref)`` is about chi-square with ``k - 1`` degrees of
freedom (``k`` = bins with reference mass; PSI is the symmetric Kullback-Leibler
divergence). The critical value is the chi-square quantile at ``1 - alpha / m``
(Bonferroni over the ``m`` variables), so the family-wise false-alarm rate per window
stays below ``alpha`` and small, noisy windows need a larger PSI. A variable drifts when
its PSI exceeds ``max(that threshold, min_psi)``; drift is *declared* after
``consecutive`` evaluated windows in a row with a drifting variable (windows too small
to evaluate neither extend nor break a run).

Warm-up: the windows that start less than ``warmup_ms`` after the first record the
tracker saw, or before the end of the period the reference was taken on
(``Reference.fitted_until_ms``), are evaluated (PSI reported) but never count as drift,
like windows too small to evaluate. The features' own history (7-day counts and sums,
merchant averages) fills up during the first week of a stream, so early windows differ
from a reference taken on a warm history although nothing drifted; the default policy
waits out that horizon. Features that depend on a card's whole history (first time at a
merchant, in a country, on a device; per-card z-scores) take weeks to settle after a cold
start: a replay of history from its first day (the demo, a backtest) would flag the
champion's own training period against its validation period, which says nothing about
drift since the model was fitted.

Retrain: one incident (a run of drifting windows, or a recall decay) gives at most one
request, and none follows for ``cooldown_ms`` of event time. The id is a sha256 of
model, version, reason and the first window's start: a replay or restart repeats it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from services.core.psi import DEFAULT_EPSILON, BinSpec, bin_counts, psi

# The longest history a feature looks back on (7-day card and merchant windows): the
# monitor's default drift warm-up.
FEATURE_HISTORY_MS = 7 * 86_400_000
SCORE = "score"  # the name of the score's histogram next to the features'
DRIFT, RECALL_DECAY = "DRIFT", "RECALL_DECAY"  # RetrainEvent reasons


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowConfig:
    window_ms: int
    allowed_lateness_ms: int = 0
    min_records: int = 1

    def __post_init__(self) -> None:
        if self.window_ms <= 0 or self.allowed_lateness_ms < 0 or self.min_records < 1:
            raise ValueError("window_ms > 0, allowed_lateness_ms >= 0 and min_records >= 1 required")

    def start_of(self, event_ms: int) -> int:
        return event_ms - event_ms % self.window_ms

    def starts_of(self, event_ms: npt.ArrayLike) -> np.ndarray:
        t = np.asarray(event_ms, dtype=np.int64)
        return t - np.mod(t, self.window_ms)

    def watermark(self, max_event_ms: int | None) -> int | None:
        return None if max_event_ms is None else max_event_ms - self.allowed_lateness_ms

    def is_closed(self, start_ms: int, watermark_ms: int | None) -> bool:
        return watermark_ms is not None and start_ms + self.window_ms <= watermark_ms


@dataclass(frozen=True)
class Assignment:
    """Where each record of a batch goes; ``late[i]`` means its window was already closed."""

    starts: np.ndarray  # int64 window start per record
    late: np.ndarray  # bool per record
    max_event_ms: int | None  # running maximum after the batch


def assign(cfg: WindowConfig, event_ms: npt.ArrayLike, max_event_ms: int | None) -> Assignment:
    """Window and lateness of each record, in arrival order, given the maximum so far."""
    t = np.asarray(event_ms, dtype=np.int64)
    starts = cfg.starts_of(t)
    if t.size == 0:
        return Assignment(starts, np.zeros(0, dtype=bool), max_event_ms)
    running = np.maximum.accumulate(t)
    if max_event_ms is not None:
        running = np.maximum(running, max_event_ms)
    # The maximum *before* each record decides whether its window is closed already
    # (a record never closes its own window: its end is above its event time).
    before = np.empty_like(running)
    before[0] = t[0] if max_event_ms is None else max_event_ms
    before[1:] = running[:-1]
    late = (starts + cfg.window_ms) <= (before - cfg.allowed_lateness_ms)
    return Assignment(starts, late, int(running[-1]))


# --------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class Reference:
    """The champion's frozen bins: one per feature (manifest order), then the score."""

    names: tuple[str, ...]
    specs: tuple[BinSpec, ...]
    epsilon: float = DEFAULT_EPSILON
    n_ref: int = 0  # reference rows; 0 = unknown (treated as infinite)
    exempt: frozenset[str] = frozenset()  # PSI reported, never counted as drift
    # The end of the data the reference was taken on (the champion's validation period):
    # windows before it are the champion's own training data, never drift.
    fitted_until_ms: int | None = None

    @property
    def n_features(self) -> int:
        return len(self.names) - 1

    @classmethod
    def from_manifest(cls, psi_reference: Mapping[str, Any], feature_names: Sequence[str]) -> Reference:
        """Build from the manifest's ``psi_reference``; raises ``ValueError`` if incomplete."""
        per_feature = psi_reference.get("features") or {}
        missing = [n for n in feature_names if n not in per_feature]
        if missing or SCORE not in psi_reference:
            lacking = missing[:3] + ([] if SCORE in psi_reference else [SCORE])
            raise ValueError(f"psi_reference lacks bins for {', '.join(lacking)}")
        specs = [BinSpec.from_dict(per_feature[n]) for n in feature_names]
        specs.append(BinSpec.from_dict(psi_reference[SCORE]))
        return cls(
            names=(*feature_names, SCORE),
            specs=tuple(specs),
            epsilon=float(psi_reference.get("epsilon", DEFAULT_EPSILON)),
            n_ref=int(psi_reference.get("n", 0) or 0),
            exempt=frozenset(psi_reference.get("exempt", ())),
        )

    def count(self, features: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
        """Bin counts of each variable over the rows given (features: rows x n_features)."""
        if features.ndim != 2 or features.shape[1] != self.n_features or scores.shape[0] != features.shape[0]:
            raise ValueError(f"expected rows x {self.n_features} features and one score per row")
        out = [bin_counts(spec, features[:, j]) for j, spec in enumerate(self.specs[:-1])]
        out.append(bin_counts(self.specs[-1], scores))
        return out


@dataclass
class WindowCounts:
    """Histogram accumulator of one window (mutable; ``late`` counts refused records)."""

    start: int
    counts: list[np.ndarray]
    n: int = 0
    late: int = 0

    @classmethod
    def empty(cls, start: int, reference: Reference) -> WindowCounts:
        return cls(start, [np.zeros(s.n_bins, dtype=np.int64) for s in reference.specs])

    def add(self, counts: Sequence[np.ndarray], n: int) -> None:
        for acc, more in zip(self.counts, counts, strict=True):
            acc += more
        self.n += n

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "n": self.n,
            "late": self.late,
            "counts": [c.tolist() for c in self.counts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowCounts:
        return cls(
            int(data["start"]),
            [np.asarray(c, dtype=np.int64) for c in data["counts"]],
            int(data["n"]),
            int(data.get("late", 0)),
        )


def accumulate(
    windows: dict[int, WindowCounts],
    reference: Reference,
    assignment: Assignment,
    features: np.ndarray,
    scores: np.ndarray,
) -> set[int]:
    """Add a batch to ``windows`` (created as needed); returns the starts it touched."""
    touched: set[int] = set()
    for start in np.unique(assignment.starts).tolist():
        rows = assignment.starts == start
        on_time = rows & ~assignment.late
        win = windows.setdefault(start, WindowCounts.empty(start, reference))
        win.late += int((rows & assignment.late).sum())
        if on_time.any():
            win.add(reference.count(features[on_time], scores[on_time]), int(on_time.sum()))
        touched.add(start)
    return touched


# --------------------------------------------------------------------------- the test


def chi2_quantile(p: float, dof: int) -> float:
    """Chi-square quantile by the Wilson-Hilferty cube-root normal approximation.

    Relative error within 3% for dof >= 3 and 1.5% for dof >= 9 at tail probabilities up
    to 0.9999, on the conservative side in the tail; exact enough for a threshold
    (scipy is not a dependency of the pure core).
    """
    if not 0.0 < p < 1.0 or dof < 1:
        raise ValueError(f"need 0 < p < 1 and dof >= 1, got p={p}, dof={dof}")
    z = NormalDist().inv_cdf(p)
    c = 2.0 / (9.0 * dof)
    return max(0.0, dof * (1.0 - c + z * math.sqrt(c)) ** 3)


def degrees_of_freedom(spec: BinSpec) -> int:
    """Bins that can hold reference mass, minus one (at least 1)."""
    return max(1, sum(1 for e in spec.expected if e > 0) - 1)


def psi_threshold(dof: int, n_window: int, n_ref: int, alpha: float, n_tests: int) -> float:
    """The PSI that ``n_window`` records exceed with probability ``alpha / n_tests`` if
    nothing changed."""
    scale = 1.0 / n_window + (1.0 / n_ref if n_ref > 0 else 0.0)
    return chi2_quantile(1.0 - alpha / n_tests, dof) * scale


@dataclass(frozen=True)
class DriftConfig:
    alpha: float = 0.01
    min_psi: float = 0.1
    consecutive: int = 3
    warmup_ms: int = 0  # windows starting this soon after the first record never drift


@dataclass(frozen=True)
class WindowEvaluation:
    start: int
    end: int
    n: int
    late: int
    evaluated: bool  # False: fewer than min_records records, no test made
    psi: dict[str, float] = field(default_factory=dict)
    threshold: dict[str, float] = field(default_factory=dict)
    drifted: tuple[str, ...] = ()
    warmup: bool = False  # within the warm-up: PSI reported, never drift

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "n": self.n,
            "late": self.late,
            "evaluated": self.evaluated,
            "psi": dict(self.psi),
            "threshold": dict(self.threshold),
            "drifted": list(self.drifted),
            "warmup": self.warmup,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowEvaluation:
        return cls(
            int(data["start"]),
            int(data["end"]),
            int(data["n"]),
            int(data["late"]),
            bool(data["evaluated"]),
            {k: float(v) for k, v in data["psi"].items()},
            {k: float(v) for k, v in data["threshold"].items()},
            tuple(data["drifted"]),
            bool(data.get("warmup", False)),
        )


def evaluate(
    window: WindowCounts,
    reference: Reference,
    wcfg: WindowConfig,
    dcfg: DriftConfig,
    warmup: bool = False,
) -> WindowEvaluation:
    """PSI and verdict of one closed window (no variable drifts in the warm-up)."""
    end = window.start + wcfg.window_ms
    if window.n < wcfg.min_records:
        return WindowEvaluation(window.start, end, window.n, window.late, evaluated=False)
    values: dict[str, float] = {}
    limits: dict[str, float] = {}
    n_tests = sum(1 for name in reference.names if name not in reference.exempt)
    for name, spec, counts in zip(reference.names, reference.specs, window.counts, strict=True):
        values[name] = psi(spec.expected, counts, reference.epsilon)
        limits[name] = max(
            dcfg.min_psi,
            psi_threshold(degrees_of_freedom(spec), window.n, reference.n_ref, dcfg.alpha, n_tests),
        )
    drifted = (
        ()
        if warmup
        else tuple(n for n in reference.names if n not in reference.exempt and values[n] > limits[n])
    )
    return WindowEvaluation(window.start, end, window.n, window.late, True, values, limits, drifted, warmup)


# --------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class DetectorState:
    """The current run of drifting evaluated windows."""

    run_starts: tuple[int, ...] = ()
    alarmed: bool = False  # this run has already raised its alarm (one incident, one alarm)

    def to_dict(self) -> dict[str, Any]:
        return {"run_starts": list(self.run_starts), "alarmed": self.alarmed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorState:
        return cls(tuple(int(s) for s in data.get("run_starts", ())), bool(data.get("alarmed", False)))


@dataclass(frozen=True)
class DriftAlarm:
    first_start: int  # start of the first window of the run
    last: WindowEvaluation  # the window that completed the run
    windows: int


def detect(
    state: DetectorState, ev: WindowEvaluation, consecutive: int
) -> tuple[DetectorState, DriftAlarm | None]:
    """Feed one closed window; an alarm when a run first reaches ``consecutive`` windows."""
    if not ev.evaluated or ev.warmup:
        return state, None
    if not ev.drifted:
        return DetectorState(), None
    run = (*state.run_starts, ev.start)
    if len(run) >= consecutive and not state.alarmed:
        return DetectorState(run, alarmed=True), DriftAlarm(run[0], ev, len(run))
    return replace(state, run_starts=run), None


# --------------------------------------------------------------------------- retrain


def retrain_event_id(model_name: str, model_version: str, reason: str, first_window_start: int) -> str:
    """Same incident, same id: across restarts, replays and duplicate deliveries."""
    text = f"{model_name}\x1f{model_version}\x1f{reason}\x1f{first_window_start}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RetrainState:
    last_emitted_ms: int | None = None
    last_event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"last_emitted_ms": self.last_emitted_ms, "last_event_id": self.last_event_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainState:
        at = data.get("last_emitted_ms")
        return cls(None if at is None else int(at), data.get("last_event_id"))


def cooldown_allows(state: RetrainState, now_ms: int, cooldown_ms: int) -> bool:
    return state.last_emitted_ms is None or now_ms - state.last_emitted_ms >= cooldown_ms


def drift_event(alarm: DriftAlarm, model_name: str, model_version: str, now_ms: int) -> dict[str, Any]:
    """A RetrainEvent record (dict, codec-ready) for a drift alarm."""
    last = alarm.last
    details = f"{alarm.windows} windows in a row drifted; last window n={last.n}: " + ", ".join(
        f"{n} psi={last.psi[n]:.4f}>{last.threshold[n]:.4f}" for n in last.drifted
    )
    return {
        "event_id": retrain_event_id(model_name, model_version, DRIFT, alarm.first_start),
        "emitted_at": now_ms,
        "reason": DRIFT,
        "model_name": model_name,
        "model_version": model_version,
        "window_start": alarm.first_start,
        "window_end": last.end,
        "psi": {k: v for k, v in last.psi.items() if math.isfinite(v)},
        "drifted_features": list(last.drifted),
        "recall": None,
        "recall_baseline": None,
        "maturity": None,
        "details": details,
    }


def decide(
    state: RetrainState, event: dict[str, Any] | None, now_ms: int, cooldown_ms: int
) -> tuple[RetrainState, dict[str, Any] | None]:
    """Let a candidate event through unless a recent one covers it (cooldown)."""
    if event is None or not cooldown_allows(state, now_ms, cooldown_ms):
        return state, None
    return RetrainState(now_ms, str(event["event_id"])), event


# --------------------------------------------------------------------------- tracker


class DriftTracker:
    """Windows, evaluation and detector together, in memory (the backtest's driver;
    the monitor mirrors the same state into its tables)."""

    def __init__(self, reference: Reference, wcfg: WindowConfig, dcfg: DriftConfig) -> None:
        self.reference, self.wcfg, self.dcfg = reference, wcfg, dcfg
        self.windows: dict[int, WindowCounts] = {}
        self.evaluations: dict[int, WindowEvaluation] = {}
        self.max_event_ms: int | None = None
        self.origin_ms: int | None = None  # the first record's event time: the warm-up's start
        self.detector = DetectorState()

    @property
    def watermark_ms(self) -> int | None:
        return self.wcfg.watermark(self.max_event_ms)

    def ingest(self, event_ms: npt.ArrayLike, features: np.ndarray, scores: np.ndarray) -> Assignment:
        """Count a batch (arrival order); returns where each record went."""
        a = assign(self.wcfg, event_ms, self.max_event_ms)
        if self.origin_ms is None and a.starts.size:
            self.origin_ms = int(np.asarray(event_ms, dtype=np.int64)[0])
        self.max_event_ms = a.max_event_ms
        accumulate(self.windows, self.reference, a, features, scores)
        return a

    def due(self) -> list[int]:
        """Closed windows not evaluated yet, oldest first."""
        wm = self.watermark_ms
        return sorted(s for s in self.windows if s not in self.evaluations and self.wcfg.is_closed(s, wm))

    def close_due(self) -> list[tuple[WindowEvaluation, DriftAlarm | None]]:
        """Evaluate every window the watermark has passed and feed the detector."""
        out = []
        for start in self.due():
            ev = evaluate(self.windows[start], self.reference, self.wcfg, self.dcfg, self.in_warmup(start))
            self.evaluations[start] = ev
            self.detector, alarm = detect(self.detector, ev, self.dcfg.consecutive)
            out.append((ev, alarm))
        return out

    def in_warmup(self, start_ms: int) -> bool:
        fitted = self.reference.fitted_until_ms
        if fitted is not None and start_ms < fitted:
            return True
        return (
            self.dcfg.warmup_ms > 0
            and self.origin_ms is not None
            and start_ms < self.origin_ms + self.dcfg.warmup_ms
        )

    def forget_before(self, start_ms: int) -> list[int]:
        """Drop evaluated windows that start before ``start_ms``; returns their starts."""
        old = [s for s in self.evaluations if s < start_ms]
        for s in old:
            del self.evaluations[s]
            self.windows.pop(s, None)
        return old
