"""The online feature store: :func:`compute` with card and merchant state in Redis.

The scorer calls :meth:`OnlineFeatureStore.process_batch` once per consumed batch. It is
the offline driver's twin: the same transactions in the same order give bit-identical
vectors and states (``tests/integration/test_feature_parity.py``). Key layout: see
:mod:`services.online.keys`.

Protocol per batch (each step one round trip: its commands pipelined on one connection,
no ``MULTI``; :mod:`.wire`):

1. **Read** (plain commands, :mod:`.reads`): each card's state and version; each
   transaction's marker (its stored vector and merchant increments, if it was applied
   before); each merchant's buckets for the windows the batch reads; which of the batch's
   transactions each merchant has applied.
2. **Compute** in Python, in batch order, with the pure function; later transactions see
   earlier ones' card and merchant updates. A transaction with a marker returns the
   stored vector and changes no card; a ``txn_id`` repeated in the batch returns its
   first vector. A marked transaction that its merchant has not applied yet (a crash
   between steps 3 and 4) has its stored increments put back into the view in order.
3. **Cards**: per card one script (:mod:`.scripts`) that compare-and-sets the state on its version and
   writes the markers. If a version moved (a zombie or concurrent writer won), nothing is
   written for that card, step 4 is skipped and the whole batch is re-read and recomputed
   (cards that did commit come back from their markers); after ``max_attempts`` rounds
   :class:`ConflictError` is raised.
4. **Merchants**: per merchant one script that applies the ``HINCRBY`` increments of the
   transactions not in its applied-id set (exact integers, once per ``txn_id``).

Why merchants wait for cards (a separate round trip, ~0.1 ms on a LAN, per batch of
hundreds): merchant increments are then only ever applied for transactions whose card
write committed, in stream order. So merchant buckets never hold increments of a
transaction that still has to be computed, or of one computed from a card state that
lost a race; every recomputation after a crash or a conflict sees exactly what the
offline driver sees. (In one pipeline, a conflicting card's increments would already be
counted, from a stale computation, ahead of transactions that precede them.)

Crash safety: each script is atomic and idempotent per ``txn_id``. Crash before step 3:
nothing applied. During or after step 3: the committed cards' markers make their
transactions no-ops on redelivery, and step 4 then applies their increments once. During
step 4: merchants already done skip the ids in their applied sets. So the scorer may
retry a batch that raised :class:`StoreUnavailable`, and Kafka may redeliver any
uncommitted batch, overlapping or not.

Event time: card state only moves through ``compute`` under the version check, one
writer at a time, so late events follow the pure function's rules. Merchant traffic is
global (every partition feeds it), so merchant features depend on the order in which
scorers apply their batches: parity is exact for one ordered stream.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import NoScriptError, ReadOnlyError, RedisError, ResponseError

from services.core.features import (
    DAY_MS,
    MERCHANT_DAILY_KEEP_D,
    MERCHANT_HOURLY_KEEP_H,
    CardState,
    MerchantDelta,
    MerchantState,
    StateFormatError,
    Vector,
    compute,
)
from services.online import keys, wire
from services.online.reads import BatchRead, Snapshot
from services.online.scripts import CARD_SCRIPT, CARD_SHA, MERCHANT_SCRIPT, MERCHANT_SHA

log = logging.getLogger(__name__)

Txn = Mapping[str, Any]
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as the redis_namespace setting
# BusyLoadingError is a ConnectionError; a read-only replica (failover) is transient too.
_TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ReadOnlyError)


class StoreError(Exception):
    """The online store cannot do what was asked (not transient)."""


class StoreUnavailable(StoreError):
    """Redis is unreachable, timing out or loading: back off and retry the whole batch."""


class ConflictError(StoreError):
    """Another writer kept changing the batch's cards; the batch was not fully applied."""


@dataclass
class _CardWrite:
    version: bytes
    state: CardState
    # event day -> [txn_id, marker, txn_id, marker, ...], as the card script takes them
    markers: dict[int, list[str | bytes]] = field(default_factory=dict)


