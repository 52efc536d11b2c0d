"""Training/serving parity: the offline driver and the Redis store must agree bit for bit.

One seeded stream (late events, duplicates, bursts, first-ever cards, days of history so
windows slide and merchant buckets are trimmed) goes through ``OfflineFeatureStore`` and
through ``OnlineFeatureStore`` on a real redis-server, in batches of varying sizes, with
and without simulated crashes and redeliveries.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import redis

from services.core.features import N_FEATURES, Vector, pack_vector
from services.core.offline import OfflineFeatureStore
from services.online import OnlineFeatureStore

T0 = 1_714_521_600_000  # 2024-05-01T00:00Z
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def synthetic_stream(seed: int, n: int = 3000, days: int = 12) -> list[dict[str, Any]]:
    """Transactions in arrival order; event times are not sorted (late arrivals)."""
    rng = random.Random(seed)
    cards = [f"card-{i:04d}" for i in range(150)]
    card_weights = [rng.paretovariate(1.3) for _ in cards]
    merchants = [f"m-{i:03d}" for i in range(40)]
    merchant_info = {
        m: (rng.choice([5411, 5812, 5999, 4829, 7995, 5732, 3005]),
            rng.choice(["POS", "POS", "ECOM", "ATM", "MOTO", "UNKNOWN"]),
            rng.choice(["DE", "DE", "FR", "NL", "US"]))
        for m in merchants
    }  # fmt: skip
    favourites = {c: rng.sample(merchants, 3) for c in cards}
    arrivals = sorted(rng.randrange(0, days * DAY // 1000) * 1000 for _ in range(n))
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < n:
        arrival = arrivals[min(i, n - 1)]
        card = rng.choices(cards, card_weights)[0]
        burst = rng.random() < 0.01  # card testing: several small txns within seconds
        for j in range(rng.randrange(4, 9) if burst else 1):
            merchant = rng.choice(favourites[card]) if rng.random() < 0.7 else rng.choice(merchants)
            mcc, channel, country = merchant_info[merchant]
            late = rng.random()
            if late < 0.03:
                delay = rng.randrange(1, 120) * MIN
            elif late < 0.04:
                delay = rng.choice([2, 3, 4, 9]) * DAY + rng.randrange(HOUR)
            else:
                delay = 0
            out.append(
                {
                    "txn_id": f"tx-{seed}-{i}-{j}",
                    "card_id": card,
                    "merchant_id": merchant,
                    "mcc": mcc,
                    "amount": 1.0 if burst else round(rng.lognormvariate(3.0, 1.1), 2),
                    "currency": "EUR",
                    "country": country if rng.random() < 0.95 else rng.choice(["BR", "NG"]),
                    "channel": channel,
                    "device_id": f"dev-{card}-{rng.randrange(2)}" if channel == "ECOM" else None,
                    "event_time": T0 + arrival + j * 1000 - delay,
                }
            )
        i += 1
    out = out[:n]
    # Redeliveries: exact copies shortly after, a few much later.
    for _ in range(n // 40):
        k = rng.randrange(len(out) - 1)
        out.insert(min(len(out), k + rng.choice([1, 2, 5, 30, 700])), dict(out[k]))
    return out


def batches(txns: Sequence[dict[str, Any]], sizes: Sequence[int]) -> Iterator[list[dict[str, Any]]]:
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(txns):
            return
        yield list(txns[start : start + size])
        start += size


def offline_run(txns: Sequence[dict[str, Any]]) -> tuple[list[Vector], OfflineFeatureStore]:
    store = OfflineFeatureStore()
    return [store.process(t) for t in txns], store


def assert_vectors_identical(got: Sequence[Vector], want: Sequence[Vector]) -> None:
    assert len(got) == len(want)
    got_x, want_x = np.array(got, dtype=np.float64), np.array(want, dtype=np.float64)
    assert got_x.shape == (len(want), N_FEATURES)
    assert np.array_equal(got_x, want_x, equal_nan=True)
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if pack_vector(g) != pack_vector(w)]
    assert not bad, f"{len(bad)} vectors differ in their bits, first at row {bad[0]}"


def assert_same_state(
    online: OnlineFeatureStore, offline: OfflineFeatureStore, txns: Sequence[dict[str, Any]]
) -> None:
    for card_id in {t["card_id"] for t in txns}:
        state = online.read_card_state(card_id)
        assert state is not None
        assert state.to_bytes() == offline.cards[card_id].to_bytes(), card_id
    for merchant_id in {t["merchant_id"] for t in txns}:
        assert online.read_merchant_state(merchant_id) == offline.merchants[merchant_id], merchant_id


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return synthetic_stream(seed=20240501)


@pytest.fixture(scope="module")
def expected(stream: list[dict[str, Any]]) -> tuple[list[Vector], OfflineFeatureStore]:
    return offline_run(stream)


def test_stream_exercises_the_hard_cases(stream: list[dict[str, Any]]) -> None:
    ids = [t["txn_id"] for t in stream]
    assert len(ids) - len(set(ids)) >= 50  # duplicates
    late = sum(1 for a, b in itertools.pairwise(stream) if b["event_time"] < a["event_time"] - DAY)
    assert late >= 10  # events days late
    assert len({t["card_id"] for t in stream}) >= 100 and len(stream) >= 3000


@pytest.mark.parametrize("sizes", [(1, 7, 100, 500), (500,), (7, 1)], ids=["mixed", "500", "7-1"])
def test_online_equals_offline(
    redis_client: redis.Redis,
    redis_namespace: str,
    stream: list[dict[str, Any]],
    expected: tuple[list[Vector], OfflineFeatureStore],
    sizes: tuple[int, ...],
) -> None:
    want, offline = expected
    online = OnlineFeatureStore(redis_client, redis_namespace)
    got: list[Vector] = []
    for batch in batches(stream, sizes):
        got += online.process_batch(batch)
    assert_vectors_identical(got, want)
    assert_same_state(online, offline, stream)


def test_redelivery_after_crashes_counts_nothing_twice(
    redis_client: redis.Redis,
    redis_namespace: str,
    stream: list[dict[str, Any]],
    expected: tuple[list[Vector], OfflineFeatureStore],
) -> None:
    want, offline = expected
    online = OnlineFeatureStore(redis_client, redis_namespace)
    first_vector: dict[str, Vector] = {}
    crashes = itertools.cycle(["none", "after-cards", "some-cards", "before-writes", "none"])
    start, size = 0, 97
    while start < len(stream):
        batch = stream[start : start + size]
        crash = next(crashes)
        if crash != "none":
            # Run a batch part-way, as if the scorer died, then Kafka redelivers from an
            # earlier offset: an overlapping batch (part of the previous one + this one).
            plan = online._plan(batch, online._read(batch))
            if crash == "after-cards":
                assert online._write_cards(plan)
            elif crash == "some-cards":  # died while the card scripts ran
                half = dict(list(plan.cards.items())[: len(plan.cards) // 2])
                assert online._write_cards(dataclasses.replace(plan, cards=half))
        redelivered = stream[max(0, start - 40) : start + size]
        vectors = online.process_batch(redelivered)
        for txn, vector in zip(redelivered, vectors, strict=True):
            first_vector.setdefault(txn["txn_id"], vector)
            assert pack_vector(vector) == pack_vector(first_vector[txn["txn_id"]])
        start += size
    got = [first_vector[t["txn_id"]] for t in stream]
    assert_vectors_identical(got, want)
    assert_same_state(online, offline, stream)
    # A full replay of everything returns the same vectors and changes nothing.
    again: list[Vector] = []
    for batch in batches(stream, (500,)):
        again += online.process_batch(batch)
    assert_vectors_identical(again, want)
    assert_same_state(online, offline, stream)
