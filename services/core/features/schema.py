"""What the feature vector is: ordered names, parameters, fingerprint and readable names.

Everything that changes the meaning of a vector lives here. Changing any of it changes
:data:`FEATURE_SET_FINGERPRINT`, which the model manifest records and the scorer checks,
so a model can never be served features it was not trained on. Bump
:data:`FEATURE_LOGIC_VERSION` whenever ``compute`` changes behaviour without a name or
parameter changing (the fingerprint covers the version too; a golden test of the vectors
of a seeded stream says when). Stored state is tagged with the fingerprint and refused by
another feature set: a new one needs a fresh Redis namespace (rebuilt by replay), never an
in-place mix of old and new state.
"""

from __future__ import annotations

import hashlib
import json

FEATURE_LOGIC_VERSION = 1

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WINDOW_1H_MS = HOUR_MS
WINDOW_24H_MS = DAY_MS
WINDOW_7D_MS = 7 * DAY_MS

# A card keeps at most this many recent events (all within 7 days of its newest one) for
# the exact sliding windows. A card busier than that in 7 days (256 txns, far past any
# legitimate pattern) sees its 7-day counts and sums saturate; 1h/24h windows stay exact
# unless it has 256 events within 24 hours.
CARD_WINDOW_CAP = 256
# Seen-sets of merchants, countries and devices per card keep the most recently used
# entries (processing order); an entry evicted from a full set counts as new again.
SEEN_CAP = 64
# A z-score's standard deviation is floored at this share of the card's mean amount, so a
# card whose amounts never varied does not produce infinite scores.
ZSCORE_STD_FLOOR = 0.1
# Merchant buckets: hourly (count, new-card count) and daily (count, cents). Reads never
# look below the merchant's watermark (newest hour applied) minus these horizons, so a
# bucket older than that is dead and can be trimmed at any time without changing a single
# feature: events up to 48 h late still see full 24 h and 7 d windows.
MERCHANT_HOURLY_KEEP_H = 72
MERCHANT_DAILY_KEEP_D = 10

CHANNELS = ("POS", "ECOM", "ATM", "MOTO", "UNKNOWN")

# Static MCC risk groups (ISO 18245): 2 = high (cash-like, gambling, money transfer,
# crypto, stored value, adult/teleservices), 1 = elevated (electronics, jewellery,
# travel, digital goods, direct marketing), 0 = everything else.
_HIGH_RISK_MCC = (4829, 5967, 6051, 6211, 6540, 7273, 7800, 7801, 7802, 7995)
_ELEVATED_RISK_MCC = (
    4511, 4722, 4814, 4816, 5094, 5310, 5311, 5732, 5734, 5815, 5816, 5818,
    5944, 5962, 5966, 5969, 5999, 6010, 6011, 6012, 7011,
)  # fmt: skip
_AIRLINE_MCC = range(3000, 3300)  # per-airline codes, like 4511
MCC_RISK_GROUP: dict[int, int] = {
    **{mcc: 1 for mcc in _AIRLINE_MCC},
    **{mcc: 1 for mcc in _ELEVATED_RISK_MCC},
    **{mcc: 2 for mcc in _HIGH_RISK_MCC},
}

