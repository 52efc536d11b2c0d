"""The population: cards (customers) and merchants, drawn once per seed.

A card has a home country, a transaction rate, a spend level with a per-MCC tilt
(lognormal), active hours, 1-3 devices, a handful of favourite merchants and maybe one
trip abroad. A merchant has an MCC, a country, one channel consistent with its MCC, a
risk level and a popularity. Devices are plain indices here; their tokens are minted
at write time from their own random stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.generator import catalog as cat

FAVOURITES_LOCAL = 8
FAVOURITES_ECOM = 4
MEAN_TXNS_PER_CARD_DAY = 0.35
TRIP_RATE_PER_DAY = 1 / 200  # chance per day that a card goes on its one trip


@dataclass(frozen=True)
class Pool:
    """A weighted set of merchants to sample from."""

    merchants: np.ndarray
    cdf: np.ndarray

    @classmethod
    def of(cls, merchants: np.ndarray, weights: np.ndarray) -> Pool:
        if merchants.size == 0:
            raise ValueError("empty merchant pool; raise --merchants")
        cdf = np.cumsum(weights[merchants], dtype=np.float64)
        return cls(merchants.astype(np.int32), cdf / cdf[-1])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        picks = np.searchsorted(self.cdf, rng.random(n), side="right")
        return self.merchants[np.minimum(picks, self.merchants.size - 1)]


@dataclass(frozen=True)
class Population:
    # cards
    card_country: np.ndarray  # int32 index into catalog.COUNTRIES
    card_rate: np.ndarray  # mean transactions per day
    card_scale: np.ndarray  # spend level multiplier
    card_mcc_scale: np.ndarray  # float32 [cards, categories] per-MCC tilt
    card_hour_center: np.ndarray  # local hour around which the card is used
    card_hour_spread: np.ndarray  # hours
    card_favourites: np.ndarray  # int32 [cards, FAVOURITES_LOCAL + FAVOURITES_ECOM]
    card_device_first: np.ndarray  # int32 first device index of the card
    card_device_count: np.ndarray  # int32 1..3
    trip_first_day: np.ndarray  # int32, -1 = no trip
    trip_last_day: np.ndarray  # int32
    trip_country: np.ndarray  # int32
    # merchants
    merchant_category: np.ndarray  # int32 index into catalog.CATEGORIES
    merchant_country: np.ndarray  # int32
    merchant_channel: np.ndarray  # int8 index into catalog.CHANNELS
    merchant_risk: np.ndarray  # int8 0..2
    merchant_weight: np.ndarray  # popularity
    local_pools: tuple[Pool, ...]  # card-present merchants per country
    ecom_pool: Pool
    devices: int  # devices owned by cards: indices 0..devices-1

    @property
    def cards(self) -> int:
        return int(self.card_country.shape[0])

    @property
    def merchants(self) -> int:
        return int(self.merchant_category.shape[0])

    def merchant_mcc(self, merchant: np.ndarray) -> np.ndarray:
        return np.asarray(cat.MCC_CODES[self.merchant_category[merchant]])

    def pool(self, categories: tuple[int, ...], channels: tuple[int, ...]) -> Pool:
        """Merchants of some MCCs and channels, weighted by popularity."""
        wanted = np.isin(self.merchant_category, cat.category_indices(categories))
        wanted &= np.isin(self.merchant_channel, np.array(channels))
        return Pool.of(np.flatnonzero(wanted), self.merchant_weight)

    def typical_amount_eur(self, card: np.ndarray, category: np.ndarray) -> np.ndarray:
        """The card's median ticket in a category, in EUR."""
        tilt = self.card_mcc_scale[card, category].astype(np.float64)
        return np.asarray(cat.MCC_MEDIAN_EUR[category] * self.card_scale[card] * tilt)


def build_population(rng: np.random.Generator, cards: int, merchants: int, days: int) -> Population:
    m = _merchants(rng, merchants)
    local_pools = tuple(
        Pool.of(
            np.flatnonzero((m["country"] == c) & (m["channel"] != cat.ECOM)),
            m["weight"],
        )
        if np.any((m["country"] == c) & (m["channel"] != cat.ECOM))
        else Pool.of(np.flatnonzero(m["channel"] != cat.ECOM), m["weight"])
        for c in range(len(cat.COUNTRIES))
    )
    ecom_pool = Pool.of(np.flatnonzero(m["channel"] == cat.ECOM), m["weight"])
    c = _cards(rng, cards, days)
    favourites = _favourites(rng, c["country"], local_pools, ecom_pool)
    device_count = rng.choice(3, size=cards, p=[0.5, 0.35, 0.15]).astype(np.int32) + 1
    device_first = (np.cumsum(device_count) - device_count).astype(np.int32)
    return Population(
        card_country=c["country"],
        card_rate=c["rate"],
        card_scale=c["scale"],
        card_mcc_scale=np.exp(rng.normal(0.0, 0.25, (cards, len(cat.CATEGORIES)))).astype(np.float32),
        card_hour_center=c["hour_center"],
        card_hour_spread=c["hour_spread"],
        card_favourites=favourites,
        card_device_first=device_first,
        card_device_count=device_count,
        trip_first_day=c["trip_first"],
        trip_last_day=c["trip_last"],
        trip_country=c["trip_country"],
        merchant_category=m["category"],
        merchant_country=m["country"],
        merchant_channel=m["channel"],
        merchant_risk=m["risk"],
        merchant_weight=m["weight"],
        local_pools=local_pools,
        ecom_pool=ecom_pool,
        devices=int(device_count.sum()),
    )


