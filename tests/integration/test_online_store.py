"""The Redis online feature store against a real redis-server: layout, idempotence,
crashes between phases, conflicts, lost scripts and unavailable Redis."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
import redis
from redis._parsers import _RESP2Parser
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

import services.online.store as store_module
from services.core.features import Vector, named, pack_vector
from services.core.offline import OfflineFeatureStore
from services.online import ConflictError, OnlineFeatureStore, StoreError, StoreUnavailable, wire
from services.online import keys as K
from services.online.scripts import CARD_SCRIPT, MERCHANT_SCRIPT, sha1

T0 = 1_714_521_600_000  # 2024-05-01T00:00Z
MIN = 60_000
DAY = 86_400_000


def txn(txn_id: str, offset_ms: int, card: str = "c-1", merchant: str = "m-1", **kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "txn_id": txn_id,
        "card_id": card,
        "merchant_id": merchant,
        "mcc": 5411,
        "amount": 12.34,
        "currency": "EUR",
        "country": "DE",
        "channel": "ECOM",
        "device_id": "dev-1",
        "event_time": T0 + offset_ms,
    }
    record.update(kw)
    return record


BATCH = [
    txn("a", 0),
    txn("b", MIN, card="c-2"),
    txn("c", 2 * MIN, merchant="m-2", amount=99.99),
    txn("a", 0),  # repeated inside the batch
    txn("d", DAY + 5, card="c-2"),  # next day: another marker hash
]


def offline(txns: Sequence[dict[str, Any]]) -> tuple[list[Vector], OfflineFeatureStore]:
    store = OfflineFeatureStore()
    return [store.process(t) for t in txns], store


def bits(vectors: Sequence[Vector]) -> list[bytes]:
    return [pack_vector(v) for v in vectors]


def namespace_keys(client: redis.Redis, namespace: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=f"{namespace}:*", count=1000)}


@pytest.fixture
def store(redis_client: redis.Redis, redis_namespace: str) -> OnlineFeatureStore:
    return OnlineFeatureStore(redis_client, redis_namespace)


def test_batch_matches_offline_and_writes_the_documented_layout(
    store: OnlineFeatureStore, redis_client: redis.Redis, redis_namespace: str
) -> None:
    want, off = offline(BATCH)
    got = store.process_batch(BATCH)
    assert bits(got) == bits(want)
    assert bits([got[3]]) == bits([got[0]])
    ns = redis_namespace
    d0, d1 = T0 // DAY, T0 // DAY + 1
    assert namespace_keys(redis_client, ns) == {
        K.card_key(ns, "c-1"),
        K.card_key(ns, "c-2"),
        K.card_marker_key(ns, "c-1", d0),
        K.card_marker_key(ns, "c-2", d0),
        K.card_marker_key(ns, "c-2", d1),
        K.merchant_key(ns, "m-1"),
        K.merchant_key(ns, "m-2"),
        K.merchant_applied_key(ns, "m-1", d0),
        K.merchant_applied_key(ns, "m-1", d1),
        K.merchant_applied_key(ns, "m-2", d0),
    }
    assert redis_client.hget(K.card_key(ns, "c-2"), "v") == b"1"
    assert redis_client.hkeys(K.card_marker_key(ns, "c-2", d0)) == [b"b"]
    assert redis_client.smembers(K.merchant_applied_key(ns, "m-1", d0)) == {b"a", b"b"}
    for key in (K.card_marker_key(ns, "c-1", d0), K.merchant_applied_key(ns, "m-2", d0)):
        assert 0 < redis_client.ttl(key) <= 8 * 24 * 3600
    for key in (K.card_key(ns, "c-1"), K.merchant_key(ns, "m-1")):
        assert redis_client.ttl(key) == -1
    for card_id in ("c-1", "c-2"):
        state = store.read_card_state(card_id)
        assert state is not None and state.to_bytes() == off.cards[card_id].to_bytes()
    for merchant_id in ("m-1", "m-2"):
        assert store.read_merchant_state(merchant_id) == off.merchants[merchant_id]
    assert store.read_card_state("nobody") is None


def test_replay_returns_stored_vectors_and_changes_nothing(
    store: OnlineFeatureStore, redis_client: redis.Redis, redis_namespace: str
) -> None:
    first = store.process_batch(BATCH)
    dump = {k: redis_client.dump(k) for k in namespace_keys(redis_client, redis_namespace)}
    again = store.process_batch(list(reversed(BATCH)))
    assert bits(again) == bits(list(reversed(first)))
    assert {k: redis_client.dump(k) for k in dump} == dump
    nxt = named(store.process_batch([txn("e", 3 * MIN)])[0])
    assert nxt["txn_count_1h"] == 3.0 and nxt["merchant_txn_count_1h"] == 2.0  # a, c / a, b


def test_crash_before_writes_leaves_nothing(
    store: OnlineFeatureStore, redis_client: redis.Redis, redis_namespace: str
) -> None:
    store._plan(BATCH, store._read(BATCH))  # computed, never written: the scorer died
    assert namespace_keys(redis_client, redis_namespace) == set()
    want, _ = offline(BATCH)
    assert bits(store.process_batch(BATCH)) == bits(want)


def test_crash_between_cards_and_merchants_applies_merchants_once(
    store: OnlineFeatureStore, redis_namespace: str
) -> None:
    want, off = offline(BATCH + [txn("e", 3 * MIN)])
    plan = store._plan(BATCH, store._read(BATCH))
    assert store._write_cards(plan)
    assert store.read_merchant_state("m-1").as_dict()["day_counts"] == {}
    # Redelivery from an earlier offset plus one new transaction.
    got = store.process_batch(BATCH + [txn("e", 3 * MIN)])
    assert bits(got) == bits(want)
    assert store.read_merchant_state("m-1") == off.merchants["m-1"]
    assert store.read_merchant_state("m-2") == off.merchants["m-2"]
    # Merchants that already applied skip the ids: a second merchant pass adds nothing.
    assert store._write_merchants(plan)
    assert store.read_merchant_state("m-1") == off.merchants["m-1"]


class _InterferingStore(OnlineFeatureStore):
    """Lets another writer change card c-1 right after each read (a zombie consumer)."""

    def __init__(self, other: OnlineFeatureStore, rounds: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.other, self.rounds, self.reads = other, rounds, 0

    def _read(self, txns: Sequence[Mapping[str, Any]]) -> Any:
        snapshot = super()._read(txns)
        if self.reads < self.rounds:
            self.other.process_batch([txn(f"z{self.reads}", self.reads, merchant="m-z")])
        self.reads += 1
        return snapshot


def test_conflict_rereads_and_recomputes(redis_client: redis.Redis, redis_namespace: str) -> None:
    other = OnlineFeatureStore(redis_client, redis_namespace)
    store = _InterferingStore(other, rounds=1, client=redis_client, namespace=redis_namespace)
    mine = [txn("x", 10 * MIN), txn("y", 11 * MIN, card="c-2")]
    got = store.process_batch(mine)
    assert store.reads == 2
    want, off = offline([txn("z0", 0, merchant="m-z"), *mine])
    assert bits(got) == bits(want[1:])
    state = store.read_card_state("c-1")
    assert state is not None and state.to_bytes() == off.cards["c-1"].to_bytes()
    assert store.read_merchant_state("m-1") == off.merchants["m-1"]


def test_endless_conflicts_raise_and_leave_merchants_alone(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    other = OnlineFeatureStore(redis_client, redis_namespace)
    store = _InterferingStore(
        other, rounds=10, client=redis_client, namespace=redis_namespace, max_attempts=3
    )
    with pytest.raises(ConflictError):
        store.process_batch([txn("x", 10 * MIN)])
    assert store.read_merchant_state("m-1").as_dict()["day_counts"] == {}
    state = store.read_card_state("c-1")
    assert state is not None and state.n == 3  # only the other writer's z0, z1, z2


@pytest.mark.parametrize("lost", ["CARD", "MERCHANT"])
def test_lost_scripts_are_reloaded(
    redis_client: redis.Redis, redis_namespace: str, monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    # A script text Redis has never seen stands in for a SCRIPT FLUSH or a restart
    # (flushing would disturb other tests sharing the server).
    script = {"CARD": CARD_SCRIPT, "MERCHANT": MERCHANT_SCRIPT}[lost]
    variant = f"{script}-- {uuid.uuid4().hex}\n"
    monkeypatch.setattr(store_module, f"{lost}_SCRIPT", variant)
    monkeypatch.setattr(store_module, f"{lost}_SHA", sha1(variant))
    store = OnlineFeatureStore(redis_client, redis_namespace)
    store._scripts_loaded = True  # believes they are there
    want, off = offline(BATCH)
    assert bits(store.process_batch(BATCH)) == bits(want)
    assert redis_client.script_exists(sha1(variant)) == [True]
    assert store.read_merchant_state("m-1") == off.merchants["m-1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.process_batch(BATCH),
        lambda s: s.read_card_state("c-1"),
        lambda s: s.read_merchant_state("m-1"),
        lambda s: s.reset(),
    ],
    ids=["process_batch", "read_card_state", "read_merchant_state", "reset"],
)
def test_unreachable_redis_is_store_unavailable(call: Callable[[OnlineFeatureStore], Any]) -> None:
    client = redis.Redis(
        port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(StoreUnavailable):
            call(OnlineFeatureStore(client, "nowhere"))
    finally:
        client.close()


def test_foreign_data_is_a_store_error(
    store: OnlineFeatureStore, redis_client: redis.Redis, redis_namespace: str
) -> None:
    redis_client.set(K.card_key(redis_namespace, "c-1"), "not a hash")
    with pytest.raises(StoreError, match="request failed"):
        store.process_batch([txn("a", 0)])
    redis_client.delete(K.card_key(redis_namespace, "c-1"))
    redis_client.hset(K.card_key(redis_namespace, "c-1"), mapping={"s": b"[999]", "v": 1})
    with pytest.raises(StoreError, match="wrong shape"):
        store.process_batch([txn("a", 0)])


def test_reset_deletes_only_its_namespace(
    redis_client: redis.Redis, redis_namespace: str, unique: Callable[[str], str]
) -> None:
    mine = OnlineFeatureStore(redis_client, redis_namespace)
    other_ns = unique("test")
    other = OnlineFeatureStore(redis_client, other_ns)
    try:
        mine.process_batch(BATCH)
        other.process_batch(BATCH)
        count = len(namespace_keys(redis_client, redis_namespace))
        assert mine.reset() == count == 10
        assert namespace_keys(redis_client, redis_namespace) == set()
        assert len(namespace_keys(redis_client, other_ns)) == 10
    finally:
        other.reset()


def test_constructor_refuses_unusable_settings(redis_url: str) -> None:
    decoded = redis.Redis.from_url(redis_url, decode_responses=True)
    raw = redis.Redis.from_url(redis_url)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            OnlineFeatureStore(decoded)
        for bad in ("", "a:b", "{x}", "x*"):
            with pytest.raises(ValueError, match="namespace"):
                OnlineFeatureStore(raw, bad)
    finally:
        decoded.close()
        raw.close()


def test_empty_batch_does_nothing(store: OnlineFeatureStore) -> None:
    assert store.process_batch([]) == []


@pytest.mark.parametrize(
    "options",
    [{}, {"protocol": 2}, {"protocol": 2, "parser_class": _RESP2Parser}, {"parser_class": _RESP2Parser}],
    ids=["resp3-hiredis", "resp2-hiredis", "resp2-python", "resp3-python"],
)
def test_any_protocol_and_parser_give_the_same_results(
    redis_url: str, redis_namespace: str, options: dict[str, Any]
) -> None:
    client = redis.Redis.from_url(redis_url, **options)
    try:
        store = OnlineFeatureStore(client, redis_namespace)
        first = BATCH + [txn("e", 3 * MIN)]
        want, off = offline(first)
        assert bits(store.process_batch(BATCH)) == bits(want[: len(BATCH)])
        assert bits(store.process_batch(first)) == bits(want)  # redelivered + one new
        assert store.read_merchant_state("m-1") == off.merchants["m-1"]
        reply = wire.execute(client, [wire.pack(("HGET", K.card_key(redis_namespace, "c-1"), "v"))])
        assert reply == [b"2"]
    finally:
        client.close()


def test_wire_returns_error_replies_as_values_and_stays_in_sync(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    key = f"{redis_namespace}:plain"
    commands = [("SET", key, "v"), ("HGET", key, "f"), ("GET", key), ("NOSUCHCOMMAND",), ("STRLEN", key)]
    replies = wire.execute(redis_client, [wire.pack(c) for c in commands])
    assert replies[0] in (b"OK", True) and replies[2] == b"v" and replies[4] == 1
    assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])
    assert isinstance(replies[3], ResponseError)
    assert wire.execute(redis_client, [wire.pack(("GET", key))]) == [b"v"]  # no reply left behind
    assert wire.execute(redis_client, []) == []


def test_a_failing_builder_leaves_no_reply_behind(redis_client: redis.Redis, redis_namespace: str) -> None:
    key = f"{redis_namespace}:plain"
    big = "x" * (wire.CHUNK_BYTES + 1)

    def commands() -> Iterator[bytes]:
        yield wire.pack(("SET", key, big))  # a full chunk: sent before the failure
        raise RuntimeError("builder failed")

    with pytest.raises(RuntimeError, match="builder failed"):
        wire.execute(redis_client, commands())
    assert wire.execute(redis_client, [wire.pack(("STRLEN", key))]) == [len(big)]


def test_a_killed_connection_is_replaced(
    store: OnlineFeatureStore, redis_client: redis.Redis, redis_url: str
) -> None:
    want, _ = offline(BATCH)
    store.process_batch(BATCH[:1])
    own_id = redis_client.client_id()  # the pool's (only) connection, which the store used
    killer = redis.Redis.from_url(redis_url)
    try:
        assert killer.client_kill_filter(_id=str(own_id)) == 1
    finally:
        killer.close()
    assert bits(store.process_batch(BATCH)) == bits(want)


def test_a_busy_card_day_beyond_the_lua_stack_limit(store: OnlineFeatureStore) -> None:
    # One card and merchant, 1,200 transactions in one day: the scripts pass ids and
    # markers to HSET/SADD in slices (Lua's unpack limit is ~8,000 values).
    batch = [txn(f"t{i:04d}", i * 60_000 % DAY, amount=1.0 + i % 7) for i in range(1200)]
    want, off = offline(batch)
    assert bits(store.process_batch(batch)) == bits(want)
    assert bits(store.process_batch(batch)) == bits(want)
    state = store.read_card_state("c-1")
    assert state is not None and state.to_bytes() == off.cards["c-1"].to_bytes()
    assert store.read_merchant_state("m-1") == off.merchants["m-1"]
