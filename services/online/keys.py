"""The Redis layout of the online feature store: key and field builders and value codecs.

Pure (no Redis import): this module *is* the storage contract, and tests pin it down.
``<ns>`` is the ``redis_namespace`` setting. ``<date>`` is the UTC date ``YYYYMMDD`` of a
transaction's *event time*, never of the wall clock, so a redelivered transaction always
looks in the hash that holds its marker. ``<hour>``/``<day>`` are epoch hour/day indexes
(``event_time // 3_600_000`` / ``// 86_400_000``).

``<ns>:c:{<card_id>}`` (hash, no TTL)
    ``s``: the card state (``CardState.to_bytes``, versioned JSON); ``v``: an integer
    version, +1 on every write (the compare-and-set token).
``<ns>:c:{<card_id>}:t:<date>`` (hash, EXPIRE ``txn_ttl_s`` = 8 d after each write)
    ``<txn_id>`` -> marker: the transaction's vector and merchant increments
    (:func:`encode_marker`). Present = the card part of the transaction is applied.
``<ns>:m:{<merchant_id>}`` (hash, no TTL; bounded by trimming)
    ``w``: watermark, the newest ``<hour>`` applied; ``h<hour>n`` / ``h<hour>k``:
    transactions / first-time cards in that hour; ``d<day>n`` / ``d<day>c``: transactions /
    amount in integer cents that day. Integers changed by ``HINCRBY`` only. Buckets below
    the read horizon are deleted when the watermark enters a new day.
``<ns>:m:{<merchant_id>}:a:<date>`` (set, EXPIRE ``txn_ttl_s`` after each write)
    ids of the transactions whose increments the merchant hash holds.

Every key of a card shares the hash tag ``{<card_id>}`` and every key of a merchant
``{<merchant_id>}``, so each Lua script touches one cluster slot. Ids are used verbatim
(they are tokens, 1-64 chars); an id containing ``}`` still keeps all its keys in one
slot, because they all start with the same ``{...}`` prefix.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from datetime import date
from functools import lru_cache
from typing import NamedTuple

from services.core.features import N_FEATURES, MerchantDelta, MerchantState, StateFormatError, Vector

CARD_STATE_FIELD = "s"
CARD_VERSION_FIELD = "v"
WATERMARK_FIELD = "w"

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MARKER = struct.Struct(f"<{N_FEATURES}dqB")


@lru_cache(maxsize=1024)
def day_stamp(epoch_day: int) -> str:
    """``20240501`` for the epoch day of 2024-05-01 (``event_time // 86_400_000``)."""
    return date.fromordinal(_EPOCH_ORDINAL + epoch_day).strftime("%Y%m%d")


def card_key(namespace: str, card_id: str) -> str:
    return f"{namespace}:c:{{{card_id}}}"


def card_marker_key(namespace: str, card_id: str, epoch_day: int) -> str:
    return f"{namespace}:c:{{{card_id}}}:t:{day_stamp(epoch_day)}"


def merchant_key(namespace: str, merchant_id: str) -> str:
    return f"{namespace}:m:{{{merchant_id}}}"


def merchant_applied_key(namespace: str, merchant_id: str, epoch_day: int) -> str:
    return f"{namespace}:m:{{{merchant_id}}}:a:{day_stamp(epoch_day)}"


def namespace_pattern(namespace: str) -> str:
    """SCAN pattern of every key of a namespace (namespaces are ``[A-Za-z0-9_-]+``)."""
    return f"{namespace}:*"


def hour_count_field(hour: int) -> str:
    return f"h{hour}n"


def hour_new_card_field(hour: int) -> str:
    return f"h{hour}k"


def day_count_field(day: int) -> str:
    return f"d{day}n"


def day_cents_field(day: int) -> str:
    return f"d{day}c"


@lru_cache(maxsize=512)
def window_fields(
    hours: tuple[int, ...],
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
    """The buckets the features of transactions in ``hours`` (epoch hours) can read.

    Returns ``(bucket hours, bucket days, field names)``; the names are ``w``, then
    ``h<hour>n, h<hour>k`` per bucket hour, then ``d<day>n, d<day>c`` per bucket day.
    Cached: a batch's merchants mostly share the same one or two hours.
    """
    bucket_hours = sorted({b for h in hours for b in range(h - 23, h + 1)})
    bucket_days = sorted({b for h in hours for b in range(h // 24 - 6, h // 24 + 1)})
    names = [WATERMARK_FIELD]
    for h in bucket_hours:
        names += (hour_count_field(h), hour_new_card_field(h))
    for d in bucket_days:
        names += (day_count_field(d), day_cents_field(d))
    return tuple(bucket_hours), tuple(bucket_days), tuple(names)


class Marker(NamedTuple):
    vector: Vector
    delta: MerchantDelta


def encode_marker(vector: Vector, delta: MerchantDelta) -> bytes:
    """Vector as IEEE doubles (exact, NaN included) + the cents and new-card flag.

    The delta's hour is not stored: it is the transaction's own event hour.
    """
    return _MARKER.pack(*vector, delta.cents, 1 if delta.new_card else 0)


def decode_marker(blob: bytes, hour: int) -> Marker:
    if len(blob) != _MARKER.size:  # written for another feature set
        raise StateFormatError(f"a marker of {len(blob)} bytes, expected {_MARKER.size}")
    *vector, cents, new_card = _MARKER.unpack(blob)
    return Marker(tuple(vector), MerchantDelta(hour, cents, bool(new_card)))


def merchant_view(
    bucket_hours: tuple[int, ...], bucket_days: tuple[int, ...], values: Sequence[bytes | None]
) -> MerchantState:
    """A merchant's buckets from ``HMGET`` of :func:`window_fields` names (same order)."""
    hour_counts: dict[int, int] = {}
    hour_new_cards: dict[int, int] = {}
    day_counts: dict[int, int] = {}
    day_cents: dict[int, int] = {}
    i = 1
    for hour in bucket_hours:
        count, new_cards = values[i], values[i + 1]
        if count is not None:
            hour_counts[hour] = int(count)
        if new_cards is not None:
            hour_new_cards[hour] = int(new_cards)
        i += 2
    for day in bucket_days:
        count, cents = values[i], values[i + 1]
        if count is not None:
            day_counts[day] = int(count)
        if cents is not None:
            day_cents[day] = int(cents)
        i += 2
    watermark = values[0]
    return MerchantState(
        None if watermark is None else int(watermark),
        hour_counts,
        hour_new_cards,
        day_counts,
        day_cents,
    )


def parse_merchant_hash(fields: Mapping[bytes, bytes]) -> MerchantState:
    """A merchant's whole bucket hash (``HGETALL``) as a :class:`MerchantState`."""
    state = MerchantState()
    maps = {
        (b"h", b"n"): state.hour_counts,
        (b"h", b"k"): state.hour_new_cards,
        (b"d", b"n"): state.day_counts,
        (b"d", b"c"): state.day_cents,
    }
    for name, value in fields.items():
        if name == WATERMARK_FIELD.encode():
            state.watermark = int(value)
        else:
            maps[name[:1], name[-1:]][int(name[1:-1])] = int(value)
    return state
