"""Legitimate card spend: who buys where, when, on which device, for how much.

Vectorized over all transactions at once (no per-card Python loop), so a million
transactions take a few seconds. Seasonality: a weekday factor scales the daily
volume and each card keeps to its own active hours in local time, which gives the
daily curve. Most spend repeats at a card's favourite merchants; the rest explores
popular merchants nearby or online, and a trip abroad moves card-present spend to
the trip's country. A small share of e-commerce uses a brand-new device (new phone),
so "new device" alone does not mean fraud.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from services.generator import catalog as cat
from services.generator.frame import NO_DEVICE, Txns
from services.generator.world import FAVOURITES_LOCAL, Population

FAVOURITE_SHARE = 0.78  # share of spend at favourite merchants
EXPLORE_ONLINE_SHARE = 0.25  # of the rest, share at popular online merchants
NEW_DEVICE_SHARE = 0.01  # e-commerce payments from a device the card never used
FAVOURITE_WEIGHTS = cat.normalized(
    np.array([0.2, 0.15, 0.12, 0.1, 0.08, 0.06, 0.05, 0.04, 0.08, 0.05, 0.04, 0.03])
)

# (merchant, time_ms) -> merchant; the merchant_mix drift scenario plugs in here with its
# own random stream, so switching it on leaves every other draw unchanged
MerchantShift = Callable[[np.ndarray, np.ndarray], np.ndarray]


class DeviceCounter:
    """Hands out device indices beyond the cards' own devices (new and fraud devices)."""

    def __init__(self, first_free: int) -> None:
        self.next = first_free

    def new(self, n: int) -> np.ndarray:
        out = np.arange(self.next, self.next + n, dtype=np.int32)
        self.next += n
        return out


def day_weights(start_ms: int, days: int) -> np.ndarray:
    """Relative transaction volume per day of the data set (weekly seasonality)."""
    epoch_day = start_ms // cat.DAY_MS
    weekday = (epoch_day + np.arange(days) + 3) % 7  # 1970-01-01 was a Thursday
    return np.asarray(cat.WEEKDAY_FACTOR[weekday])


def local_time_of_day_ms(pop: Population, card: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hours = pop.card_hour_center[card] + pop.card_hour_spread[card] * rng.standard_normal(card.shape[0])
    return np.asarray((np.mod(hours, 24.0) * cat.HOUR_MS).astype(np.int64))


def legit_transactions(
    pop: Population,
    start_ms: int,
    days: int,
    rng: np.random.Generator,
    devices: DeviceCounter,
    shift: MerchantShift | None = None,
) -> Txns:
    weights = day_weights(start_ms, days)
    per_card = rng.poisson(pop.card_rate * weights.sum())
    card = np.repeat(np.arange(pop.cards, dtype=np.int32), per_card)
    n = card.shape[0]
    cdf = np.cumsum(weights) / weights.sum()
    day = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), days - 1)
    travelling = (day >= pop.trip_first_day[card]) & (day <= pop.trip_last_day[card])
    where = np.where(travelling, pop.trip_country[card], pop.card_country[card])
    local_ms = local_time_of_day_ms(pop, card, rng)
    time_ms = start_ms + day.astype(np.int64) * cat.DAY_MS + local_ms
    time_ms -= cat.COUNTRY_OFFSET_MS[where]
    merchant = _choose_merchants(pop, card, where, travelling, rng)
    if shift is not None:
        merchant = shift(merchant, time_ms)
    inside = (time_ms >= start_ms) & (time_ms < start_ms + days * cat.DAY_MS)
    card, merchant, time_ms = card[inside], merchant[inside], time_ms[inside]
    device = _legit_devices(pop, card, merchant, rng, devices)
    amount = legit_amounts_eur(pop, card, merchant, rng)
    return Txns.build(card, merchant, time_ms, amount, device)


def _choose_merchants(
    pop: Population,
    card: np.ndarray,
    where: np.ndarray,
    travelling: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    n = card.shape[0]
    slot = rng.choice(FAVOURITE_WEIGHTS.shape[0], size=n, p=FAVOURITE_WEIGHTS)
    merchant = pop.card_favourites[card, slot]
    u = rng.random(n)
    explore = u >= FAVOURITE_SHARE
    online = explore & (u >= 1.0 - (1.0 - FAVOURITE_SHARE) * EXPLORE_ONLINE_SHARE)
    # abroad, card-present spend happens at merchants of the trip's country
    local = (explore & ~online) | (travelling & (slot < FAVOURITES_LOCAL))
    merchant = np.where(online, pop.ecom_pool.sample(rng, n), merchant)
    for c, pool in enumerate(pop.local_pools):
        rows = np.flatnonzero(local & (where == c))
        if rows.size:
            merchant[rows] = pool.sample(rng, rows.size)
    return np.asarray(merchant, dtype=np.int32)


def _legit_devices(
    pop: Population,
    card: np.ndarray,
    merchant: np.ndarray,
    rng: np.random.Generator,
    devices: DeviceCounter,
) -> np.ndarray:
    n = card.shape[0]
    u = rng.random(n)
    slot = np.where(u < 0.75, 0, np.where(u < 0.93, 1, 2))
    slot = np.minimum(slot, pop.card_device_count[card] - 1)
    device = pop.card_device_first[card] + slot
    ecom = pop.merchant_channel[merchant] == cat.ECOM
    fresh = ecom & (rng.random(n) < NEW_DEVICE_SHARE)
    device[fresh] = devices.new(int(fresh.sum()))
    return np.asarray(np.where(ecom, device, NO_DEVICE), dtype=np.int32)


def legit_amounts_eur(
    pop: Population, card: np.ndarray, merchant: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    category = pop.merchant_category[merchant]
    typical = pop.typical_amount_eur(card, category)
    return np.asarray(typical * np.exp(rng.normal(0.0, 1.0, card.shape[0]) * cat.MCC_SIGMA[category]))