def _merchants(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    category = rng.choice(len(cat.CATEGORIES), size=n, p=cat.normalized(cat.MCC_WEIGHT))
    # every category exists at least once, so every pattern finds its merchants
    seeded = min(n, len(cat.CATEGORIES))
    category[:seeded] = np.arange(seeded)
    category = category.astype(np.int32)
    u = rng.random(n)
    cum = np.cumsum(cat.MCC_CHANNELS[category], axis=1)
    channel = np.minimum((u[:, None] >= cum).sum(axis=1), 3).astype(np.int8)
    # guarantee one e-commerce merchant per e-commerce-capable category
    for k in range(seeded):
        if cat.MCC_CHANNELS[k][cat.ECOM] > 0:
            channel[k] = cat.ECOM
    country = np.where(
        channel == cat.ECOM,
        rng.choice(len(cat.COUNTRIES), size=n, p=cat.normalized(cat.COUNTRY_ECOM)),
        rng.choice(len(cat.COUNTRIES), size=n, p=cat.normalized(cat.COUNTRY_MERCHANTS)),
    ).astype(np.int32)
    bump = (rng.random(n) < 0.1).astype(np.int8)
    risk = np.minimum(cat.MCC_RISK[category] + bump, cat.RISK_HIGH).astype(np.int8)
    weight = rng.lognormal(0.0, 1.1, n)
    return {
        "category": category,
        "channel": channel,
        "country": country,
        "risk": risk,
        "weight": weight,
    }


def _cards(rng: np.random.Generator, n: int, days: int) -> dict[str, np.ndarray]:
    country = rng.choice(len(cat.COUNTRIES), size=n, p=cat.normalized(cat.COUNTRY_RESIDENTS)).astype(np.int32)
    rate = np.maximum(rng.gamma(2.0, MEAN_TXNS_PER_CARD_DAY / 2.0, n), 0.02)
    scale = rng.lognormal(0.0, 0.45, n)
    kind = rng.random(n)
    center = np.where(
        kind < 0.88,
        np.clip(rng.normal(14.0, 2.2, n), 8.0, 20.0),
        np.where(kind < 0.95, rng.normal(21.5, 1.2, n), rng.normal(8.0, 1.0, n)),
    )
    spread = rng.uniform(2.0, 3.5, n)
    travels = rng.random(n) < 1.0 - np.exp(-days * TRIP_RATE_PER_DAY)
    trip_first = rng.integers(0, days, n)
    trip_last = trip_first + rng.integers(2, 11, n)
    trip_country = rng.choice(len(cat.COUNTRIES), size=n, p=cat.normalized(cat.COUNTRY_MERCHANTS)).astype(
        np.int32
    )
    travels &= trip_country != country
    return {
        "country": country,
        "rate": rate,
        "scale": scale,
        "hour_center": center,
        "hour_spread": spread,
        "trip_first": np.where(travels, trip_first, -1).astype(np.int32),
        "trip_last": np.where(travels, trip_last, -1).astype(np.int32),
        "trip_country": trip_country,
    }


def _favourites(
    rng: np.random.Generator, country: np.ndarray, local_pools: tuple[Pool, ...], ecom_pool: Pool
) -> np.ndarray:
    n = country.shape[0]
    fav = np.empty((n, FAVOURITES_LOCAL + FAVOURITES_ECOM), dtype=np.int32)
    for c, pool in enumerate(local_pools):
        rows = np.flatnonzero(country == c)
        if rows.size:
            picks = pool.sample(rng, rows.size * FAVOURITES_LOCAL)
            fav[rows, :FAVOURITES_LOCAL] = picks.reshape(rows.size, FAVOURITES_LOCAL)
    fav[:, FAVOURITES_LOCAL:] = ecom_pool.sample(rng, n * FAVOURITES_ECOM).reshape(n, FAVOURITES_ECOM)
    return fav


def mint_tokens(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    """``n`` distinct tokens like ``card_1f0e...`` (64 random bits, never PAN-like)."""
    values = rng.integers(0, 2**63, size=n, dtype=np.int64)
    while np.unique(values).size < n:  # astronomically rare; redraw to stay distinct
        values = rng.integers(0, 2**63, size=n, dtype=np.int64)
    return [f"{prefix}{v:016x}" for v in values.tolist()]
