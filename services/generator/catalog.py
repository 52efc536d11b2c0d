"""Static tables of the synthetic world: merchant categories, countries, channels.

Numbers are plausible, not sourced: median ticket sizes in EUR, a log-spread per MCC,
how common merchants of a category are, which channels a category uses and how risky
it is. Amounts are drawn in EUR and converted with ``fx`` into the merchant country's
currency, so a transaction's currency always matches its country.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNELS = ("POS", "ECOM", "ATM", "MOTO")
POS, ECOM, ATM, MOTO = range(4)

RISK_LOW, RISK_MEDIUM, RISK_HIGH = 0, 1, 2


@dataclass(frozen=True)
class Category:
    mcc: int
    label: str
    median_eur: float
    sigma: float  # log-spread of one card's amounts around its typical ticket
    weight: float  # share of merchants in this category
    channels: tuple[float, float, float, float]  # P(POS, ECOM, ATM, MOTO) of a merchant
    risk: int


CATEGORIES: tuple[Category, ...] = (
    Category(5411, "grocery", 35.0, 0.55, 0.20, (0.92, 0.08, 0.0, 0.0), RISK_LOW),
    Category(5812, "restaurants", 28.0, 0.50, 0.16, (0.95, 0.05, 0.0, 0.0), RISK_LOW),
    Category(5814, "fast food", 9.0, 0.45, 0.07, (0.90, 0.10, 0.0, 0.0), RISK_LOW),
    Category(5541, "fuel", 55.0, 0.35, 0.06, (1.0, 0.0, 0.0, 0.0), RISK_LOW),
    Category(5311, "department stores", 60.0, 0.70, 0.05, (0.70, 0.30, 0.0, 0.0), RISK_LOW),
    Category(5691, "clothing", 70.0, 0.60, 0.06, (0.60, 0.40, 0.0, 0.0), RISK_LOW),
    Category(5912, "pharmacies", 22.0, 0.50, 0.04, (0.90, 0.10, 0.0, 0.0), RISK_LOW),
    Category(4121, "taxis and rideshare", 18.0, 0.45, 0.04, (0.40, 0.60, 0.0, 0.0), RISK_LOW),
    Category(4814, "telecom", 45.0, 0.30, 0.02, (0.0, 1.0, 0.0, 0.0), RISK_LOW),
    Category(7011, "hotels", 160.0, 0.55, 0.03, (0.60, 0.30, 0.0, 0.10), RISK_LOW),
    Category(6011, "ATM cash", 120.0, 0.55, 0.04, (0.0, 0.0, 1.0, 0.0), RISK_LOW),
    Category(5999, "misc retail", 40.0, 0.80, 0.07, (0.50, 0.50, 0.0, 0.0), RISK_MEDIUM),
    Category(5732, "electronics", 180.0, 0.80, 0.04, (0.50, 0.50, 0.0, 0.0), RISK_MEDIUM),
    Category(4511, "airlines", 250.0, 0.60, 0.02, (0.0, 0.90, 0.0, 0.10), RISK_MEDIUM),
    Category(5967, "direct marketing", 30.0, 0.70, 0.02, (0.0, 0.80, 0.0, 0.20), RISK_HIGH),
    Category(4829, "money transfer", 150.0, 0.80, 0.02, (0.0, 1.0, 0.0, 0.0), RISK_HIGH),
    Category(7995, "gambling", 50.0, 0.90, 0.01, (0.10, 0.90, 0.0, 0.0), RISK_HIGH),
)

MCC_CODES = np.array([c.mcc for c in CATEGORIES], dtype=np.int32)
MCC_MEDIAN_EUR = np.array([c.median_eur for c in CATEGORIES])
MCC_SIGMA = np.array([c.sigma for c in CATEGORIES])
MCC_WEIGHT = np.array([c.weight for c in CATEGORIES])
MCC_CHANNELS = np.array([c.channels for c in CATEGORIES])
MCC_RISK = np.array([c.risk for c in CATEGORIES], dtype=np.int8)


def category_index(mcc: int) -> int:
    return [c.mcc for c in CATEGORIES].index(mcc)


def category_indices(mccs: tuple[int, ...]) -> np.ndarray:
    return np.array([category_index(m) for m in mccs], dtype=np.int32)


@dataclass(frozen=True)
class Country:
    code: str
    currency: str
    fx: float  # units of currency per EUR
    utc_offset_h: int  # standard time; good enough for daily seasonality
    residents: float  # share of cards issued to residents
    merchants: float  # share of card-present merchants located here
    ecom: float  # share of e-commerce merchants registered here


COUNTRIES: tuple[Country, ...] = (
    Country("DE", "EUR", 1.0, 1, 0.22, 0.19, 0.12),
    Country("FR", "EUR", 1.0, 1, 0.15, 0.14, 0.06),
    Country("GB", "GBP", 0.85, 0, 0.14, 0.13, 0.14),
    Country("ES", "EUR", 1.0, 1, 0.09, 0.10, 0.03),
    Country("IT", "EUR", 1.0, 1, 0.09, 0.09, 0.03),
    Country("NL", "EUR", 1.0, 1, 0.07, 0.06, 0.12),
    Country("US", "USD", 1.08, -5, 0.08, 0.08, 0.25),
    Country("BE", "EUR", 1.0, 1, 0.03, 0.03, 0.02),
    Country("IE", "EUR", 1.0, 0, 0.03, 0.03, 0.15),
    Country("CH", "CHF", 0.95, 1, 0.03, 0.03, 0.02),
    Country("PL", "PLN", 4.3, 1, 0.04, 0.04, 0.02),
    Country("SE", "SEK", 11.3, 1, 0.03, 0.03, 0.02),
    # holiday and fraud destinations: merchants but no resident cards
    Country("PT", "EUR", 1.0, 0, 0.0, 0.02, 0.0),
    Country("TH", "THB", 38.0, 7, 0.0, 0.01, 0.0),
    Country("BR", "BRL", 5.4, -3, 0.0, 0.01, 0.01),
    Country("RO", "RON", 4.97, 2, 0.0, 0.01, 0.01),
    Country("MX", "MXN", 18.5, -6, 0.0, 0.01, 0.0),
)

COUNTRY_CODES = tuple(c.code for c in COUNTRIES)
CURRENCIES = tuple(c.currency for c in COUNTRIES)
COUNTRY_FX = np.array([c.fx for c in COUNTRIES])
COUNTRY_OFFSET_MS = np.array([c.utc_offset_h * 3_600_000 for c in COUNTRIES], dtype=np.int64)
COUNTRY_RESIDENTS = np.array([c.residents for c in COUNTRIES])
COUNTRY_MERCHANTS = np.array([c.merchants for c in COUNTRIES])
COUNTRY_ECOM = np.array([c.ecom for c in COUNTRIES])
FRAUD_DESTINATIONS = np.array(
    [COUNTRY_CODES.index(c) for c in ("BR", "RO", "TH", "MX", "US", "GB")], dtype=np.int32
)

# Monday first; more card spend on Friday and Saturday, less on Sunday
WEEKDAY_FACTOR = np.array([0.95, 0.97, 1.0, 1.02, 1.15, 1.2, 0.72])

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def normalized(weights: np.ndarray) -> np.ndarray:
    total = float(weights.sum())
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    return np.asarray(weights / total, dtype=np.float64)
