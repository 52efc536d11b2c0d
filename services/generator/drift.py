"""Drift scenarios: changes of the world that start at an onset day.

amount_inflation  amounts (legit and fraud) in a few MCCs are multiplied by a factor
                  drawn from 1.5-3 per MCC, from the onset on: covariate shift that
                  makes "amount vs history" features and PSI on amounts move.
new_pattern       low-and-slow fraud (see :mod:`services.generator.patterns`) starts
                  at the onset, adding about half of ``fraud_rate`` on top: concept
                  drift that a model trained before the onset sees poorly.
merchant_mix      from the onset a third of legit spend moves to online merchants,
                  tilted toward riskier ones: channel and MCC mix shift.

Each scenario draws from its own random stream, so enabling one leaves everything
before its onset byte-identical (the tests rely on that).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from services.generator import catalog as cat
from services.generator.frame import Txns
from services.generator.legit import MerchantShift
from services.generator.world import Pool, Population

INFLATED_MCCS = (5411, 5541, 5732, 7011, 4511)
INFLATION_RANGE = (1.5, 3.0)
MIX_SHIFT_SHARE = 0.35
SLOW_FRAUD_SHARE_OF_RATE = 0.5


def inflation_factors(rng: np.random.Generator) -> dict[int, float]:
    """MCC -> amount multiplier, drawn once per seed (recorded in the manifest)."""
    factors = rng.uniform(*INFLATION_RANGE, len(INFLATED_MCCS))
    return {mcc: round(float(f), 3) for mcc, f in zip(INFLATED_MCCS, factors, strict=True)}


def inflate_amounts(txns: Txns, pop: Population, onset_ms: int, factors: dict[int, float]) -> None:
    """Multiply, in place, the amounts of ``factors``' MCCs at or after ``onset_ms``."""
    mcc = pop.merchant_mcc(txns.merchant)
    after = txns.time_ms >= onset_ms
    for code, factor in factors.items():
        txns.amount_eur[after & (mcc == code)] *= factor


def merchant_mix_shift(pop: Population, onset_ms: int, rng: np.random.Generator) -> MerchantShift:
    """A hook for legit spend that re-routes a share of it online from ``onset_ms``."""
    online = np.flatnonzero(pop.merchant_channel == cat.ECOM)
    tilted = pop.merchant_weight * (1.0 + 2.0 * pop.merchant_risk)
    pool = Pool.of(online, tilted)

    def shift(merchant: np.ndarray, time_ms: np.ndarray) -> np.ndarray:
        n = merchant.shape[0]
        moved = (rng.random(n) < MIX_SHIFT_SHARE) & (time_ms >= onset_ms)
        return np.asarray(np.where(moved, pool.sample(rng, n), merchant), dtype=np.int32)

    return shift


def describe(name: str, onset_day: int, onset_ms: int, params: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of one scenario."""
    onset_iso = datetime.fromtimestamp(onset_ms / 1000, tz=UTC).isoformat()
    return {
        "name": name,
        "onset_day": onset_day,
        "onset_ms": onset_ms,
        "onset": onset_iso.replace("+00:00", "Z"),
        "params": params,
    }
