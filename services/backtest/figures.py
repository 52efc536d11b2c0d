"""Figures of one backtest scenario, as JSON-ready dicts (numpy in, lists out).

Every number the report plots is computed here and written to the JSON next to it, so
the HTML is only a view. NaN becomes ``null`` (:func:`clean`), so the JSON is standard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from services.core import metrics
from services.core.decision import BLOCK, REVIEW, Thresholds
from services.core.drift import WindowEvaluation
from services.core.recall import DAY_MS, CohortFigures

# Score histogram: log-spaced bins from 1e-6 to 1 (fraud scores live near 0 for most
# traffic; a linear axis would put nearly everything in the first bin).
HIST_DECADES = 6
HIST_BINS_PER_DECADE = 8


def clean(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively (standard JSON)."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _share(num: float, den: float) -> float:
    return num / den if den else math.nan


def decision_counts(decisions: npt.NDArray[np.object_]) -> dict[str, int]:
    values, counts = np.unique(decisions.astype(str), return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist(), strict=True))
    return {d: int(found.get(d, 0)) for d in ("ALLOW", "REVIEW", "BLOCK")}


def quality(
    scores: npt.NDArray[np.float64], y: npt.NDArray[np.bool_] | None, decisions: npt.NDArray[np.object_]
) -> dict[str, Any] | None:
    """Ranking metrics plus recall/precision of the decisions against ``y``."""
    if y is None or y.size == 0:
        return None
    alert = decisions != "ALLOW"
    block = decisions == BLOCK
    positives = int(y.sum())
    out: dict[str, Any] = dict(metrics.summary(y, scores)) if 0 < positives < y.size else {}
    out.update(
        {
            "positives": positives,
            "recall_at_review_threshold": _share(int((alert & y).sum()), positives),
            "recall_at_block_threshold": _share(int((block & y).sum()), positives),
            "precision_at_review_threshold": _share(int((alert & y).sum()), int(alert.sum())),
        }
    )
    return out


def score_histogram(scores: npt.NDArray[np.float64], y: npt.NDArray[np.bool_] | None) -> dict[str, Any]:
    """Share of legit and of fraud rows per log-spaced score bin (``y``: truth or labels)."""
    edges = np.logspace(-HIST_DECADES, 0, HIST_DECADES * HIST_BINS_PER_DECADE + 1)
    clipped = np.clip(scores, edges[0], edges[-1])
    idx = np.clip(np.searchsorted(edges, clipped, side="right") - 1, 0, edges.size - 2)
    n_bins = edges.size - 1
    out: dict[str, Any] = {"edges": edges.tolist(), "log10_edges": np.log10(edges).tolist()}
    groups = {"all": np.ones(scores.size, dtype=bool)}
    if y is not None:
        groups = {"legit": ~y, "fraud": y}
    for name, mask in groups.items():
        counts = np.bincount(idx[mask], minlength=n_bins)
        total = int(mask.sum())
        out[name] = {"n": total, "share": (counts / total if total else counts * 0.0).tolist()}
    return out


def daily(event_ms: npt.NDArray[np.int64], decisions: npt.NDArray[np.object_]) -> dict[str, Any]:
    """Per UTC event day: transactions and the shares sent to review or block."""
    days = event_ms - event_ms % DAY_MS
    uniq, inverse = np.unique(days, return_inverse=True)
    n = np.bincount(inverse, minlength=uniq.size)
    review = np.bincount(inverse, weights=(decisions == REVIEW).astype(float), minlength=uniq.size)
    block = np.bincount(inverse, weights=(decisions == BLOCK).astype(float), minlength=uniq.size)
    return {
        "day_ms": uniq.tolist(),
        "n": n.tolist(),
        "review_share": (review / n).tolist(),
        "block_share": (block / n).tolist(),
        "alert_share": ((review + block) / n).tolist(),
    }


def _per_day(
    days: npt.NDArray[np.int64], positive: npt.NDArray[np.bool_] | None, flagged: npt.NDArray[np.bool_]
) -> dict[int, tuple[int, int]]:
    """Per day: (positives, flagged positives)."""
    if positive is None:
        return {}
    out = {}
    for day in np.unique(days[positive]).tolist():
        in_day = (days == day) & positive
        out[int(day)] = (int(in_day.sum()), int((in_day & flagged).sum()))
    return out


def cohorts(
    figs: Sequence[CohortFigures],
    event_ms: npt.NDArray[np.int64],
    flagged: npt.NDArray[np.bool_],
    truth: npt.NDArray[np.bool_] | None,
    final: npt.NDArray[np.bool_] | None,
) -> list[dict[str, Any]]:
    """The monitor's cohort figures (labels so far, with maturity) plus, per day, the recall
    on every label that ever arrives (``final``) and on the ground truth."""
    days = event_ms - event_ms % DAY_MS
    by_truth, by_final = _per_day(days, truth, flagged), _per_day(days, final, flagged)
    out = []
    for f in figs:
        t_frauds, t_caught = by_truth.get(f.day_ms, (0, 0))
        f_frauds, f_caught = by_final.get(f.day_ms, (0, 0))
        out.append(
            {
                "day_ms": f.day_ms,
                "age_days": f.age_days,
                "n": f.n,
                "labelled_frauds": f.frauds,
                "flagged_frauds": f.flagged_frauds,
                "recall": f.recall,
                "top_decile_recall": f.top_decile_recall,
                "maturity": f.maturity,
                "mature": f.mature,
                "final_label_recall": _share(f_caught, f_frauds) if final is not None else None,
                "truth_frauds": t_frauds if truth is not None else None,
                "truth_recall": _share(t_caught, t_frauds) if truth is not None else None,
            }
        )
    return out


def windows(evals: Sequence[WindowEvaluation]) -> list[dict[str, Any]]:
    return [ev.to_dict() for ev in sorted(evals, key=lambda e: e.start)]


def thresholds_dict(th: Thresholds) -> dict[str, float]:
    return {
        "review": th.review,
        "block": th.block,
        "review_rate": th.review_rate,
        "block_rate": th.block_rate,
    }
