"""Promotion policy: the challenger against the champion on the same matured holdout.

Pure (numpy + the core modules). Every time is event time in epoch ms UTC; "as of" ``T``
is the retrain event's ``window_end``, never the wall clock, so the same event and the
same topics give the same verdict.

Definitions:

* **Labels known at T**: ``label_time <= T``; a transaction without one is legitimate
  (the recipe's policy, :mod:`services.core.labels`).
* **Mature day**: an event day (UTC) whose label *maturity* as of ``T`` is at least
  ``min_maturity``. Maturity is the monitor's own (:mod:`services.core.recall`): the
  expected share of the day's eventual fraud labels that have arrived by ``T``, from the
  label-delay distribution learnt from the known labels (right-truncation corrected),
  with the champion's label policy as prior. So "mature" means the same thing for the
  monitor's recall and for promotion. With chargebacks taking a median of 3 weeks, a day
  is mature (0.8) at about 40 days of age.
* **Holdout**: the latest ``holdout_days`` mature days that *neither* model was fitted
  on: on or after the champion's fit cutoff (its manifest's ``training_window.end``;
  its test period and its live period qualify) and ending at or before the start of the
  challenger's training window. Both models score the same rows with the same feature
  vectors; the labels are those known at ``T``.
* **Metric**: PR AUC (average precision) on the holdout. It is threshold-free (each
  model's thresholds are re-chosen for its alert rate anyway) and, unlike ROC AUC, it
  is driven by the top of the ranking, where the alerts are. Recall at each model's
  own review threshold, and at the champion's alert rate, are reported beside it.
* **Decision**: ``promote`` iff the holdout has at least ``min_frauds`` labelled frauds
  and ``challenger PR AUC >= champion PR AUC + margin``; otherwise ``hold`` with the
  reason, and a person may promote with ``fraudstream models promote``. A margin of 1
  or more never promotes (PR AUC differences are at most 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from services.core import metrics
from services.core.labels import join_labels
from services.core.recall import DAY_MS, DelayPrior, RecallBook, day_start

Action = Literal["promote", "hold"]
METRIC = "pr_auc"


@dataclass(frozen=True)
class PolicyConfig:
    margin: float = 0.02
    min_frauds: int = 20
    holdout_days: int = 7
    min_maturity: float = 0.8
    horizon_days: int = 90  # label-delay horizon of the maturity estimate (monitor's default)

    def __post_init__(self) -> None:
        if self.margin < 0 or self.min_frauds < 1 or self.holdout_days < 1:
            raise ValueError("margin must be >= 0, min_frauds and holdout_days >= 1")
        if not 0 < self.min_maturity <= 1:
            raise ValueError(f"min_maturity {self.min_maturity} must be in (0, 1]")


@dataclass(frozen=True)
class Holdout:
    """The chosen days (UTC day starts, ascending) and their lowest maturity."""

    days: tuple[int, ...]
    maturity: float

    @property
    def start_ms(self) -> int:
        return self.days[0]

    @property
    def end_ms(self) -> int:
        return self.days[-1] + DAY_MS

    def mask(self, event_ms: np.ndarray) -> np.ndarray:
        """Rows whose event day is one of the holdout's days."""
        days = np.asarray(event_ms, dtype=np.int64) // DAY_MS * DAY_MS
        return np.isin(days, np.asarray(self.days, dtype=np.int64))

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "days": len(self.days),
            "min_maturity": round(self.maturity, 4),
        }


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    delta: float | None = None  # challenger minus champion on METRIC

    def to_dict(self, cfg: PolicyConfig) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "metric": METRIC,
            "margin": cfg.margin,
            "min_frauds": cfg.min_frauds,
            "delta": None if self.delta is None else round(self.delta, 6),
        }


# --------------------------------------------------------------------------- holdout


def day_maturity(
    event_ms: Sequence[int] | np.ndarray,
    txn_ids: Sequence[str],
    labels: Iterable[Mapping[str, Any]],
    as_of_ms: int,
    prior: DelayPrior,
    horizon_days: int,
) -> dict[int, float]:
    """Label maturity as of ``as_of_ms`` of every event day of the rows, as the monitor
    computes it (the rows play the monitor's scored records; the score is irrelevant)."""
    book = RecallBook(horizon_days, prior)
    for txn_id, at in zip(txn_ids, np.asarray(event_ms, dtype=np.int64).tolist(), strict=True):
        book.score(txn_id, at, 0.0, False)
    for label in labels:
        if int(label["label_time"]) <= as_of_ms:
            book.label(str(label["txn_id"]), int(label["label_time"]), bool(label["is_fraud"]))
    return {fig.day_ms: fig.maturity for fig in book.figures(as_of_ms, 1.0)}