@dataclass
class _Plan:
    """What steps 3 and 4 write, and the batch's vectors."""

    vectors: list[Vector]
    cards: dict[str, _CardWrite]
    merchants: dict[str, list[tuple[str, MerchantDelta]]]  # (txn_id, delta), batch order


class OnlineFeatureStore:
    """Features with state in Redis; see the module doc for the protocol."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "fs",
        txn_ttl_s: int = 8 * 24 * 3600,
        max_attempts: int = 5,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the online store needs a Redis client with decode_responses=False")
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError(f"bad Redis namespace {namespace!r}: use 1-64 of [A-Za-z0-9_-]")
        self._client = client
        self._ns = namespace
        self._ttl = txn_ttl_s
        self._max_attempts = max_attempts
        self._scripts_loaded = False

    # ------------------------------------------------------------------ public

    def process_batch(self, txns: Sequence[Txn]) -> list[Vector]:
        """The features of ``txns`` (same order), with their effects applied exactly once."""
        if not txns:
            return []
        try:
            for attempt in range(1, self._max_attempts + 1):
                snapshot = self._read(txns)
                plan = self._plan(txns, snapshot)
                if self._commit(plan):
                    return plan.vectors
                log.warning("batch of %d not fully applied (attempt %d), retrying", len(txns), attempt)
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        except RedisError as exc:  # e.g. WRONGTYPE: someone else's key in our namespace
            raise StoreError(f"feature store request failed: {exc}") from exc
        except StateFormatError as exc:  # a namespace written for another feature set
            raise StoreError(str(exc)) from exc
        raise ConflictError(f"cards kept changing under the batch after {self._max_attempts} tries")

    def read_card_state(self, card_id: str) -> CardState | None:
        blob = self._call(self._client.hget, keys.card_key(self._ns, card_id), keys.CARD_STATE_FIELD)
        return None if blob is None else CardState.from_bytes(blob)

    def read_merchant_state(self, merchant_id: str) -> MerchantState:
        fields = self._call(self._client.hgetall, keys.merchant_key(self._ns, merchant_id))
        return keys.parse_merchant_hash(fields)

    def reset(self) -> int:
        """Delete every key of this namespace (tests, ops); returns how many."""
        deleted = 0
        batch: list[bytes] = []
        try:
            for key in self._client.scan_iter(match=keys.namespace_pattern(self._ns), count=1000):
                batch.append(key)
                if len(batch) == 500:
                    deleted += self._client.unlink(*batch)
                    batch = []
            if batch:
                deleted += self._client.unlink(*batch)
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        return deleted

    # ------------------------------------------------------------------ step 1: read

    def _read(self, txns: Sequence[Txn]) -> Snapshot:
        request = BatchRead(self._ns, txns)
        return request.parse(self._run(request.commands()))

    # ------------------------------------------------------------------ in Python

    def _plan(self, txns: Sequence[Txn], snap: Snapshot) -> _Plan:
        states = dict(snap.states)
        views = snap.merchants
        vectors: list[Vector] = []
        done: dict[str, Vector] = {}
        cards: dict[str, _CardWrite] = {}
        merchants: dict[str, list[tuple[str, MerchantDelta]]] = {}
        for txn in txns:
            txn_id: str = txn["txn_id"]
            vector = done.get(txn_id)
            if vector is None:
                card_id, merchant_id = txn["card_id"], txn["merchant_id"]
                marker = snap.markers.get(txn_id)
                if marker is not None:
                    vector, delta = marker
                else:
                    vector, state, delta = compute(states[card_id], views[merchant_id], txn)
                    states[card_id] = state
                    write = cards.get(card_id)
                    if write is None:
                        write = cards[card_id] = _CardWrite(snap.versions[card_id], state)
                    write.state = state
                    blob = keys.encode_marker(vector, delta)
                    write.markers.setdefault(txn["event_time"] // DAY_MS, []).extend((txn_id, blob))
                if txn_id not in snap.applied:  # else its increments are in the view already
                    views[merchant_id].add(delta)
                    merchants.setdefault(merchant_id, []).append((txn_id, delta))
                done[txn_id] = vector
            vectors.append(vector)
        return _Plan(vectors, cards, merchants)

    # ------------------------------------------------------------------ steps 3 and 4

    def _commit(self, plan: _Plan) -> bool:
        """Write cards, then merchants; False when the batch must be re-read and recomputed."""
        return self._write_cards(plan) and self._write_merchants(plan)

    def _write_cards(self, plan: _Plan) -> bool:
        if not plan.cards:
            return True
        commands = (self._card_call(card_id, write) for card_id, write in plan.cards.items())
        replies = self._run_scripts(commands)
        if replies is None:
            return False
        conflicts = sum(1 for reply in replies if reply == 0)
        if conflicts:
            log.warning("%d card(s) changed since they were read (concurrent writer)", conflicts)
        return not conflicts

    def _write_merchants(self, plan: _Plan) -> bool:
        if not plan.merchants:
            return True
        commands = (self._merchant_call(m, items) for m, items in plan.merchants.items())
        return self._run_scripts(commands) is not None

    def _run_scripts(self, commands: Iterable[bytes]) -> list[Any] | None:
        """Run ``commands`` (EVALSHAs) in one round trip; None if Redis had lost the scripts
        (they are loaded again on the next call)."""
        if not self._scripts_loaded:
            self._load_scripts()
        replies = self._run(commands)
        if any(isinstance(reply, NoScriptError) for reply in replies):  # restart or flush
            self._scripts_loaded = False
            return None
        return replies

    def _run(self, commands: Iterable[bytes]) -> list[Any]:
        """The replies to ``commands`` (packed; a generator is sent as it is built), in one
        round trip. An error reply raises (after every reply was read), except NOSCRIPT,
        which is left for the caller."""
        replies = wire.execute(self._client, commands)
        for reply in replies:
            if isinstance(reply, ResponseError) and not isinstance(reply, NoScriptError):
                if isinstance(reply, _TRANSIENT):
                    raise reply
                raise StoreError(f"feature store request failed: {reply}") from reply
        return replies

    def _card_call(self, card_id: str, write: _CardWrite) -> bytes:
        key_list = [keys.card_key(self._ns, card_id)]
        args: list[Any] = [write.version, write.state.to_bytes(), self._ttl]
        for day, pairs in write.markers.items():
            key_list.append(keys.card_marker_key(self._ns, card_id, day))
            args.append(len(pairs) // 2)
            args += pairs
        return wire.pack(("EVALSHA", CARD_SHA, len(key_list), *key_list, *args))

    def _merchant_call(self, merchant_id: str, items: list[tuple[str, MerchantDelta]]) -> bytes:
        applied_keys: dict[int, int] = {}
        args: list[Any] = [self._ttl, MERCHANT_HOURLY_KEEP_H, MERCHANT_DAILY_KEEP_D]
        for txn_id, (hour, cents, new_card) in items:
            index = applied_keys.setdefault(hour // 24, len(applied_keys) + 2)
            args += (index, txn_id, hour, cents, 1 if new_card else 0)
        key_list = [keys.merchant_key(self._ns, merchant_id)]
        key_list += [keys.merchant_applied_key(self._ns, merchant_id, d) for d in applied_keys]
        return wire.pack(("EVALSHA", MERCHANT_SHA, len(key_list), *key_list, *args))

    def _load_scripts(self) -> None:
        scripts = ((CARD_SCRIPT, CARD_SHA), (MERCHANT_SCRIPT, MERCHANT_SHA))
        replies = self._run([wire.pack(("SCRIPT", "LOAD", script)) for script, _ in scripts])
        for reply, (_, sha) in zip(replies, scripts, strict=True):
            if reply != sha.encode():
                raise StoreError("Redis named a feature store script by an unexpected SHA1")
        self._scripts_loaded = True

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
