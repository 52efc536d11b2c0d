"""Turn a fraud score into a decision, and a score's SHAP contributions into reasons.

Thresholds are chosen on held-out (validation) scores so that the share of traffic
sent to review or blocked stays *at most* the target alert rate: the threshold is the
lowest score value whose alert share ``P(score >= t)`` does not exceed the rate. Tied
scores are never split, so a heavy tie at the boundary makes the achieved rate lower,
never higher, than the target (analysts' capacity is the hard limit).

Decision rule: ``score >= block`` -> BLOCK, else ``score >= review`` -> REVIEW, else
ALLOW. A score that is not a finite number is sent to REVIEW: an unexplained model
output must not silently approve a payment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Decision = Literal["ALLOW", "REVIEW", "BLOCK"]
ALLOW: Decision = "ALLOW"
REVIEW: Decision = "REVIEW"
BLOCK: Decision = "BLOCK"

DEFAULT_REVIEW_RATE = 0.02
DEFAULT_BLOCK_RATE = 0.005


@dataclass(frozen=True)
class Thresholds:
    """Score cut-offs plus the target alert rates they were chosen for."""

    review: float
    block: float
    review_rate: float
    block_rate: float

    def __post_init__(self) -> None:
        if not self.block >= self.review:
            raise ValueError(f"block threshold {self.block} is below review threshold {self.review}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thresholds:
        return cls(
            review=float(data["review"]),
            block=float(data["block"]),
            review_rate=float(data["review_rate"]),
            block_rate=float(data["block_rate"]),
        )


def threshold_for_rate(scores: npt.ArrayLike, rate: float) -> float:
    """The lowest score ``t`` with ``share(scores >= t) <= rate``.

    If even the top score alone exceeds the budget, the result is just above the top
    score (nothing in ``scores`` would alert).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("need a non-empty 1-D array of scores to choose a threshold")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite to choose a threshold")
    if not 0.0 < rate < 1.0:
        raise ValueError(f"alert rate must be in (0, 1), got {rate}")
    budget = math.floor(round(rate * s.size, 9))  # rows we may alert
    distinct, counts = np.unique(s, return_counts=True)  # ascending
    alerted_at = np.cumsum(counts[::-1])[::-1]  # rows with score >= distinct[i]
    fits = np.nonzero(alerted_at <= budget)[0]
    if fits.size == 0:
        return float(np.nextafter(distinct[-1], np.inf))
    return float(distinct[fits[0]])


def choose_thresholds(
    scores: npt.ArrayLike,
    review_rate: float = DEFAULT_REVIEW_RATE,
    block_rate: float = DEFAULT_BLOCK_RATE,
) -> Thresholds:
    """Review and block thresholds for the target alert rates, from held-out scores."""
    if not 0.0 < block_rate <= review_rate < 1.0:
        raise ValueError(f"need 0 < block rate ({block_rate}) <= review rate ({review_rate}) < 1")
    return Thresholds(
        review=threshold_for_rate(scores, review_rate),
        block=threshold_for_rate(scores, block_rate),
        review_rate=review_rate,
        block_rate=block_rate,
    )


def decide(score: float, thresholds: Thresholds) -> Decision:
    """ALLOW, REVIEW or BLOCK for one score."""
    if not math.isfinite(score):
        return REVIEW
    if score >= thresholds.block:
        return BLOCK
    if score >= thresholds.review:
        return REVIEW
    return ALLOW


def decide_many(scores: npt.ArrayLike, thresholds: Thresholds) -> np.ndarray:
    """Vectorised :func:`decide`: an array of decision strings, one per score."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.full(s.shape, ALLOW, dtype=object)
    out[s >= thresholds.review] = REVIEW
    out[s >= thresholds.block] = BLOCK
    out[~np.isfinite(s)] = REVIEW
    return out


def alert_shares(scores: npt.ArrayLike, thresholds: Thresholds) -> dict[str, float]:
    """Achieved shares of REVIEW-or-BLOCK and of BLOCK on ``scores``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return {"review_or_block": math.nan, "block": math.nan}
    return {
        "review_or_block": float(np.mean(s >= thresholds.review)),
        "block": float(np.mean(s >= thresholds.block)),
    }


def top_reasons(
    contrib_row: npt.ArrayLike,
    feature_names: Sequence[str],
    readable: Mapping[str, str],
    k: int = 3,
) -> list[str]:
    """Readable names of the ``k`` features that pushed this score up the most.

    ``contrib_row`` is one row of ``Booster.predict(..., pred_contrib=True)``: one
    contribution per feature, optionally followed by the bias term (ignored). Only
    positive contributions count; ties keep feature order.
    """
    row = np.asarray(contrib_row, dtype=np.float64)
    n = len(feature_names)
    if row.ndim != 1 or row.size not in (n, n + 1):
        raise ValueError(f"contribution row of size {row.size} does not fit {n} features")
    row = row[:n]
    order = np.argsort(-row, kind="stable")
    chosen = [int(j) for j in order[:k] if row[j] > 0]
    return [readable.get(feature_names[j], feature_names[j]) for j in chosen]
