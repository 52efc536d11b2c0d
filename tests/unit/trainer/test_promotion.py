"""The promotion policy: mature days, the holdout both models are judged on, the verdict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.core.recall import DAY_MS, DelayPrior
from services.trainer import promotion
from services.trainer.promotion import Contender, Holdout, PolicyConfig

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
PRIOR = DelayPrior(median_days=3.0, sigma=0.5)  # fast labels: days mature in about a week


def day(n: float) -> int:
    return T0 + int(n * DAY_MS)


def rows(days: int, per_day: int = 24) -> tuple[np.ndarray, list[str]]:
    """``per_day`` transactions an hour apart on each of ``days`` days."""
    t = np.array([day(d) + h * 3_600_000 for d in range(days) for h in range(per_day)], dtype=np.int64)
    return t, [f"t{i}" for i in range(t.size)]


def fraud_labels(t: np.ndarray, ids: list[str], every: int, delay_days: float) -> list[dict[str, Any]]:
    return [
        {"txn_id": ids[i], "label_time": int(t[i]) + int(delay_days * DAY_MS), "is_fraud": True}
        for i in range(0, t.size, every)
    ]


def test_old_days_are_mature_and_young_ones_are_not() -> None:
    t, ids = rows(30)
    labels = fraud_labels(t, ids, every=5, delay_days=3.0)
    maturity = promotion.day_maturity(t, ids, labels, day(30), PRIOR, horizon_days=90)
    assert sorted(maturity) == [day(d) for d in range(30)]
    assert maturity[day(0)] > 0.99 and maturity[day(29)] < 0.2
    values = [maturity[day(d)] for d in range(30)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # older = more mature


def test_labels_after_the_cutoff_are_not_known() -> None:
    t, ids = rows(10)
    late = fraud_labels(t, ids, every=3, delay_days=40.0)  # all after the cutoff
    early = promotion.day_maturity(t, ids, [], day(10), PRIOR, 90)
    assert promotion.day_maturity(t, ids, late, day(10), PRIOR, 90) == early


def test_holdout_is_the_latest_mature_days_between_the_bounds() -> None:
    cfg = PolicyConfig(holdout_days=3, min_maturity=0.8)
    maturity = {day(d): m for d, m in enumerate([0.99, 0.95, 0.9, 0.85, 0.81, 0.7, 0.4, 0.1])}
    holdout = promotion.choose_holdout(maturity, not_before_ms=None, end_by_ms=day(8), cfg=cfg)
    assert holdout == Holdout(days=(day(2), day(3), day(4)), maturity=0.81)
    assert (holdout.start_ms, holdout.end_ms) == (day(2), day(5))

    # The challenger's window starts on day 4: day 4 is not eligible.
    holdout = promotion.choose_holdout(maturity, not_before_ms=None, end_by_ms=day(4), cfg=cfg)
    assert holdout is not None and holdout.days == (day(1), day(2), day(3))

    # The champion was fitted up to day 2 12:00: days 0-2 are its own; day 2 is skipped whole.
    holdout = promotion.choose_holdout(maturity, not_before_ms=day(2.5), end_by_ms=day(8), cfg=cfg)
    assert holdout is not None and holdout.days == (day(3), day(4))

    assert promotion.choose_holdout(maturity, not_before_ms=day(5), end_by_ms=day(8), cfg=cfg) is None


def test_holdout_mask_selects_its_days() -> None:
    holdout = Holdout(days=(day(1), day(2)), maturity=0.9)
    t = np.array([day(0.5), day(1), day(1.99), day(2.5), day(3)], dtype=np.int64)
    assert holdout.mask(t).tolist() == [False, True, True, True, False]


def test_evaluate_reports_ranking_and_threshold_figures() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    figures = promotion.evaluate(y, scores, review_threshold=0.75, alert_share=0.3)
    assert figures["positives"] == 2 and figures["rows"] == 10
    assert figures["pr_auc"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert figures["recall_at_review_threshold"] == 0.5 and figures["alert_share_at_review"] == 0.2
    assert figures["recall_at_champion_alert_share"] == 1.0  # the top 3 hold both frauds


def test_evaluate_without_frauds_is_json_safe() -> None:
    figures = promotion.evaluate(np.zeros(5, dtype=bool), np.linspace(0, 1, 5), 0.5)
    assert figures["pr_auc"] is None and figures["recall_at_review_threshold"] is None


@pytest.mark.parametrize(
    ("champion", "challenger", "action", "why"),
    [
        ({"pr_auc": 0.50, "positives": 40}, {"pr_auc": 0.53, "positives": 40}, "promote", "auto:"),
        ({"pr_auc": 0.50, "positives": 40}, {"pr_auc": 0.51, "positives": 40}, "hold", "delta +0.0100"),
        ({"pr_auc": 0.10, "positives": 19}, {"pr_auc": 0.90, "positives": 19}, "hold", "19 labelled frauds"),
        ({"pr_auc": None, "positives": 40}, {"pr_auc": 0.9, "positives": 40}, "hold", "undefined"),
    ],
)  # fmt: skip
def test_verdicts(champion: dict[str, Any], challenger: dict[str, Any], action: str, why: str) -> None:
    decision = promotion.decide(champion, challenger, PolicyConfig(margin=0.02, min_frauds=20))
    assert decision.action == action and why in decision.reason


def test_margin_of_one_never_promotes() -> None:
    decision = promotion.decide({"pr_auc": 0.0, "positives": 99}, {"pr_auc": 1.0, "positives": 99},
                                PolicyConfig(margin=1.0 + 1e-9))  # fmt: skip
    assert decision.action == "hold"


def test_no_comparison_holds_with_the_reason() -> None:
    decision = promotion.decide(None, None, PolicyConfig(), no_comparison="no matured holdout")
    assert decision == promotion.Decision("hold", "manual promotion only: no matured holdout")
    assert decision.to_dict(PolicyConfig())["metric"] == "pr_auc"


def test_bad_policy_values_are_refused() -> None:
    with pytest.raises(ValueError):
        PolicyConfig(min_maturity=0.0)
    with pytest.raises(ValueError):
        PolicyConfig(margin=-0.1)


def _contender(weights: np.ndarray, threshold: float) -> Contender:
    return Contender(lambda X: np.asarray(X @ weights, dtype=np.float64), threshold)


def test_compare_judges_both_models_on_the_same_matured_rows() -> None:
    rng = np.random.default_rng(4)
    t, ids = rows(40)
    fraud = rng.random(t.size) < 0.08
    X = np.column_stack([fraud + rng.normal(0, 0.3, t.size), rng.normal(size=t.size)])
    labels = [{"txn_id": ids[i], "label_time": int(t[i]) + 2 * DAY_MS, "is_fraud": True}
              for i in np.flatnonzero(fraud)]  # fmt: skip
    cfg = PolicyConfig(holdout_days=5, min_maturity=0.8, min_frauds=20, margin=0.02)
    out = promotion.compare(
        event_ms=t, txn_ids=ids, X=X, labels=labels, as_of_ms=day(40), not_before_ms=day(10),
        end_by_ms=day(30), champion=_contender(np.array([0.0, 1.0]), 0.5),
        challenger=_contender(np.array([1.0, 0.0]), 0.5), cfg=cfg, prior=PRIOR,
    )  # fmt: skip
    assert out["holdout"]["start_ms"] == day(25) and out["holdout"]["end_ms"] == day(30)
    assert out["holdout"]["rows"] == 5 * 24
    in_holdout = (t >= day(25)) & (t < day(30))
    assert out["holdout"]["frauds"] == int(fraud[in_holdout].sum())
    assert out["evaluation"]["challenger"]["rows"] == out["evaluation"]["champion"]["rows"] == 120
    assert out["evaluation"]["challenger"]["pr_auc"] > 0.9 > out["evaluation"]["champion"]["pr_auc"]
    assert out["decision"]["action"] == ("promote" if out["holdout"]["frauds"] >= 20 else "hold")


def test_compare_without_a_holdout_or_champion_holds() -> None:
    t, ids = rows(10)
    X = np.zeros((t.size, 2))
    kwargs: dict[str, Any] = dict(event_ms=t, txn_ids=ids, X=X, labels=[], as_of_ms=day(10), end_by_ms=day(9),
                                  challenger=_contender(np.ones(2), 0.5), cfg=PolicyConfig(),
                                  prior=DelayPrior())  # chargebacks: a median of 21 days  # fmt: skip
    young = promotion.compare(not_before_ms=None, champion=_contender(np.ones(2), 0.5), **kwargs)
    assert young["holdout"] is None and "no matured holdout" in young["decision"]["reason"]
    alone = promotion.compare(not_before_ms=None, champion=None,
                              **{**kwargs, "as_of_ms": day(60), "end_by_ms": day(10)})  # fmt: skip
    assert alone["holdout"] is not None and alone["evaluation"] is None
    assert "no champion" in alone["decision"]["reason"]
