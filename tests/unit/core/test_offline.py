"""The offline driver: order, duplicates, frames."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from services.core.features import FEATURE_NAMES, N_FEATURES, named, pack_vector
from services.core.offline import (
    DEDUPE_HORIZON_MS,
    FeatureFrame,
    OfflineFeatureStore,
    build_features,
    sort_by_event_time,
)

T0 = 1_714_521_600_000
MIN = 60_000
DAY = 86_400_000


def txn(txn_id: str, offset_ms: int, card: str = "c-1", merchant: str = "m-1", **kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "txn_id": txn_id,
        "card_id": card,
        "merchant_id": merchant,
        "mcc": 5411,
        "amount": 10.0,
        "currency": "EUR",
        "country": "DE",
        "channel": "POS",
        "device_id": None,
        "event_time": T0 + offset_ms,
    }
    record.update(kw)
    return record


def same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return pack_vector(a) == pack_vector(b)


def test_duplicate_returns_the_first_vector_and_changes_nothing() -> None:
    store = OfflineFeatureStore()
    first = store.process(txn("a", 0, amount=5.0))
    state = store.cards["c-1"].to_bytes()
    merchant = store.merchants["m-1"].as_dict()
    again = store.process(txn("a", 0, amount=5.0))
    changed = store.process(txn("a", MIN, amount=99.0))  # same id: the first record wins
    assert same(again, first) and same(changed, first)
    assert store.cards["c-1"].to_bytes() == state
    assert store.merchants["m-1"].as_dict() == merchant
    nxt = named(store.process(txn("b", 2 * MIN)))
    assert nxt["txn_count_1h"] == 2.0 and nxt["merchant_txn_count_1h"] == 1.0


def test_cards_and_merchants_are_independent() -> None:
    store = OfflineFeatureStore()
    store.process(txn("a", 0, card="c-1", merchant="m-1"))
    v = named(store.process(txn("b", MIN, card="c-2", merchant="m-1")))
    assert v["txn_count_1h"] == 1.0 and math.isnan(v["secs_since_last_txn"])
    assert v["merchant_txn_count_1h"] == 1.0 and v["merchant_new_card_count_24h"] == 1.0
    w = named(store.process(txn("c", 2 * MIN, card="c-1", merchant="m-2")))
    assert w["txn_count_1h"] == 2.0 and w["merchant_txn_count_1h"] == 0.0
    assert store.card_state("c-3") is None and store.merchant_state("m-3") is None


def test_dedupe_forgets_ids_past_the_horizon() -> None:
    store = OfflineFeatureStore(dedupe_horizon_ms=DAY)
    first = store.process(txn("a", 0))
    assert same(store.process(txn("a", 0)), first)
    store.process(txn("b", DAY + 1))  # pushes "a" past the horizon
    again = named(store.process(txn("a", 0)))
    assert again["card_prior_txn_count"] == 2.0  # processed once more: counted twice now
    assert again["txn_count_24h"] == 2.0  # the first "a" and this one


def test_late_event_is_remembered_from_when_it_was_seen() -> None:
    store = OfflineFeatureStore(dedupe_horizon_ms=DAY)
    store.process(txn("now", 10 * DAY))
    late = store.process(txn("late", 0))  # 10 days late
    store.process(txn("next", 10 * DAY + 1))
    assert same(store.process(txn("late", 0)), late)
    store.process(txn("later", 11 * DAY + 2))
    assert not same(store.process(txn("late", 0)), late)  # forgotten a day after it was seen


def test_unbounded_dedupe_remembers_everything() -> None:
    store = OfflineFeatureStore(dedupe_horizon_ms=None)
    first = store.process(txn("a", 0))
    store.process(txn("b", 30 * DAY))
    assert same(store.process(txn("a", 0)), first)
    assert DEDUPE_HORIZON_MS == 8 * DAY


def test_build_features_one_row_per_input_in_given_order() -> None:
    records = [txn("a", 0), txn("b", MIN, card="c-2"), txn("a", 0), txn("c", 2 * MIN)]
    frame = build_features(records)
    assert isinstance(frame, FeatureFrame) and len(frame) == 4
    assert frame.txn_ids == ["a", "b", "a", "c"]
    assert frame.card_ids == ["c-1", "c-2", "c-1", "c-1"]
    assert frame.event_time.dtype == np.int64 and frame.event_time.tolist() == [
        T0, T0 + MIN, T0, T0 + 2 * MIN
    ]  # fmt: skip
    assert frame.X.dtype == np.float64 and frame.X.shape == (4, N_FEATURES)
    assert frame.feature_names == FEATURE_NAMES
    np.testing.assert_array_equal(frame.X[2], frame.X[0])
    store = OfflineFeatureStore()
    expected = np.array([store.process(r) for r in records])
    assert np.array_equal(frame.X, expected, equal_nan=True)
    assert frame.X[3, FEATURE_NAMES.index("txn_count_1h")] == 2.0


def test_build_features_of_nothing() -> None:
    frame = build_features([])
    assert frame.X.shape == (0, N_FEATURES) and frame.event_time.shape == (0,)


def test_build_features_continues_a_given_store() -> None:
    store = OfflineFeatureStore()
    build_features([txn("a", 0)], store=store)
    frame = build_features([txn("b", MIN)], store=store)
    assert frame.X[0, FEATURE_NAMES.index("txn_count_1h")] == 2.0


def test_sort_by_event_time_breaks_ties_by_txn_id() -> None:
    records = [txn("b", MIN), txn("z", 0), txn("a", MIN)]
    assert [r["txn_id"] for r in sort_by_event_time(records)] == ["z", "a", "b"]


def test_order_matters_and_is_respected() -> None:
    records = [txn("a", 0, amount=1.0), txn("b", MIN, amount=100.0)]
    forward = build_features(records).X
    backward = build_features(list(reversed(records))).X
    col = FEATURE_NAMES.index("amount_to_card_mean")
    assert forward[1, col] == 100.0
    assert backward[1, col] == pytest.approx(0.01)
