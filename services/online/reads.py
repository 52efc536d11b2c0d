"""Step 1 of the store's batch protocol: the read commands and the snapshot they give.

No I/O: it packs the commands and parses their replies. Per card, ``HMGET`` of its state
and version and, per event day, ``HMGET`` of the batch's transaction ids in that day's
marker hash; per merchant, ``HMGET`` of the buckets the batch's windows read and, per
event day, ``SMISMEMBER`` of the batch's ids in its applied set. Plain commands, not
scripts: a Lua script costs Redis several times the CPU of the commands it wraps (a
read script per card and merchant measured ~+60% Redis CPU for the whole batch).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from services.core.features import DAY_MS, HOUR_MS, CardState, MerchantState
from services.online import keys, wire
from services.online.keys import Marker

Txn = Mapping[str, Any]
_HMGET = wire.bulk("HMGET")


@dataclass
class Snapshot:
    """What step 1 read."""

    states: dict[str, CardState | None]
    versions: dict[str, bytes]
    markers: dict[str, Marker]  # txn_id -> marker, only for applied transactions
    applied: set[str]  # txn_ids their merchant has applied
    merchants: dict[str, MerchantState]  # buckets the batch's windows read


class _Window(NamedTuple):
    """The merchant buckets that transactions in some hours read, and their fields."""

    hours: tuple[int, ...]
    days: tuple[int, ...]
    n_fields: int
    packed_fields: bytes  # keys.window_fields' names as RESP bulk strings, in order


@lru_cache(maxsize=2048)
def _window(hours: tuple[int, ...]) -> _Window:
    """The ``HMGET`` fields of ``keys.window_fields(hours)``, packed from cached pieces.
    Cached: a batch's merchants mostly share the same one or two hours."""
    bucket_hours, bucket_days = keys.window_buckets(hours)
    packed = b"".join([_WATERMARK, *map(_packed_hour, bucket_hours), *map(_packed_day, bucket_days)])
    return _Window(bucket_hours, bucket_days, 1 + len(bucket_hours) + 2 * len(bucket_days), packed)


_WATERMARK = wire.bulk(keys.WATERMARK_FIELD)


@lru_cache(maxsize=4096)
def _packed_hour(hour: int) -> bytes:
    return wire.bulk(keys.hour_field(hour))


@lru_cache(maxsize=512)
def _packed_day(day: int) -> bytes:
    return b"".join(map(wire.bulk, keys.day_fields(day)))


class BatchRead:
    """The read commands of a batch (:meth:`commands`, packed) and how to parse their
    replies (:meth:`parse`)."""

    def __init__(self, namespace: str, txns: Sequence[Txn]) -> None:
        hour_of: dict[str, int] = {}
        card_days: dict[str, dict[int, list[str]]] = {}
        merchant_hours: dict[str, set[int]] = {}
        merchant_days: dict[str, dict[int, list[str]]] = {}
        for txn in txns:
            txn_id = txn["txn_id"]
            if txn_id in hour_of:
                continue
            t = txn["event_time"]
            day = t // DAY_MS
            hour_of[txn_id] = hour = t // HOUR_MS
            card_days.setdefault(txn["card_id"], {}).setdefault(day, []).append(txn_id)
            merchant_id = txn["merchant_id"]
            merchant_hours.setdefault(merchant_id, set()).add(hour)
            merchant_days.setdefault(merchant_id, {}).setdefault(day, []).append(txn_id)
        self._hour_of = hour_of
        self._namespace = namespace
        self._card_days = card_days
        self._merchant_hours = merchant_hours
        self._merchant_days = merchant_days
        self._cards: list[tuple[str, list[list[str]]]] = []
        self._merchants: list[tuple[str, _Window, list[list[str]]]] = []

    def commands(self) -> Iterator[bytes]:
        """The packed read commands, cards first; consume them all before :meth:`parse`."""
        self._cards.clear()
        self._merchants.clear()
        for card_id, days in self._card_days.items():
            yield from self._card_reads(card_id, days)
        for merchant_id, days in self._merchant_days.items():
            yield from self._merchant_reads(merchant_id, days)

    def _card_reads(self, card_id: str, days: dict[int, list[str]]) -> Iterator[bytes]:
        namespace = self._namespace
        yield wire.pack(("HMGET", keys.card_key(namespace, card_id), "s", "v"))
        for day, ids in days.items():
            yield wire.pack(("HMGET", keys.card_marker_key(namespace, card_id, day), *ids))
        self._cards.append((card_id, list(days.values())))  # its txn ids per marker hash

    def _merchant_reads(self, merchant_id: str, days: dict[int, list[str]]) -> Iterator[bytes]:
        namespace = self._namespace
        hours = self._merchant_hours[merchant_id]
        window = _window(tuple(sorted(hours)) if len(hours) > 1 else (*hours,))
        key = wire.bulk(keys.merchant_key(namespace, merchant_id))
        yield wire.head(2 + window.n_fields) + _HMGET + key + window.packed_fields
        for day, ids in days.items():
            yield wire.pack(("SMISMEMBER", keys.merchant_applied_key(namespace, merchant_id, day), *ids))
        self._merchants.append((merchant_id, window, list(days.values())))  # ids per applied set

    def parse(self, replies: Sequence[Any]) -> Snapshot:
        """The snapshot from the replies to :meth:`commands` (same order, no errors)."""
        it = iter(replies)
        states: dict[str, CardState | None] = {}
        versions: dict[str, bytes] = {}
        markers: dict[str, Marker] = {}
        from_bytes = CardState.from_bytes
        for card_id, id_groups in self._cards:
            blob, version = next(it)
            states[card_id] = None if blob is None else from_bytes(blob)
            versions[card_id] = version or b"0"
            for ids in id_groups:
                found = next(it)
                if found.count(None) < len(found):  # rare: a redelivered transaction
                    self._add_markers(markers, ids, found)
        merchants: dict[str, MerchantState] = {}
        applied: set[str] = set()
        view = keys.merchant_view
        for merchant_id, window, id_groups in self._merchants:
            merchants[merchant_id] = view(window.hours, window.days, next(it))
            for ids in id_groups:
                flags = next(it)
                if any(flags):
                    applied.update(i for i, hit in zip(ids, flags, strict=True) if hit)
        return Snapshot(states, versions, markers, applied, merchants)

    def _add_markers(self, markers: dict[str, Marker], ids: list[str], found: list[Any]) -> None:
        for txn_id, blob in zip(ids, found, strict=True):
            if blob is not None:
                markers[txn_id] = keys.decode_marker(blob, self._hour_of[txn_id])