FEATURE_NAMES: tuple[str, ...] = (
    # the transaction itself
    "amount",
    "log_amount",
    "hour_of_day",
    "day_of_week",
    "is_ecom",
    "is_atm",
    "is_card_not_present",
    "has_device_id",
    "mcc_risk_group",
    # the card's recent history (windows include this transaction)
    "txn_count_1h",
    "txn_count_24h",
    "txn_count_7d",
    "amount_sum_1h",
    "amount_sum_24h",
    "amount_sum_7d",
    "card_prior_txn_count",
    "amount_to_card_mean",
    "amount_zscore",
    "secs_since_last_txn",
    "card_age_days",
    "is_new_merchant",
    "is_new_country",
    "is_new_device",
    "distinct_merchants_24h",
    "distinct_countries_24h",
    # the merchant's recent traffic (before this transaction)
    "merchant_txn_count_1h",
    "merchant_txn_count_24h",
    "merchant_new_card_count_24h",
    "merchant_mean_amount_7d",
    "amount_to_merchant_mean",
)
N_FEATURES = len(FEATURE_NAMES)
# The vector is the card part (``card_features``: the transaction's own, then the card's)
# followed by the merchant part (``merchant_features``), in that order.
N_CARD_FEATURES = FEATURE_NAMES.index("merchant_txn_count_1h")
N_MERCHANT_FEATURES = N_FEATURES - N_CARD_FEATURES
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Features whose distribution moves with the calendar or the system's age by construction:
# a window of event time sees one hour of the day, a few days of the week, and cards only
# ever get older. Their PSI is exported, but never counted as drift (the monitor and the
# backtest read this list from the model manifest's ``psi_reference``).
DRIFT_EXEMPT: tuple[str, ...] = ("hour_of_day", "day_of_week", "card_age_days", "card_prior_txn_count")

# Reason-code phrases: what a high value of the feature says about the transaction.
READABLE: dict[str, str] = {
    "amount": "large amount",
    "log_amount": "large amount",
    "hour_of_day": "unusual time of day (UTC)",
    "day_of_week": "unusual day of the week (UTC)",
    "is_ecom": "online (e-commerce) payment",
    "is_atm": "ATM withdrawal",
    "is_card_not_present": "card not present (online or mail/phone order)",
    "has_device_id": "device fingerprint present",
    "mcc_risk_group": "high-risk merchant category",
    "txn_count_1h": "many transactions on this card in the last hour",
    "txn_count_24h": "many transactions on this card in the last 24 hours",
    "txn_count_7d": "many transactions on this card in the last 7 days",
    "amount_sum_1h": "high spend on this card in the last hour",
    "amount_sum_24h": "high spend on this card in the last 24 hours",
    "amount_sum_7d": "high spend on this card in the last 7 days",
    "card_prior_txn_count": "card has a long history",
    "amount_to_card_mean": "amount far above this card's usual amount",
    "amount_zscore": "amount unusual for this card",
    "secs_since_last_txn": "long gap since this card's previous transaction",
    "card_age_days": "card known for a long time",
    "is_new_merchant": "first transaction of this card at this merchant",
    "is_new_country": "first transaction of this card in this country",
    "is_new_device": "new device for this card",
    "distinct_merchants_24h": "card used at many merchants in the last 24 hours",
    "distinct_countries_24h": "card used in many countries in the last 24 hours",
    "merchant_txn_count_1h": "busy merchant in the last hour",
    "merchant_txn_count_24h": "busy merchant in the last 24 hours",
    "merchant_new_card_count_24h": "merchant seeing many first-time cards (card testing?)",
    "merchant_mean_amount_7d": "merchant with high average amounts",
    "amount_to_merchant_mean": "amount far above this merchant's average",
}

PARAMETERS: dict[str, int | float] = {
    "card_window_cap": CARD_WINDOW_CAP,
    "seen_cap": SEEN_CAP,
    "zscore_std_floor": ZSCORE_STD_FLOOR,
    "merchant_hourly_keep_h": MERCHANT_HOURLY_KEEP_H,
    "merchant_daily_keep_d": MERCHANT_DAILY_KEEP_D,
}


def _fingerprint() -> str:
    # Canonical JSON (sorted keys, no spaces): the same bytes in every process and version
    # of Python, unlike hash() or repr of a dict.
    payload = {
        "names": list(FEATURE_NAMES),
        "logic_version": FEATURE_LOGIC_VERSION,
        "parameters": PARAMETERS,
        "mcc_risk_group": sorted(MCC_RISK_GROUP.items()),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


FEATURE_SET_FINGERPRINT: str = _fingerprint()
