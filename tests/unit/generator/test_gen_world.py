"""The shape of the generated world: ids, consistency, ordering, fraud rate, toggles."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from services import dataset
from services.generator import catalog as cat
from services.generator.build import World, generate
from services.generator.frame import PATTERN_NAMES
from services.generator.legit import day_weights
from tests.unit.generator.worlds import small_config

CURRENCY = {c.code: c.currency for c in cat.COUNTRIES}
CHANNELS_OF_MCC = {
    c.mcc: {cat.CHANNELS[i] for i, p in enumerate(c.channels) if p > 0} for c in cat.CATEGORIES
}


def test_records_are_consistent(written: Path) -> None:
    txns = dataset.read_transactions(written)
    assert txns
    for t in txns:
        assert re.fullmatch(r"card_[0-9a-f]{16}", t["card_id"])
        assert re.fullmatch(r"m_\d+", t["merchant_id"])
        assert t["currency"] == CURRENCY[t["country"]]
        assert t["channel"] in CHANNELS_OF_MCC[t["mcc"]]
        assert (t["device_id"] is not None) == (t["channel"] == "ECOM")
        assert t["amount"] > 0 and t["amount"] == round(t["amount"], 2)
        assert isinstance(t["event_time"], int)
    assert len({t["txn_id"] for t in txns}) == len(txns)
    merchant_attrs = {(t["merchant_id"], t["mcc"], t["country"], t["channel"]) for t in txns}
    assert len(merchant_attrs) == len({t["merchant_id"] for t in txns})  # a merchant is one thing


def test_files_are_sorted_and_within_the_period(written: Path) -> None:
    manifest = dataset.read_manifest(written)
    txns = dataset.read_transactions(written)
    keys = [(t["event_time"], t["txn_id"]) for t in txns]
    assert keys == sorted(keys)
    assert manifest["start_ms"] <= keys[0][0] and keys[-1][0] < manifest["end_ms"]
    labels = dataset.read_labels(written)
    label_keys = [(lab["label_time"], lab["txn_id"]) for lab in labels]
    assert label_keys == sorted(label_keys)
    truth = list(dataset.iter_truth(written))
    assert [r["txn_id"] for r in truth] == [t["txn_id"] for t in txns]


def test_fraud_rate_near_target(world: World) -> None:
    rate = float(world.txns.is_fraud.mean())
    assert 0.0035 <= rate <= 0.0065, rate
    patterns = {PATTERN_NAMES[p] for p in np.unique(world.txns.pattern)}
    assert patterns == {"", "card_testing", "ato", "compromised_merchant", "opportunistic"}


def test_fraud_rate_is_configurable() -> None:
    heavy = generate(small_config(fraud_rate=0.01, cards=1_500))
    assert 0.008 <= float(heavy.txns.is_fraud.mean()) <= 0.012


def test_patterns_can_be_switched_off() -> None:
    only = generate(small_config(cards=800, patterns=("ato", "opportunistic")))
    names = {PATTERN_NAMES[p] for p in np.unique(only.txns.pattern)}
    assert names == {"", "ato", "opportunistic"}


def test_default_scale_is_a_few_hundred_thousand_per_60_days(world: World) -> None:
    per_card_day = len(world.txns) / (world.config.cards * world.config.days)
    assert 300_000 <= per_card_day * 20_000 * 60 <= 600_000


def test_weekly_and_daily_seasonality(world: World) -> None:
    legit = world.txns.time_ms[~world.txns.is_fraud]
    weekday = ((legit // cat.DAY_MS) + 3) % 7
    per_weekday = np.bincount(weekday, minlength=7) / np.bincount(
        ((world.config.start_ms // cat.DAY_MS + np.arange(world.config.days)) + 3) % 7,
        minlength=7,
    )
    assert per_weekday[5] > per_weekday[6] * 1.3  # Saturday busier than Sunday
    hours = Counter(((legit % cat.DAY_MS) // cat.HOUR_MS).tolist())
    assert hours[13] > 5 * hours[3]  # afternoons, not nights (mostly European cards)
    assert day_weights(world.config.start_ms, 7).shape == (7,)


def test_fraud_differs_from_legit_in_learnable_ways(world: World) -> None:
    txns, pop = world.txns, world.population
    fraud = txns.is_fraud
    ecom = pop.merchant_channel[txns.merchant] == cat.ECOM
    assert ecom[fraud].mean() > ecom[~fraud].mean() + 0.2
    high_risk = pop.merchant_risk[txns.merchant] == cat.RISK_HIGH
    assert high_risk[fraud].mean() > 3 * high_risk[~fraud].mean()
    # ...but no single field gives it away: plenty of legit e-commerce and risky spend
    assert ecom[~fraud].sum() > 20 * ecom[fraud].sum()
    assert high_risk[~fraud].sum() > 2 * high_risk[fraud].sum()