def choose_holdout(
    maturity: Mapping[int, float],
    *,
    not_before_ms: int | None,
    end_by_ms: int,
    cfg: PolicyConfig,
) -> Holdout | None:
    """The latest ``cfg.holdout_days`` mature days in ``[not_before_ms, end_by_ms)``.

    ``not_before_ms`` is the champion's fit cutoff (None: unknown, no bound); a day that
    starts before it is skipped whole. ``end_by_ms`` is the start of the challenger's
    training window: a day must end by then.
    """
    floor = None if not_before_ms is None else day_start(not_before_ms + DAY_MS - 1)
    eligible = sorted(
        day
        for day, m in maturity.items()
        if m >= cfg.min_maturity and day + DAY_MS <= end_by_ms and (floor is None or day >= floor)
    )
    chosen = tuple(eligible[-cfg.holdout_days :])
    if not chosen:
        return None
    return Holdout(days=chosen, maturity=min(maturity[d] for d in chosen))


# --------------------------------------------------------------------------- metrics


def evaluate(
    y: np.ndarray, scores: np.ndarray, review_threshold: float, alert_share: float | None = None
) -> dict[str, Any]:
    """One model's figures on the holdout. ``alert_share``: also report recall when
    alerting on that share of rows (the champion's share, so both compare at equal cost)."""
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    out: dict[str, Any] = metrics.summary(y, scores)
    alerted = scores >= review_threshold
    positives = int(y.sum())
    out["review_threshold"] = float(review_threshold)
    out["alert_share_at_review"] = float(alerted.mean()) if scores.size else math.nan
    out["recall_at_review_threshold"] = float(y[alerted].sum() / positives) if positives else math.nan
    if alert_share is not None and 0 < alert_share <= 1 and scores.size:
        out["recall_at_champion_alert_share"] = metrics.recall_at_alert_rate(y, scores, alert_share)
    return metrics.nan_to_none(out)


def decide(
    champion: Mapping[str, Any] | None,
    challenger: Mapping[str, Any] | None,
    cfg: PolicyConfig,
    *,
    no_comparison: str | None = None,
) -> Decision:
    """The verdict from both models' holdout figures (see the module doc).

    ``no_comparison`` says why there are no figures to compare (no holdout, no loadable
    champion); the verdict is then ``hold`` with that reason.
    """
    if no_comparison is not None or champion is None or challenger is None:
        return Decision("hold", f"manual promotion only: {no_comparison or 'nothing to compare'}")
    frauds = int(challenger.get("positives") or 0)
    if frauds < cfg.min_frauds:
        return Decision(
            "hold",
            f"manual promotion only: the matured holdout has {frauds} labelled frauds, "
            f"fewer than the {cfg.min_frauds} a verdict needs",
        )
    new, old = challenger.get(METRIC), champion.get(METRIC)
    if new is None or old is None:
        return Decision("hold", f"manual promotion only: {METRIC} undefined on the holdout")
    delta = float(new) - float(old)
    verdict = (
        f"challenger {METRIC} {float(new):.4f} vs champion {float(old):.4f} "
        f"(delta {delta:+.4f}, margin {cfg.margin:g}) on {frauds} matured frauds"
    )
    if delta >= cfg.margin:
        return Decision("promote", f"auto: {verdict}", delta)
    return Decision("hold", f"manual promotion only: {verdict}", delta)


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Contender:
    """A model as the comparison sees it: scores for a feature matrix, and its review
    threshold."""

    score: Callable[[np.ndarray], np.ndarray]
    review_threshold: float


def compare(
    *,
    event_ms: np.ndarray,
    txn_ids: Sequence[str],
    X: np.ndarray,
    labels: Sequence[Mapping[str, Any]],
    as_of_ms: int,
    not_before_ms: int | None,
    end_by_ms: int,
    champion: Contender | None,
    challenger: Contender,
    cfg: PolicyConfig,
    prior: DelayPrior,
) -> dict[str, Any]:
    """Holdout, both models' figures and the verdict, as the lineage stores them.

    The rows (``event_ms``, ``txn_ids``, feature matrix ``X``) are everything read; the
    holdout is chosen among them (see :func:`choose_holdout`).
    """
    maturity = day_maturity(event_ms, txn_ids, labels, as_of_ms, prior, cfg.horizon_days)
    holdout = choose_holdout(maturity, not_before_ms=not_before_ms, end_by_ms=end_by_ms, cfg=cfg)
    out: dict[str, Any] = {"holdout": None, "evaluation": None}
    figures: dict[str, dict[str, Any]] = {}
    why: str | None = None
    if holdout is None:
        why = (
            f"no matured holdout (no event day with label maturity >= {cfg.min_maturity:g} after the "
            f"champion's fit cutoff and before the training window)"
        )
    else:
        mask = holdout.mask(event_ms)
        ids = [txn_ids[i] for i in np.flatnonzero(mask).tolist()]
        y = join_labels(ids, labels, as_of_ms).is_fraud
        out["holdout"] = {**holdout.to_dict(), "rows": int(mask.sum()), "frauds": int(y.sum())}
        if champion is None:
            why = "no champion to compare with"
        else:
            Xh = X[mask]
            figures["champion"] = evaluate(y, champion.score(Xh), champion.review_threshold)
            figures["challenger"] = evaluate(
                y,
                challenger.score(Xh),
                challenger.review_threshold,
                figures["champion"]["alert_share_at_review"],
            )
            out["evaluation"] = figures
    decision = decide(figures.get("champion"), figures.get("challenger"), cfg, no_comparison=why)
    out["decision"] = decision.to_dict(cfg)
    return out
