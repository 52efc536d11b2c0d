"""The offline feature driver: history through :func:`compute` with state in memory.

This is the row-at-a-time reference: it must agree bit for bit with the online store
(``services.online.store``) fed the same stream in the same order. The trainer and the
backtest build through :mod:`services.featurebuild`, the same code in blocks on two
processes, tested equal to this driver. Transactions are
processed in the order given; sort history with :func:`sort_by_event_time` first.

Duplicates: a ``txn_id`` seen before returns the first vector and changes no state, as
online. Remembering every id costs memory per row (~300 bytes), so an id is forgotten
once the stream has moved ``dedupe_horizon_ms`` of event time past the point where it was
seen (default 8 days, like the online marker TTL); a copy arriving later than that (never
in practice: redeliveries are minutes apart) would be counted twice. ``None`` remembers
every id (exact for any stream, memory grows with it).
"""

from __future__ import annotations

import gc
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from services.core.features import (
    DAY_MS,
    FEATURE_NAMES,
    N_FEATURES,
    VECTOR_STRUCT,
    CardState,
    MerchantState,
    Vector,
    compute,
)

DEDUPE_HORIZON_MS = 8 * DAY_MS
V = TypeVar("V")


@dataclass(frozen=True)
class FeatureFrame:
    """Features of a stream, one row per input transaction (duplicates included: a
    duplicate's row repeats the first vector)."""

    txn_ids: list[str]
    event_time: npt.NDArray[np.int64]
    card_ids: list[str]
    X: npt.NDArray[np.float64]  # shape (n, len(FEATURE_NAMES)), NaN = missing
    feature_names: tuple[str, ...] = field(default=FEATURE_NAMES)

    def __len__(self) -> int:
        return len(self.txn_ids)


class SeenIds(Generic[V]):
    """The txn_ids a build has processed, each with a value (its vector, or its row),
    forgotten ``horizon_ms`` of stream progress after they were seen (``None``: never)."""

    def __init__(self, horizon_ms: int | None) -> None:
        self._horizon = horizon_ms
        self._first: dict[str, V] = {}
        self._order: deque[tuple[int, str]] = deque()  # (stamp, txn_id), stamps ascending
        self._newest = -(2**63)
        self.get = self._first.get

    def remember(self, txn_id: str, event_time: int, value: V) -> None:
        self._first[txn_id] = value
        horizon = self._horizon
        if horizon is None:
            return
        # Stamp an id with the stream's progress when it was seen (like the online marker's
        # TTL, which runs from when it was written): a late event is remembered as long as
        # an on-time one, and the queue stays sorted, so expiry is a pop from the left.
        stamp = self._newest
        if event_time > stamp:
            stamp = self._newest = event_time
        order = self._order
        order.append((stamp, txn_id))
        expired = stamp - horizon
        while order[0][0] < expired:
            del self._first[order.popleft()[1]]


class OfflineFeatureStore:
    """Card and merchant state in dicts; :meth:`process` is the online store's twin."""

    def __init__(self, dedupe_horizon_ms: int | None = DEDUPE_HORIZON_MS) -> None:
        self.cards: dict[str, CardState] = {}
        self.merchants: dict[str, MerchantState] = {}
        self._seen: SeenIds[bytes] = SeenIds(dedupe_horizon_ms)  # txn_id -> packed first vector

    def process(self, txn: Mapping[str, Any]) -> Vector:
        """The features of ``txn``; the state moves on unless it is a duplicate."""
        return VECTOR_STRUCT.unpack(self.process_packed(txn))

    def process_packed(self, txn: Mapping[str, Any]) -> bytes:
        """:meth:`process`, with the vector packed (``pack_vector``): the form it is
        remembered in for duplicates, and what :func:`build_features` collects."""
        txn_id: str = txn["txn_id"]
        first = self._seen.get(txn_id)
        if first is not None:
            return first
        merchant_id: str = txn["merchant_id"]
        merchant = self.merchants.get(merchant_id)
        if merchant is None:
            merchant = self.merchants[merchant_id] = MerchantState()
        card_id: str = txn["card_id"]
        vector, self.cards[card_id], delta = compute(self.cards.get(card_id), merchant, txn)
        merchant.add(delta)
        packed = VECTOR_STRUCT.pack(*vector)
        self._seen.remember(txn_id, txn["event_time"], packed)
        return packed

    def card_state(self, card_id: str) -> CardState | None:
        return self.cards.get(card_id)

    def merchant_state(self, merchant_id: str) -> MerchantState | None:
        return self.merchants.get(merchant_id)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off for a build loop: it allocates millions of short-lived tuples and
    no reference cycles, which the GC would only rescan (10-40% of the time, more the
    more live objects the caller holds). Restored after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def sort_by_event_time(txns: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The canonical processing order: by (event_time, txn_id)."""
    return sorted(txns, key=lambda txn: (txn["event_time"], txn["txn_id"]))


def build_features(
    txns: Iterable[Mapping[str, Any]],
    *,
    store: OfflineFeatureStore | None = None,
    dedupe_horizon_ms: int | None = DEDUPE_HORIZON_MS,
) -> FeatureFrame:
    """Features of ``txns`` in the order given, one row at a time (a fresh store unless
    one is passed): the reference that :mod:`services.featurebuild` is tested against."""
    if store is None:
        store = OfflineFeatureStore(dedupe_horizon_ms)
    process = store.process_packed
    values = bytearray()  # packed vectors back to back: no per-row NumPy or float parsing
    times = array("q")
    txn_ids: list[str] = []
    card_ids: list[str] = []
    with gc_paused():
        for txn in txns:
            values += process(txn)
            times.append(txn["event_time"])
            txn_ids.append(txn["txn_id"])
            card_ids.append(txn["card_id"])
    X = np.frombuffer(values, dtype="<f8").reshape(len(txn_ids), N_FEATURES)
    return FeatureFrame(
        txn_ids=txn_ids,
        event_time=np.frombuffer(times, dtype=np.int64),
        card_ids=card_ids,
        X=X,
    )
