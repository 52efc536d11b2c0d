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
    ``w``: watermark, the newest ``<hour>`` applied; ``h<hour>``: transactions + 2**32 x
    first-time cards in that hour (both counts in one integer: one field to read and one
    ``HINCRBY`` to write; :func:`split_hour_bucket`); ``d<day>n`` / ``d<day>c``:
    transactions / amount in integer cents that day. Integers changed by ``HINCRBY`` only.
    Buckets below the read horizon are deleted when the watermark enters a new day.
``<ns>:m:{<merchant_id>}:a:<date>`` (set, EXPIRE ``txn_ttl_s`` after each write)
    ids of the transactions whose increments the merchant hash holds.

Every key of a card shares the hash tag ``{<card_id>}`` and every key of a merchant
``{<merchant_id>}``; each command and each Lua script touches one card's or one
merchant's keys, so one cluster slot. Ids are used verbatim (they are tokens, 1-64
chars); an id containing ``}`` still keeps all its keys in one slot, because they all
start with the same ``{...}`` prefix.
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


# An hour bucket counts transactions in its low 32 bits and first-time cards above them:
# exact while a merchant has fewer than 2**32 transactions in one hour.
NEW_CARD_UNIT = 1 << 32
_COUNT_MASK = NEW_CARD_UNIT - 1


def hour_field(hour: int) -> str:
    return f"h{hour}"


def split_hour_bucket(value: int) -> tuple[int, int]:
    """``(transactions, first-time cards)`` of an ``h<hour>`` value."""
    return value & _COUNT_MASK, value >> 32


def day_count_field(day: int) -> str:
    return f"d{day}n"


def day_cents_field(day: int) -> str:
    return f"d{day}c"


def window_buckets(hours: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The bucket hours and days (sorted) that the features of transactions in ``hours``
    (epoch hours) can read: the 24 hours and 7 days that end at each of them."""
    if len(hours) == 1:
        hour = hours[0]
        return tuple(range(hour - 23, hour + 1)), tuple(range(hour // 24 - 6, hour // 24 + 1))
    bucket_hours = sorted({b for h in hours for b in range(h - 23, h + 1)})
    bucket_days = sorted({b for h in hours for b in range(h // 24 - 6, h // 24 + 1)})
    return tuple(bucket_hours), tuple(bucket_days)


def day_fields(day: int) -> tuple[str, str]:
    return day_count_field(day), day_cents_field(day)


@lru_cache(maxsize=512)
def window_fields(
    hours: tuple[int, ...],
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
    """The buckets the features of transactions in ``hours`` (epoch hours) can read.

    Returns ``(bucket hours, bucket days, field names)``; the names are ``w``, then
    ``h<hour>`` per bucket hour, then ``d<day>n, d<day>c`` per bucket day (the order of
    the ``HMGET`` that :func:`merchant_view` parses).
    """
    bucket_hours, bucket_days = window_buckets(hours)
    names = [WATERMARK_FIELD]
    names += map(hour_field, bucket_hours)
    for d in bucket_days:
        names += day_fields(d)
    return bucket_hours, bucket_days, tuple(names)


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
    n_hours = len(bucket_hours)
    hours = [(h, int(v)) for h, v in zip(bucket_hours, values[1 : n_hours + 1], strict=True) if v is not None]
    counts = values[n_hours + 1 :: 2]
    cents = values[n_hours + 2 :: 2]
    watermark = values[0]
    return MerchantState(
        None if watermark is None else int(watermark),
        {h: v & _COUNT_MASK for h, v in hours},
        {h: v >> 32 for h, v in hours if v >= NEW_CARD_UNIT},
        {d: int(v) for d, v in zip(bucket_days, counts, strict=True) if v is not None},
        {d: int(v) for d, v in zip(bucket_days, cents, strict=True) if v is not None},
    )


def parse_merchant_hash(fields: Mapping[bytes, bytes]) -> MerchantState:
    """A merchant's whole bucket hash (``HGETALL``) as a :class:`MerchantState`."""
    state = MerchantState()
    for name, raw in fields.items():
        value = int(raw)
        if name == WATERMARK_FIELD.encode():
            state.watermark = value
        elif name[:1] == b"h":
            count, new_cards = split_hour_bucket(value)
            state.hour_counts[int(name[1:])] = count
            if new_cards:
                state.hour_new_cards[int(name[1:])] = new_cards
        elif name[-1:] == b"n":
            state.day_counts[int(name[1:-1])] = value
        else:
            state.day_cents[int(name[1:-1])] = value
    return state
