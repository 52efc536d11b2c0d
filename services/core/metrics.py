"""Ranking metrics for fraud scores: exact, numpy only, deterministic under ties.

Every function takes ``y_true`` (bool or 0/1, one per row) and ``scores`` (finite floats,
higher = more suspicious). Results never depend on the order of the rows:

* :func:`roc_auc` is the Mann-Whitney statistic with average ranks, so a tied
  positive/negative pair counts one half.
* :func:`pr_auc` is average precision (the step-wise sum used by scikit-learn): one
  precision/recall point per *distinct* score, so tied rows enter together.
* Top-k metrics (:func:`recall_at_top_fraction`, :func:`recall_at_alert_rate`,
  :func:`precision_at_k`) alert exactly ``k`` rows. When the k-th score is tied with
  rows outside the top k, the tied group is taken fractionally: it contributes its
  positives times the share of the group that fits into ``k``. That is the expected
  value under a random tie break, and it makes a constant scorer score exactly the
  base rate instead of whatever the row order happens to be.

A metric that is undefined for the data (no rows, or no positives for a recall, or a
single class for ROC AUC) is ``nan``; :func:`nan_to_none` turns those into JSON nulls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

DEFAULT_TOP_FRACTION = 0.1
DEFAULT_ALERT_RATE = 0.01


def _checked(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"y_true and scores must be 1-D and of equal length, got {y.shape} and {s.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0/1 or booleans")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y.astype(bool), s


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ascending, with ties given the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    starts = ends - counts
    group_rank = (starts + 1 + ends) / 2.0
    return np.asarray(group_rank[inverse], dtype=np.float64)


def roc_auc(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random positive > that of a negative)."""
    y, s = _checked(y_true, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(_average_ranks(s)[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def pr_auc(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Average precision: sum over distinct thresholds of (R_i - R_{i-1}) * P_i."""
    y, s = _checked(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    # Group rows by distinct score, highest first.
    distinct, inverse = np.unique(-s, return_inverse=True)
    pos_per_group = np.bincount(inverse, weights=y.astype(np.float64), minlength=distinct.size)
    rows_per_group = np.bincount(inverse, minlength=distinct.size)
    tp = np.cumsum(pos_per_group)
    alerted = np.cumsum(rows_per_group)
    precision = tp / alerted
    recall_step = pos_per_group / n_pos
    return float(np.sum(recall_step * precision))


def _captured_in_top_k(y: np.ndarray, s: np.ndarray, k: int) -> float:
    """Positives among the top ``k`` scores; a tie at the boundary counts fractionally."""
    if k <= 0:
        return 0.0
    if k >= s.size:
        return float(y.sum())
    kth = np.partition(-s, k - 1)[k - 1]
    threshold = -kth
    above = s > threshold
    tied = s == threshold
    n_above = int(above.sum())
    n_tied = int(tied.sum())
    take = k - n_above
    return float(y[above].sum()) + float(y[tied].sum()) * take / n_tied


def rows_for_fraction(n: int, fraction: float) -> int:
    """How many rows an alert budget of ``fraction`` of ``n`` rows allows (rounded up)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    # round() first so that 0.1 * 100 = 10.000000000000002 is 10, not 11
    return min(n, math.ceil(round(fraction * n, 9)))


def recall_at_top_fraction(
    y_true: npt.ArrayLike, scores: npt.ArrayLike, fraction: float = DEFAULT_TOP_FRACTION
) -> float:
    """Share of all positives found in the top ``fraction`` of rows by score (0.1 = top decile)."""
    y, s = _checked(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    return _captured_in_top_k(y, s, rows_for_fraction(s.size, fraction)) / n_pos


def recall_at_alert_rate(
    y_true: npt.ArrayLike, scores: npt.ArrayLike, rate: float = DEFAULT_ALERT_RATE
) -> float:
    """Recall when alerting on a ``rate`` share of traffic (0.01 = 1% of rows)."""
    return recall_at_top_fraction(y_true, scores, rate)


def precision_at_k(y_true: npt.ArrayLike, scores: npt.ArrayLike, k: int) -> float:
    """Share of positives among the ``k`` highest scores (all rows if k exceeds them)."""
    y, s = _checked(y_true, scores)
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    k = min(k, s.size)
    if k == 0:
        return math.nan
    return _captured_in_top_k(y, s, k) / k


def default_k(n: int, share: float = 0.01, floor: int = 100) -> int:
    """The k of precision@k: 1% of the rows, but at least 100 (never more than the rows)."""
    if n <= 0:
        return 0
    return min(n, max(floor, rows_for_fraction(n, share)))


def summary(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, float | int]:
    """The metric set reported for every split (``nan`` where undefined)."""
    y, s = _checked(y_true, scores)
    k = default_k(s.size)
    return {
        "rows": int(s.size),
        "positives": int(y.sum()),
        "roc_auc": roc_auc(y, s),
        "pr_auc": pr_auc(y, s),
        "recall_at_top_decile": recall_at_top_fraction(y, s, DEFAULT_TOP_FRACTION),
        "recall_at_1pct_alert_rate": recall_at_alert_rate(y, s, DEFAULT_ALERT_RATE),
        "precision_at_k": precision_at_k(y, s, k) if k else math.nan,
        "k": k,
    }


def nan_to_none(values: Mapping[str, float | int]) -> dict[str, float | int | None]:
    """Replace ``nan`` with ``None`` so the dict is valid JSON."""
    return {key: None if isinstance(val, float) and math.isnan(val) else val for key, val in values.items()}
