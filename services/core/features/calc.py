"""``compute``: one transaction + the state before it -> its features + the state after.

This is the only place features are defined. The offline driver (training, backtest) and
the online store (scorer) both call it, in the same order, with state they keep in memory
or in Redis; the parity test demands bit-identical vectors from both.

Pure and driven by event time only: no clock, no randomness, no mutation of its inputs.
It runs once per transaction over millions of rows, so it works on plain floats, ints and
tuples (no per-row NumPy) and binds what it uses to locals.

Event-time rules (deterministic, so both paths agree):

* Card windows ``(t - W, t]`` count the card's kept events with time in that range plus
  this transaction; an out-of-order event (older than the card's newest) is inserted in
  time order (after events with an equal time) and sees only events not newer than itself.
* ``secs_since_last_txn``: gap to the latest earlier-or-equal event: the card's newest
  event for an in-order transaction, the predecessor among kept events for a late one
  (NaN if none is kept, and NaN for the card's first transaction).
* The kept events are those newer than ``newest - 7 d``; an event older than that is not
  kept at all. Running mean/variance (Welford) follow processing order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from functools import partial
from math import log1p, sqrt
from sys import intern
from typing import Any

from services.core.features.card import CardState
from services.core.features.merchant import MerchantDelta, MerchantView, MerchantWindow
from services.core.features.schema import (
    CARD_WINDOW_CAP,
    DAY_MS,
    HOUR_MS,
    MCC_RISK_GROUP,
    SEEN_CAP,
    WINDOW_1H_MS,
    WINDOW_7D_MS,
    WINDOW_24H_MS,
    ZSCORE_STD_FLOOR,
)

Vector = tuple[float, ...]
NAN = float("nan")

# channel -> (is_ecom, is_atm, is_card_not_present)
_CHANNEL_FLAGS: dict[str, tuple[float, float, float]] = {
    "POS": (0.0, 0.0, 0.0),
    "ECOM": (1.0, 0.0, 1.0),
    "ATM": (0.0, 1.0, 0.0),
    "MOTO": (0.0, 0.0, 1.0),
    "UNKNOWN": (0.0, 0.0, 0.0),
}
_UNKNOWN_CHANNEL = _CHANNEL_FLAGS["UNKNOWN"]
_MCC_GROUP = {mcc: float(group) for mcc, group in MCC_RISK_GROUP.items()}
# tuple.__new__ skips the generated NamedTuple.__new__ (a Python-level call): hot path.
_new_card_state = partial(tuple.__new__, CardState)
_new_delta = partial(tuple.__new__, MerchantDelta)


def compute(
    card: CardState | None, merchant: MerchantView, txn: Mapping[str, Any]
) -> tuple[Vector, CardState, MerchantDelta]:
    """Features of ``txn`` (ordered as ``FEATURE_NAMES``; NaN = missing), the card's new
    state, and the increments ``txn`` adds to its merchant (apply them after this call).

    The composition of :func:`card_features` and :func:`merchant_features`, which the
    split offline build (``services.featurebuild``) runs in two processes."""
    head, new_card, delta = card_features(card, txn)
    return head + merchant_features(merchant.window(delta[0]), head[0]), new_card, delta


def card_features(card: CardState | None, txn: Mapping[str, Any]) -> tuple[Vector, CardState, MerchantDelta]:
    """The features of ``txn`` that need no merchant state (the first ``N_CARD_FEATURES``
    of the vector: the transaction's own, then the card's), the card's new state, and
    the merchant delta. The vector's first value is the amount."""
    t: int = txn["event_time"]
    amount = float(txn["amount"])
    # Interned: a card's kept events then share one string per merchant/country instead
    # of pinning each decoded record's copy (memory, and cache-friendlier comparisons).
    merchant_id: str = intern(txn["merchant_id"])
    country: str = intern(txn["country"])
    device: str | None = txn.get("device_id")
    hour = t // HOUR_MS

    is_ecom, is_atm, is_card_not_present = _CHANNEL_FLAGS.get(txn["channel"], _UNKNOWN_CHANNEL)
    # Small ints become floats as ``i + 0.0`` (or ``+ 1.0``), which equals ``float(i)``
    # exactly and skips a builtin call: this runs once per transaction.
    own: Vector = (
        amount,
        log1p(amount),
        hour % 24 + 0.0,
        (t // DAY_MS + 3) % 7 + 0.0,  # 1970-01-01 was a Thursday; Monday = 0
        is_ecom,
        is_atm,
        is_card_not_present,
        0.0 if device is None else 1.0,
        _MCC_GROUP.get(txn["mcc"], 0.0),
    )
    if card is None:
        card_part, new_card, new_merchant = _first_card_event(t, amount, merchant_id, country, device)
    else:
        card_part, new_card, new_merchant = _next_card_event(card, t, amount, merchant_id, country, device)
    delta = _new_delta((hour, round(amount * 100), new_merchant))
    return own + card_part, new_card, delta


def merchant_features(window: MerchantWindow, amount: float) -> Vector:
    """The last ``N_MERCHANT_FEATURES`` of the vector: the merchant's traffic before the
    transaction (``window`` at its hour) and its amount against the merchant's mean."""
    count_1h, count_24h, new_cards_24h, count_7d, cents_7d = window
    if count_7d:
        merchant_mean = cents_7d / (100 * count_7d)
        to_merchant_mean = amount / merchant_mean if merchant_mean > 0.0 else NAN
    else:
        merchant_mean = to_merchant_mean = NAN
    return (
        count_1h + 0.0,
        count_24h + 0.0,
        new_cards_24h + 0.0,
        merchant_mean,
        to_merchant_mean,
    )


def _first_card_event(
    t: int, amount: float, merchant_id: str, country: str, device: str | None
) -> tuple[Vector, CardState, bool]:
    state = CardState(
        (t,),
        (amount,),
        (merchant_id,),
        (country,),
        t,
        t,
        1,
        amount,
        0.0,
        (merchant_id,),
        (country,),
        () if device is None else (device,),
    )
    features = (
        1.0, 1.0, 1.0,  # counts 1h/24h/7d
        amount, amount, amount,  # sums
        0.0,  # prior count
        NAN, NAN, NAN,  # to mean, z-score, secs since last
        0.0,  # card age
        1.0, 1.0, NAN if device is None else 1.0,  # new merchant/country/device
        1.0, 1.0,  # distinct merchants/countries 24h
    )  # fmt: skip
    return features, state, True


def _next_card_event(
    card: CardState, t: int, amount: float, merchant_id: str, country: str, device: str | None
) -> tuple[Vector, CardState, bool]:
    (times, amounts, merchants, countries, last, first, n, mean, m2, seen_m, seen_c, seen_d) = card
    in_order = t >= last
    if in_order:  # every kept event is <= t, and the 7 d window start is also the expiry
        hi = len(times)
        # Mostly nothing expires: one comparison instead of a bisect call.
        lo7 = 0 if times[0] > t - WINDOW_7D_MS else bisect_right(times, t - WINDOW_7D_MS)
    else:
        hi = bisect_right(times, t)  # kept events not newer than t: [.., hi)
        lo7 = bisect_right(times, t - WINDOW_7D_MS, 0, hi)
    lo24 = bisect_right(times, t - WINDOW_24H_MS, lo7, hi)
    lo1 = bisect_right(times, t - WINDOW_1H_MS, lo24, hi)
    if lo24 == hi:  # fast paths: most cards have 0 or 1 other event in a day
        distinct_merchants = distinct_countries = 1.0
    elif hi - lo24 == 1:
        distinct_merchants = 1.0 if merchants[lo24] == merchant_id else 2.0
        distinct_countries = 1.0 if countries[lo24] == country else 2.0
    else:
        merchants_24h = set(merchants[lo24:hi])
        merchants_24h.add(merchant_id)
        countries_24h = set(countries[lo24:hi])
        countries_24h.add(country)
        distinct_merchants, distinct_countries = float(len(merchants_24h)), float(len(countries_24h))

    if in_order:
        since = (t - last) / 1000.0
    elif hi:
        since = (t - times[hi - 1]) / 1000.0
    else:
        since = NAN

    to_mean = amount / mean if mean > 0.0 else NAN
    if n >= 2:
        std = sqrt(m2 / (n - 1))
        floor = ZSCORE_STD_FLOOR * mean
        scale = std if std > floor else floor
        zscore = (amount - mean) / scale if scale > 0.0 else NAN
    else:
        zscore = NAN

    # Seen-sets are never empty for merchants and countries (the first event fills them).
    new_merchant = seen_m[-1] != merchant_id
    if new_merchant:
        seen_m, new_merchant = _touch(seen_m, merchant_id)
    new_country = seen_c[-1] != country
    if new_country:
        seen_c, new_country = _touch(seen_c, country)
    if device is None:
        new_device = NAN
    elif seen_d and seen_d[-1] == device:
        new_device = 0.0
    else:
        seen_d, is_new = _touch(seen_d, device)
        new_device = 1.0 if is_new else 0.0

    if lo7 == hi:
        sum_1h = sum_24h = sum_7d = amount
    else:  # each sum in time order, then this amount: the same order on every path
        sum_1h = sum(amounts[lo1:hi]) + amount if lo1 < hi else amount
        sum_24h = sum(amounts[lo24:hi]) + amount if lo24 < hi else amount
        # The whole tuple when it is the window (the common case): no slice to copy.
        sum_7d = (sum(amounts) if lo7 == 0 and hi == len(amounts) else sum(amounts[lo7:hi])) + amount
    features = (
        hi - lo1 + 1.0,
        hi - lo24 + 1.0,
        hi - lo7 + 1.0,
        sum_1h,
        sum_24h,
        sum_7d,
        n + 0.0,
        to_mean,
        zscore,
        since,
        (t - first) / DAY_MS if t > first else 0.0,
        1.0 if new_merchant else 0.0,
        1.0 if new_country else 0.0,
        new_device,
        distinct_merchants,
        distinct_countries,
    )

    # Welford's update, in processing order.
    n1 = n + 1
    diff = amount - mean
    mean1 = mean + diff / n1
    m2_1 = m2 + diff * (amount - mean1)

    # Kept events are always newer than last_time - 7 d (invariant). In order: the newest
    # moves to t, so the events outside t's 7 d window ([:lo7]) expire, t is appended.
    # Late: nothing expires; t is inserted after the events not newer than it, unless it
    # is too old to be kept (then it shapes no later window).
    newest = t if in_order else last
    if in_order:
        if lo7:
            times, amounts = times[lo7:], amounts[lo7:]
            merchants, countries = merchants[lo7:], countries[lo7:]
        times, amounts = times + (t,), amounts + (amount,)
        merchants, countries = merchants + (merchant_id,), countries + (country,)
    elif t > last - WINDOW_7D_MS:
        times = times[:hi] + (t,) + times[hi:]
        amounts = amounts[:hi] + (amount,) + amounts[hi:]
        merchants = merchants[:hi] + (merchant_id,) + merchants[hi:]
        countries = countries[:hi] + (country,) + countries[hi:]
    excess = len(times) - CARD_WINDOW_CAP
    if excess > 0:  # drop the oldest
        times, amounts = times[excess:], amounts[excess:]
        merchants, countries = merchants[excess:], countries[excess:]

    state = _new_card_state(
        (
            times,
            amounts,
            merchants,
            countries,
            newest,
            t if t < first else first,
            n1,
            mean1,
            m2_1,
            seen_m,
            seen_c,
            seen_d,
        )
    )
    return features, state, new_merchant


def _touch(seen: tuple[str, ...], item: str) -> tuple[tuple[str, ...], bool]:
    """Move ``item`` to the most-recent end of a bounded seen-set; say if it was new."""
    if seen and seen[-1] == item:
        return seen, False
    if item in seen:
        i = seen.index(item)
        return seen[:i] + seen[i + 1 :] + (item,), False
    grown = seen + (item,)
    return (grown[1:] if len(grown) > SEEN_CAP else grown), True
