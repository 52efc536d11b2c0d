"""Recall under delayed labels: event-day cohorts, label maturity, retrain on decay.

Pure (numpy + stdlib). Fraud labels arrive weeks after the transaction, so this module
says how much of each cohort's labels should be in by now and keeps immature figures
apart. "Now" is always event time from the data, never the wall clock.

Records. Scores and labels merge into one :class:`TxnRecord` per ``txn_id`` (a label
may come first: the record is then "pending") with :func:`combine`, which is
commutative and idempotent, so duplicates change nothing and arrival order does not
matter. Of several labels the later ``label_time`` wins, fraud wins a tie (as in
:mod:`services.core.labels`).

Cohorts (one UTC day of event time): ``recall`` = flagged frauds / labelled frauds
(flagged = decision != ALLOW); ``top_decile_recall`` = share of the labelled frauds in
the cohort's top 10% of scores, ties shared pro rata as :mod:`services.core.metrics`
does, from :data:`SCORE_BINS` equal score bins (exact when the scores of the boundary
bin are equal); ``maturity`` = expected share of the cohort's eventual fraud labels
already arrived.

Label delay. ``F(d) = P(delay <= d days)`` is learnt from the fraud labels seen so far.
They are right-truncated (a cohort cannot yet show a delay longer than its age), so a
plain histogram would call young cohorts mature; :func:`delay_cdf` is the reverse-time
product-limit (Lynden-Bell) estimator, blended with ``weight`` pseudo-labels from a
prior for the cold start: by default a lognormal with median 21 days and sigma 0.75
(the generator's chargeback delay; the manifest's label policy overrides it),
truncated at the label horizon. No data gives the prior exactly; many labels outweigh it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.core.metrics import rows_for_fraction

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
SCORE_BINS = 10_000
TOP_FRACTION = 0.1
AGE_BUCKETS = (("0-7d", 7), ("7-30d", 30), ("30-60d", 60), ("60d+", math.inf))


def day_start(event_ms: int) -> int:
    return event_ms - event_ms % DAY_MS


def age_bucket(age_days: float) -> str:
    """The metric label of a cohort age: 0-7d, 7-30d, 30-60d or 60d+."""
    return next(name for name, upper in AGE_BUCKETS if age_days < upper)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TxnRecord:
    """What is known about one transaction: its score (if seen) and its latest label."""

    event_ms: int | None = None
    score: float | None = None
    flagged: bool | None = None
    version: str | None = None
    label_ms: int | None = None
    is_fraud: bool | None = None

    @property
    def scored(self) -> bool:
        return self.event_ms is not None

    @property
    def labelled(self) -> bool:
        return self.label_ms is not None

    def score_part(self) -> tuple[int, str, float, bool] | None:
        if self.event_ms is None:
            return None
        return (self.event_ms, self.version or "", float(self.score or 0.0), bool(self.flagged))

    def label_part(self) -> tuple[int, bool] | None:
        return None if self.label_ms is None else (self.label_ms, bool(self.is_fraud))

    def to_list(self) -> list[Any]:
        return [self.event_ms, self.score, self.flagged, self.version, self.label_ms, self.is_fraud]

    @classmethod
    def from_list(cls, v: Sequence[Any]) -> TxnRecord:
        return cls(*v)


def combine(a: TxnRecord | None, b: TxnRecord) -> TxnRecord:
    """Both records' knowledge in one; commutative, associative and idempotent, so any
    replay order of the same records gives the same result.

    Label: the later label_time wins, fraud wins a tie. Score: a transaction is scored
    once; should two different scores ever arrive, the smaller (event_time,
    model_version, score) is kept, never "whichever came last".
    """
    if a is None or a == b:
        return b
    scores = [p for p in (a.score_part(), b.score_part()) if p is not None]
    labels = [p for p in (a.label_part(), b.label_part()) if p is not None]
    t, v, sc, f = min(scores) if scores else (None, None, None, None)
    lt, y = max(labels) if labels else (None, None)
    return TxnRecord(t, sc, f, v, lt, y)


def merge_score(
    old: TxnRecord | None, event_ms: int, score: float, flagged: bool, version: str
) -> tuple[TxnRecord, str]:
    """Add a score; outcome ``new``, ``joined`` (a label was waiting), ``duplicate`` or
    ``conflict`` (a different second score)."""
    new = combine(old, TxnRecord(int(event_ms), float(score), bool(flagged), version))
    if old is None or not old.scored:
        return new, "joined" if old is not None and old.labelled else "new"
    return new, "duplicate" if old.score_part() == (
        int(event_ms),
        version,
        float(score),
        bool(flagged),
    ) else "conflict"


def merge_label(old: TxnRecord | None, label_ms: int, is_fraud: bool) -> tuple[TxnRecord, str]:
    """Add a label; outcome ``joined``, ``pending`` (no score yet), ``updated`` (a later
    label replaced the earlier one), ``duplicate`` or ``stale`` (an older label)."""
    incoming = (int(label_ms), bool(is_fraud))
    new = combine(old, TxnRecord(label_ms=incoming[0], is_fraud=incoming[1]))
    current = old.label_part() if old is not None else None
    if current is not None and incoming <= current:
        return new, "duplicate" if incoming == current else "stale"
    if old is None or not old.scored:
        return new, "pending"
    return new, "updated" if current is not None else "joined"


# --------------------------------------------------------------------------- delays


@dataclass(frozen=True)
class DelayPrior:
    median_days: float = 21.0
    sigma: float = 0.75
    weight: float = 100.0  # pseudo-labels; how many real labels it takes to outweigh it

    def pmf(self, horizon_days: int) -> np.ndarray:
        """P(delay in day s), s = 0..horizon-1, renormalised to the horizon."""
        p = np.diff([lognormal_cdf(x, self.median_days, self.sigma) for x in range(horizon_days + 1)])
        return np.asarray(p / p.sum())


def lognormal_cdf(days: float, median: float, sigma: float) -> float:
    if days <= 0:
        return 0.0
    return 0.5 * (1.0 + math.erf(math.log(days / median) / (sigma * math.sqrt(2.0))))


def delay_cdf(
    ages_days: Sequence[int], delay_hists: Sequence[np.ndarray], prior: DelayPrior, horizon_days: int
) -> np.ndarray:
    """``F[s] = P(delay <= s days)`` (day index s) from per-cohort delay histograms.

    ``ages_days[c]`` is the largest delay cohort ``c`` can have shown for all its
    transactions; ``delay_hists[c][s]`` counts its fraud labels with delay in day ``s``.
    """
    H = horizon_days
    p_prior = prior.pmf(H)
    F_prior = np.cumsum(p_prior)
    d = prior.weight * p_prior  # labels with delay s (pseudo + observed)
    at_risk = prior.weight * F_prior  # labels with delay <= s from cohorts old enough for s
    for age, hist in zip(ages_days, delay_hists, strict=True):
        if age < 0:
            continue
        upto = min(int(age), H - 1) + 1
        h = np.asarray(hist[:upto], dtype=np.float64)
        d[:upto] += h
        at_risk[:upto] += np.cumsum(h)
    with np.errstate(divide="ignore", invalid="ignore"):
        reverse_hazard = np.where(at_risk > 0, d / at_risk, 0.0)
    # F[H-1] = 1; F[s-1] = F[s] * (1 - h[s]).
    survive = np.cumprod(1.0 - reverse_hazard[:0:-1])[::-1]
    return np.append(survive, 1.0)


def share_arrived(cdf: np.ndarray, age_days: float) -> float:
    """P(delay < age) with the day-binned CDF interpolated linearly inside a day."""
    if age_days <= 0:
        return 0.0
    if age_days >= cdf.size:
        return 1.0
    s = int(age_days)
    lo = cdf[s - 1] if s > 0 else 0.0
    return float(lo + (age_days - s) * (cdf[s] - lo))


# --------------------------------------------------------------------------- cohorts


def score_bin(score: float) -> int:
    return min(SCORE_BINS - 1, max(0, int(score * SCORE_BINS)))


def captured_in_top(score_hist: np.ndarray, fraud_hist: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Frauds among the top ``fraction`` of rows; the boundary bin is shared pro rata."""
    n = int(score_hist.sum())
    if n == 0:
        return 0.0
    k = rows_for_fraction(n, fraction)
    above = np.cumsum(score_hist[::-1])  # rows in the top j+1 bins
    j = int(np.searchsorted(above, k))  # top bins fully taken: j; boundary bin: j
    b = SCORE_BINS - 1 - j
    rows_before = int(above[j - 1]) if j > 0 else 0
    frauds_before = float(fraud_hist[b + 1 :].sum())
    return frauds_before + float(fraud_hist[b]) * (k - rows_before) / float(score_hist[b])


