"""Put the world together: population, legit spend, fraud, drift, labels.

Every component draws from its own random stream, derived from the seed and a fixed
stream number, so switching a pattern or a drift scenario on or off does not reshuffle
the rest of the world.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.generator import drift, patterns
from services.generator.config import PATTERN_SHARES, GeneratorConfig
from services.generator.frame import Txns
from services.generator.labels import Labels, make_labels
from services.generator.legit import DeviceCounter, legit_transactions
from services.generator.world import MEAN_TXNS_PER_CARD_DAY, Population, build_population

# stream numbers: never renumber, or every data set changes
STREAMS = {
    "population": 0,
    "legit": 1,
    "card_testing": 2,
    "ato": 3,
    "compromised_merchant": 4,
    "opportunistic": 5,
    "labels": 6,
    "tokens": 7,
    "amount_inflation": 8,
    "merchant_mix": 9,
    "new_pattern": 10,
    "ring": 11,
}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class World:
    config: GeneratorConfig
    population: Population
    txns: Txns  # sorted by event time; position = txn id counter
    labels: Labels  # sorted by (label_time, txn)
    devices: int  # device indices in use: 0..devices-1
    drift: tuple[dict[str, Any], ...]  # manifest entries


def stream(seed: int, name: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(STREAMS[name],))))


def fraud_targets(config: GeneratorConfig, legit_count: int) -> dict[str, int]:
    """Fraud transactions per enabled pattern so fraud is ``fraud_rate`` of all."""
    total = config.fraud_rate / (1.0 - config.fraud_rate) * legit_count
    shares = {p: PATTERN_SHARES[p] for p in config.patterns}
    norm = sum(shares.values())
    return {p: max(1, round(total * s / norm)) for p, s in shares.items()}


def _ring_size(config: GeneratorConfig) -> int:
    expected_fraud = config.cards * config.days * MEAN_TXNS_PER_CARD_DAY * config.fraud_rate
    return max(16, int(expected_fraud / 25))


def generate(config: GeneratorConfig, progress: Progress | None = None) -> World:
    step = progress or (lambda _: None)
    seed = config.seed
    step("population")
    pop = build_population(stream(seed, "population"), config.cards, config.merchants, config.days)
    devices = DeviceCounter(pop.devices)
    ring = devices.new(_ring_size(config))
    drift_entries: list[dict[str, Any]] = []

    step("legit spend")
    mix_day = config.drift_onset("merchant_mix")
    shift = None
    if mix_day is not None:
        onset = config.onset_ms(mix_day)
        shift = drift.merchant_mix_shift(pop, onset, stream(seed, "merchant_mix"))
        drift_entries.append(
            drift.describe("merchant_mix", mix_day, onset, {"moved_share": drift.MIX_SHIFT_SHARE})
        )
    legit = legit_transactions(pop, config.start_ms, config.days, stream(seed, "legit"), devices, shift)

    step("fraud")
    ctx = patterns.FraudContext(pop, config.start_ms, config.end_ms, devices, ring)
    parts = [legit]
    for name, target in fraud_targets(config, len(legit)).items():
        rng = stream(seed, name)
        if name == "compromised_merchant":
            parts.append(patterns.compromised_merchant(ctx, rng, target, legit))
        else:
            parts.append(getattr(patterns, name)(ctx, rng, target))
    slow_day = config.drift_onset("new_pattern")
    if slow_day is not None:
        onset = config.onset_ms(slow_day)
        after = int(np.count_nonzero(legit.time_ms >= onset))
        target = round(drift.SLOW_FRAUD_SHARE_OF_RATE * config.fraud_rate * after)
        parts.append(patterns.low_and_slow(ctx, stream(seed, "new_pattern"), target, onset))
        drift_entries.append(drift.describe("new_pattern", slow_day, onset, {"pattern": "low_and_slow"}))

    txns = Txns.concat(parts)
    inflation_day = config.drift_onset("amount_inflation")
    if inflation_day is not None:
        onset = config.onset_ms(inflation_day)
        factors = drift.inflation_factors(stream(seed, "amount_inflation"))
        drift.inflate_amounts(txns, pop, onset, factors)
        drift_entries.append(
            drift.describe(
                "amount_inflation",
                inflation_day,
                onset,
                {"factor_by_mcc": {str(k): v for k, v in factors.items()}},
            )
        )
    txns = txns.take(np.argsort(txns.time_ms, kind="stable"))

    step("labels")
    labels = make_labels(txns, stream(seed, "labels"))
    return World(
        config=config,
        population=pop,
        txns=txns,
        labels=labels,
        devices=devices.next,
        drift=tuple(sorted(drift_entries, key=lambda d: (d["onset_day"], d["name"]))),
    )
