from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import metrics


def brute_force_auc(y: list[int], s: list[float]) -> float:
    pos = [b for a, b in zip(y, s, strict=True) if a]
    neg = [b for a, b in zip(y, s, strict=True) if not a]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def brute_force_ap(y: list[int], s: list[float]) -> float:
    """Average precision straight from its definition, one threshold per distinct score."""
    total_pos = sum(y)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        alerted = [a for a, b in zip(y, s, strict=True) if b >= t]
        recall = sum(alerted) / total_pos
        ap += (recall - prev_recall) * sum(alerted) / len(alerted)
        prev_recall = recall
    return ap


labelled = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=0, max_value=6)), min_size=2, max_size=40
).filter(lambda rows: 0 < sum(r[0] for r in rows) < len(rows))


def test_roc_auc_hand_computed() -> None:
    # pairs (pos, neg): (0.9,0.1) win, (0.9,0.4) win, (0.35,0.1) win, (0.35,0.4) loss -> 3/4
    assert metrics.roc_auc([1, 0, 1, 0], [0.9, 0.1, 0.35, 0.4]) == 0.75


def test_roc_auc_counts_ties_as_half() -> None:
    assert metrics.roc_auc([1, 0], [0.5, 0.5]) == 0.5
    assert metrics.roc_auc([1, 1, 0, 0], [0.7, 0.5, 0.5, 0.1]) == 0.875


def test_roc_auc_undefined_with_one_class() -> None:
    assert math.isnan(metrics.roc_auc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(metrics.roc_auc([], []))


def test_pr_auc_hand_computed() -> None:
    # order 0.9(+) 0.8(-) 0.7(+) 0.1(-): P at each positive 1/1 and 2/3 -> (1 + 2/3) / 2
    assert metrics.pr_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6, abs=1e-15)


def test_pr_auc_ties_enter_together() -> None:
    # One group of 4 with 2 positives: precision 0.5 at recall 1, whatever the row order.
    assert metrics.pr_auc([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]) == 0.5
    assert metrics.pr_auc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == 0.5


@settings(max_examples=200, deadline=None)
@given(labelled)
def test_auc_and_ap_match_brute_force(rows: list[tuple[bool, int]]) -> None:
    y = [int(a) for a, _ in rows]
    s = [b / 4 for _, b in rows]  # few distinct values: plenty of ties
    assert metrics.roc_auc(y, s) == pytest.approx(brute_force_auc(y, s), abs=1e-12)
    assert metrics.pr_auc(y, s) == pytest.approx(brute_force_ap(y, s), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(labelled, st.integers(min_value=0, max_value=2**32 - 1))
def test_metrics_do_not_depend_on_row_order(rows: list[tuple[bool, int]], seed: int) -> None:
    y = np.array([a for a, _ in rows])
    s = np.array([float(b) for _, b in rows])
    perm = np.random.default_rng(seed).permutation(len(rows))
    assert metrics.summary(y, s) == metrics.summary(y[perm], s[perm])


def test_recall_at_top_decile_exact() -> None:
    # 20 rows, top decile = 2 rows; 4 positives of which the top 2 rows hold 1.
    s = np.arange(20, 0, -1, dtype=float)
    y = np.zeros(20, dtype=bool)
    y[[1, 5, 10, 15]] = True
    assert metrics.recall_at_top_fraction(y, s, 0.1) == 0.25
    assert metrics.recall_at_top_fraction(y, s, 0.3) == 0.5  # rows 0..5


def test_top_k_splits_a_boundary_tie_fractionally() -> None:
    # k = 2: row 0 alone above the tie, then 1 of the 3 tied rows (holding 1 positive).
    s = [0.9, 0.5, 0.5, 0.5, 0.1]
    y = [0, 1, 0, 0, 1]
    assert metrics.precision_at_k(y, s, 2) == pytest.approx((0 + 1 / 3) / 2)
    assert metrics.recall_at_top_fraction(y, s, 0.4) == pytest.approx((1 / 3) / 2)


def test_constant_scores_give_the_base_rate() -> None:
    y = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    s = [0.5] * 10
    assert metrics.precision_at_k(y, s, 5) == pytest.approx(0.2)
    assert metrics.recall_at_alert_rate(y, s, 0.5) == pytest.approx(0.5)


def test_rows_for_fraction_is_not_fooled_by_float_error() -> None:
    assert metrics.rows_for_fraction(100, 0.1) == 10
    assert metrics.rows_for_fraction(1000, 0.01) == 10
    assert metrics.rows_for_fraction(15, 0.1) == 2  # rounded up
    assert metrics.rows_for_fraction(3, 1.0) == 3


def test_default_k_is_one_percent_but_at_least_100() -> None:
    assert metrics.default_k(50_000) == 500
    assert metrics.default_k(5_000) == 100
    assert metrics.default_k(40) == 40


def test_summary_keys_and_json_safety() -> None:
    out = metrics.nan_to_none(metrics.summary([0, 0, 0], [0.1, 0.2, 0.3]))
    assert out == {
        "rows": 3,
        "positives": 0,
        "roc_auc": None,
        "pr_auc": None,
        "recall_at_top_decile": None,
        "recall_at_1pct_alert_rate": None,
        "precision_at_k": 0.0,
        "k": 3,
    }


@pytest.mark.parametrize(
    ("y", "s"),
    [([0, 1], [0.1]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1, float("nan")])],
)
def test_bad_input_is_refused(y: list[int], s: list[float]) -> None:
    with pytest.raises(ValueError):
        metrics.roc_auc(y, s)
