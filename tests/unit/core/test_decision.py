from __future__ import annotations

import math

import numpy as np
import pytest

from services.core import decision
from services.core.decision import Thresholds, choose_thresholds, decide, decide_many, top_reasons

T = Thresholds(review=0.5, block=0.9, review_rate=0.02, block_rate=0.005)


def test_threshold_meets_the_rate_exactly_on_distinct_scores() -> None:
    scores = np.arange(1000) / 1000  # 0.000 .. 0.999
    th = choose_thresholds(scores, review_rate=0.02, block_rate=0.005)
    assert th.review == pytest.approx(0.980)  # 20 rows >= 0.980
    assert th.block == pytest.approx(0.995)  # 5 rows >= 0.995
    shares = decision.alert_shares(scores, th)
    assert shares == {"review_or_block": 0.02, "block": 0.005}


def test_threshold_never_exceeds_the_rate_on_ties() -> None:
    scores = np.array([0.1] * 90 + [0.7] * 8 + [0.9] * 2)
    # 2% of 100 = 2 rows: the 0.9 pair fits, the 0.7 group would make 10.
    assert decision.threshold_for_rate(scores, 0.02) == 0.9
    assert decision.threshold_for_rate(scores, 0.05) == 0.9
    assert decision.threshold_for_rate(scores, 0.10) == 0.7


def test_threshold_above_everything_when_the_top_tie_is_too_big() -> None:
    scores = np.array([0.2] * 50 + [0.8] * 50)
    t = decision.threshold_for_rate(scores, 0.01)
    assert t > 0.8
    assert decision.alert_shares(scores, Thresholds(t, t, 0.01, 0.01))["review_or_block"] == 0.0


def test_choose_thresholds_validates_rates() -> None:
    with pytest.raises(ValueError):
        choose_thresholds([0.1, 0.2], review_rate=0.01, block_rate=0.02)
    with pytest.raises(ValueError):
        choose_thresholds([], review_rate=0.02, block_rate=0.01)


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.0, "ALLOW"),
        (0.4999, "ALLOW"),
        (0.5, "REVIEW"),
        (0.89, "REVIEW"),
        (0.9, "BLOCK"),
        (1.0, "BLOCK"),
        (math.nan, "REVIEW"),
    ],
)
def test_decide(score: float, expected: str) -> None:
    assert decide(score, T) == expected


def test_decide_many_matches_decide() -> None:
    scores = np.array([0.0, 0.5, 0.9, 0.7, math.nan, math.inf])
    assert list(decide_many(scores, T)) == [decide(float(s), T) for s in scores]


def test_thresholds_round_trip_and_order() -> None:
    assert Thresholds.from_dict(T.to_dict()) == T
    with pytest.raises(ValueError):
        Thresholds(review=0.9, block=0.5, review_rate=0.02, block_rate=0.005)


NAMES = ("amount_z", "txn_count_1h", "new_country", "night")
READABLE = {
    "amount_z": "amount unusual for this card",
    "txn_count_1h": "many payments in the last hour",
    "new_country": "first payment in this country",
}


def test_top_reasons_picks_largest_positive_contributions() -> None:
    row = [0.3, 1.2, -2.0, 0.8, -1.5]  # last value is the bias term
    assert top_reasons(row, NAMES, READABLE, k=3) == [
        "many payments in the last hour",
        "night",  # no readable text: the feature name
        "amount unusual for this card",
    ]


def test_top_reasons_ignores_negative_and_zero_contributions() -> None:
    assert top_reasons([-0.1, 0.0, 0.4, -3.0], NAMES, READABLE, k=3) == ["first payment in this country"]
    assert top_reasons([-0.1, 0.0, -0.4, -3.0], NAMES, READABLE) == []


def test_top_reasons_breaks_ties_by_feature_order() -> None:
    assert top_reasons([0.5, 0.5, 0.5, 0.5], NAMES, READABLE, k=2) == [
        "amount unusual for this card",
        "many payments in the last hour",
    ]


def test_top_reasons_refuses_a_row_of_the_wrong_size() -> None:
    with pytest.raises(ValueError):
        top_reasons([0.1, 0.2], NAMES, READABLE)