@dataclass(frozen=True)
class CohortFigures:
    day_ms: int
    age_days: float
    n: int
    frauds: int
    flagged_frauds: int
    captured_top: float
    maturity: float
    mature: bool

    @property
    def recall(self) -> float:
        return self.flagged_frauds / self.frauds if self.frauds else math.nan

    @property
    def top_decile_recall(self) -> float:
        return self.captured_top / self.frauds if self.frauds else math.nan


@dataclass
class Cohort:
    """Sums over one event day's records (mutable)."""

    day_ms: int
    horizon_days: int
    n: int = 0
    frauds: int = 0
    flagged_frauds: int = 0
    hourly: np.ndarray = field(default_factory=lambda: np.zeros(24, dtype=np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, dtype=np.int64))
    fraud_scores: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, dtype=np.int64))
    delays: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if self.delays.size == 0:
            self.delays = np.zeros(self.horizon_days, dtype=np.int64)

    def add(self, rec: TxnRecord, sign: int = 1) -> None:
        """Add (sign=1) or take back (sign=-1) a scored record's contribution."""
        assert rec.event_ms is not None and rec.score is not None
        b = score_bin(rec.score)
        self.n += sign
        self.hourly[(rec.event_ms - self.day_ms) // HOUR_MS] += sign
        self.scores[b] += sign
        if rec.is_fraud:
            self.frauds += sign
            self.flagged_frauds += sign * int(bool(rec.flagged))
            self.fraud_scores[b] += sign
            delay = (int(rec.label_ms or 0) - rec.event_ms) // DAY_MS
            if 0 <= delay < self.horizon_days:
                self.delays[delay] += sign

    def age_days(self, now_ms: int) -> float:
        return (now_ms - self.day_ms) / DAY_MS

    def maturity(self, cdf: np.ndarray, now_ms: int) -> float:
        if self.n == 0:
            return 0.0
        mids = self.day_ms + (np.arange(24) + 0.5) * HOUR_MS
        arrived = [share_arrived(cdf, (now_ms - m) / DAY_MS) for m in mids]
        return float(np.dot(self.hourly, arrived) / self.n)

    def figures(self, cdf: np.ndarray, now_ms: int, min_maturity: float) -> CohortFigures:
        m = self.maturity(cdf, now_ms)
        return CohortFigures(
            self.day_ms,
            self.age_days(now_ms),
            self.n,
            self.frauds,
            self.flagged_frauds,
            captured_in_top(self.scores, self.fraud_scores),
            m,
            m >= min_maturity,
        )


class RecallState:
    """Cohort sums of every scored record, kept in step with record changes."""

    def __init__(self, horizon_days: int, prior: DelayPrior | None = None) -> None:
        self.horizon_days = horizon_days
        self.prior = prior or DelayPrior()
        self.cohorts: dict[int, Cohort] = {}
        self.label_clock_ms: int | None = None

    def apply(self, old: TxnRecord | None, new: TxnRecord) -> None:
        """Replace ``old``'s contribution with ``new``'s (same transaction)."""
        if old is not None and old.scored:
            self._cohort(old).add(old, -1)
        if new.scored:
            self._cohort(new).add(new, +1)
        if new.label_ms is not None:
            self.label_clock_ms = max(self.label_clock_ms or new.label_ms, new.label_ms)

    def _cohort(self, rec: TxnRecord) -> Cohort:
        day = day_start(int(rec.event_ms or 0))
        cohort = self.cohorts.get(day)
        if cohort is None:
            cohort = self.cohorts[day] = Cohort(day, self.horizon_days)
        return cohort

    def delay_cdf(self, now_ms: int) -> np.ndarray:
        days = sorted(self.cohorts)
        # A cohort's youngest transaction (at the end of its day) bounds what it can show.
        ages = [int((now_ms - (d + DAY_MS)) // DAY_MS) for d in days]
        return delay_cdf(ages, [self.cohorts[d].delays for d in days], self.prior, self.horizon_days)

    def figures(self, now_ms: int, min_maturity: float) -> list[CohortFigures]:
        cdf = self.delay_cdf(now_ms)
        return [self.cohorts[d].figures(cdf, now_ms, min_maturity) for d in sorted(self.cohorts)]

    def expire_before(self, day_ms: int) -> list[int]:
        old = [d for d in self.cohorts if d < day_ms]
        for d in old:
            del self.cohorts[d]
        return old


class RecallBook(RecallState):
    """:class:`RecallState` with the records in a dict (offline use: backtests, tests)."""

    def __init__(self, horizon_days: int, prior: DelayPrior | None = None) -> None:
        super().__init__(horizon_days, prior)
        self.records: dict[str, TxnRecord] = {}

    def score(self, txn_id: str, event_ms: int, score: float, flagged: bool, version: str = "") -> str:
        old = self.records.get(txn_id)
        new, outcome = merge_score(old, event_ms, score, flagged, version)
        self._store(txn_id, old, new)
        return outcome

    def label(self, txn_id: str, label_ms: int, is_fraud: bool) -> str:
        old = self.records.get(txn_id)
        new, outcome = merge_label(old, label_ms, is_fraud)
        self._store(txn_id, old, new)
        return outcome

    def _store(self, txn_id: str, old: TxnRecord | None, new: TxnRecord) -> None:
        if new != old:
            self.records[txn_id] = new
            self.apply(old, new)


# --------------------------------------------------------------------------- pooling, decay


@dataclass(frozen=True)
class Pooled:
    cohorts: int
    n: int
    frauds: int
    recall: float
    top_decile_recall: float
    maturity: float
    first_day_ms: int | None = None
    last_day_ms: int | None = None


def pool(figs: Iterable[CohortFigures]) -> Pooled:
    figs = list(figs)
    n = sum(f.n for f in figs)
    frauds = sum(f.frauds for f in figs)
    return Pooled(
        cohorts=len(figs),
        n=n,
        frauds=frauds,
        recall=sum(f.flagged_frauds for f in figs) / frauds if frauds else math.nan,
        top_decile_recall=sum(f.captured_top for f in figs) / frauds if frauds else math.nan,
        maturity=sum(f.maturity * f.n for f in figs) / n if n else math.nan,
        first_day_ms=min((f.day_ms for f in figs), default=None),
        last_day_ms=max((f.day_ms for f in figs), default=None),
    )


def by_age_bucket(figs: Iterable[CohortFigures]) -> dict[tuple[str, str], Pooled]:
    """Pooled figures per (age bucket, "mature" | "provisional")."""
    groups: dict[tuple[str, str], list[CohortFigures]] = {}
    for f in figs:
        key = (age_bucket(f.age_days), "mature" if f.mature else "provisional")
        groups.setdefault(key, []).append(f)
    return {k: pool(v) for k, v in groups.items()}


@dataclass(frozen=True)
class Baseline:
    metric: str  # "recall" (flagged) or "top_decile_recall"
    value: float


def baseline_from_manifest(metrics: Mapping[str, Any]) -> Baseline | None:
    """The champion's test-set recall: at the review threshold if known, else top decile."""
    test = metrics.get("test") or {}
    for block in (test.get("label_based") or {}, test):
        if block.get("recall_at_review_threshold") is not None:
            return Baseline("recall", float(block["recall_at_review_threshold"]))
        if block.get("recall_at_top_decile") is not None:
            return Baseline("top_decile_recall", float(block["recall_at_top_decile"]))
    return None


def recent_mature(figs: Sequence[CohortFigures], pool_days: int, now_ms: int | None = None) -> Pooled:
    """The mature cohorts of the last ``pool_days`` days that have a mature cohort.

    With ``now_ms``, only cohorts whose day ended by then: a day still taking
    transactions is not mature, and a decision must not depend on how many of its
    transactions have arrived (the live monitor may decide later than a backtest, with
    more of them in)."""
    mature = [f for f in figs if f.mature and (now_ms is None or f.day_ms + DAY_MS <= now_ms)]
    if not mature:
        return pool([])
    newest = max(f.day_ms for f in mature)
    return pool(f for f in mature if f.day_ms > newest - pool_days * DAY_MS)


def decay_candidate(pooled: Pooled, baseline: Baseline | None, margin: float, min_frauds: int) -> bool:
    """True when mature recall is below ``baseline - margin`` on enough frauds."""
    if baseline is None or pooled.frauds < min_frauds or pooled.first_day_ms is None:
        return False
    value = getattr(pooled, baseline.metric)
    return bool(value < baseline.value - margin)


def recall_decay_event(
    pooled: Pooled,
    baseline: Baseline,
    margin: float,
    model_name: str,
    model_version: str,
    now_ms: int,
    psi: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A RetrainEvent record (codec-ready dict) for mature recall below the baseline."""
    from services.core.drift import RECALL_DECAY, retrain_event_id

    assert pooled.first_day_ms is not None and pooled.last_day_ms is not None
    value = float(getattr(pooled, baseline.metric))
    return {
        "event_id": retrain_event_id(model_name, model_version, RECALL_DECAY, pooled.first_day_ms),
        "emitted_at": now_ms,
        "reason": RECALL_DECAY,
        "model_name": model_name,
        "model_version": model_version,
        "window_start": pooled.first_day_ms,
        "window_end": pooled.last_day_ms + DAY_MS,
        "psi": {k: v for k, v in (psi or {}).items() if math.isfinite(v)},
        "drifted_features": [],
        "recall": value,
        "recall_baseline": baseline.value,
        "maturity": pooled.maturity,
        "details": (
            f"mature {baseline.metric} {value:.4f} < baseline {baseline.value:.4f} - margin "
            f"{margin:g} over {pooled.cohorts} cohorts with {pooled.frauds} labelled frauds"
        ),
    }
