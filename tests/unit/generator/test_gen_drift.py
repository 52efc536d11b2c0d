"""Drift scenarios: parsed strictly, and visible only from their onset on."""

from __future__ import annotations

import numpy as np
import pytest

from services.generator import catalog as cat
from services.generator.build import World, generate
from services.generator.config import DriftSpec, parse_drift
from services.generator.drift import INFLATED_MCCS
from services.generator.frame import PATTERN_NAMES, Txns
from tests.unit.generator.worlds import small_config

ONSET_DAY = 20


def _before(txns: Txns, onset_ms: int) -> Txns:
    return txns.take(np.flatnonzero(txns.time_ms < onset_ms))


def _drifted(name: str) -> tuple[World, World, int]:
    base = generate(small_config(cards=1_500))
    drifted = generate(small_config(cards=1_500, drift=(DriftSpec(name, ONSET_DAY),)))
    return base, drifted, base.config.onset_ms(ONSET_DAY)


def test_parse_drift_accepts_name_at_day() -> None:
    specs = parse_drift(["merchant_mix@30", "amount_inflation@10"], days=60)
    assert specs == (DriftSpec("amount_inflation", 10), DriftSpec("merchant_mix", 30))
    assert parse_drift(None, days=60) == ()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("nope@3", "unknown drift scenario 'nope'"),
        ("merchant_mix", "expected NAME@DAY"),
        ("merchant_mix@x", "whole number"),
        ("merchant_mix@-1", "between 1 and 59"),
        ("merchant_mix@60", "between 1 and 59"),
        ("merchant_mix@0", "between 1 and 59"),
    ],
)
def test_parse_drift_rejects_bad_items(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_drift([item], days=60)


def test_parse_drift_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="given twice"):
        parse_drift(["merchant_mix@3", "merchant_mix@4"], days=60)


def test_amount_inflation_only_after_onset() -> None:
    base, drifted, onset = _drifted("amount_inflation")
    assert np.array_equal(base.txns.time_ms, drifted.txns.time_ms)
    ratio = drifted.txns.amount_eur / base.txns.amount_eur
    mcc = base.population.merchant_mcc(base.txns.merchant)
    inflated = np.isin(mcc, INFLATED_MCCS)
    after = base.txns.time_ms >= onset
    assert np.allclose(ratio[~after], 1.0)
    assert np.allclose(ratio[after & ~inflated], 1.0)
    assert np.all((ratio[after & inflated] >= 1.5) & (ratio[after & inflated] <= 3.0))
    factors = drifted.drift[0]["params"]["factor_by_mcc"]
    assert set(factors) == {str(m) for m in INFLATED_MCCS}


def test_new_pattern_appears_after_onset_only() -> None:
    base, drifted, onset = _drifted("new_pattern")
    slow = drifted.txns.pattern == PATTERN_NAMES.index("low_and_slow")
    assert slow.sum() > 20
    assert drifted.txns.time_ms[slow].min() >= onset
    before_base, before_drift = _before(base.txns, onset), _before(drifted.txns, onset)
    assert np.array_equal(before_base.time_ms, before_drift.time_ms)
    assert np.array_equal(before_base.amount_eur, before_drift.amount_eur)
    assert drifted.drift[0]["onset_day"] == ONSET_DAY and drifted.drift[0]["onset_ms"] == onset


def test_merchant_mix_shifts_spend_online_after_onset() -> None:
    base, drifted, onset = _drifted("merchant_mix")

    def legit_online_share(world: World, after: bool) -> float:
        t = world.txns
        mask = ~t.is_fraud & ((t.time_ms >= onset) == after)
        return float((world.population.merchant_channel[t.merchant[mask]] == cat.ECOM).mean())

    assert legit_online_share(drifted, after=True) > legit_online_share(base, after=True) + 0.15
    b_legit = _before(base.txns, onset).take(np.flatnonzero(~_before(base.txns, onset).is_fraud))
    d_before = _before(drifted.txns, onset)
    d_legit = d_before.take(np.flatnonzero(~d_before.is_fraud))
    assert np.array_equal(b_legit.merchant, d_legit.merchant)
    assert np.array_equal(b_legit.amount_eur, d_legit.amount_eur)


def test_all_scenarios_together(drift_world: World) -> None:
    assert [d["name"] for d in drift_world.drift] == ["amount_inflation", "merchant_mix", "new_pattern"]
    assert all(d["onset"].endswith("Z") for d in drift_world.drift)
