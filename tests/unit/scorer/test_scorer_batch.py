from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.core import features, topics
from services.core.codec import Codec
from services.core.features import FEATURE_INDEX, N_FEATURES, READABLE
from services.scorer import batch as B
from services.scorer.dlq import Failure
from services.scorer.model_watch import ServingModel, load_serving

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.helpers_models import register_model

NOW = 1_767_225_600_000  # 2026-01-01T00:00Z
LIMITS = B.Limits(max_amount=10_000.0, max_future_skew_ms=300_000, max_event_age_ms=400 * 86_400_000)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.load()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ServingModel:
    mv = register_model(tmp_path_factory.mktemp("models"))
    return load_serving(mv)


def txn(i: int = 0, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "txn_id": f"t{i}",
        "card_id": f"card-{i % 3}",
        "merchant_id": "m1",
        "mcc": 5411,
        "amount": 12.5,
        "currency": "EUR",
        "country": "DE",
        "channel": "POS",
        "device_id": None,
        "event_time": NOW - 1000,
    }
    base.update(overrides)
    return base


def raw(codec: Codec, record: dict[str, Any], offset: int = 0, partition: int = 0, **kw: Any) -> B.Raw:
    value = kw.pop("value", None) or codec.encode("Transaction", record)
    key = kw.pop("key", record["card_id"].encode())
    return B.Raw("p.transactions", partition, offset, key, value, **kw)


def test_decode_batch_splits_good_and_bad_in_order(codec: Codec) -> None:
    good = txn(1)
    raws = [
        raw(codec, good, 0),
        raw(codec, good, 1, value=codec.encode("Transaction", good)[:-3]),
        raw(codec, txn(2, amount=math.nan), 2),
        raw(codec, txn(3, event_time=NOW + 3_600_000), 3),
        raw(codec, txn(4), 4, key=b"another-card"),
        raw(codec, txn(5, event_time=NOW - 401 * 86_400_000), 5),
        raw(codec, good, 6, value=b"\x00garbage"),
    ]
    decoded = B.decode_batch(raws, codec, LIMITS, NOW)
    assert [r.offset for r, _ in decoded.goods] == [0]
    assert decoded.goods[0][1] == good
    assert decoded.bad_flags == [False, True, True, True, True, True, True]
    reasons = [(f.error_class, f.reason) for _, f in decoded.bads]
    assert reasons == [
        ("DecodeError", "truncated"),
        ("ValidationError", "amount_not_finite"),
        ("ValidationError", "event_time_in_future"),
        ("ValidationError", "key_mismatch"),
        ("ValidationError", "event_time_too_old"),
        ("DecodeError", "bad_marker"),
    ]


def test_validation_detail_never_shows_an_id(codec: Codec) -> None:
    bad = txn(1, card_id="c" * 65)
    decoded = B.decode_batch([raw(codec, bad)], codec, LIMITS, NOW)
    failure = decoded.bads[0][1]
    assert failure.reason == "id_too_long"
    assert "c" * 65 not in failure.detail


def test_offsets_per_partition() -> None:
    raws = [B.Raw("t", p, o, None, None) for p, o in [(0, 5), (1, 9), (0, 6), (0, 7), (1, 10)]]
    assert B.next_offsets(raws) == {("t", 0): 8, ("t", 1): 11}
    assert B.first_offsets(raws) == {("t", 0): 5, ("t", 1): 9}


def test_without_partitions_drops_revoked_records(codec: Codec) -> None:
    raws = [raw(codec, txn(i), i, partition=i % 2) for i in range(4)]
    raws.append(B.Raw("p.transactions", 1, 9, None, b"bad"))
    decoded = B.decode_batch(raws, codec, LIMITS, NOW)
    kept = decoded.without_partitions({("p.transactions", 1)})
    assert [r.offset for r, _ in kept.goods] == [0, 2]
    assert kept.bads == []


def test_predict_decides_by_thresholds_and_explains_only_alerts(model: ServingModel) -> None:
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(200, N_FEATURES))
    matrix[:, FEATURE_INDEX["amount"]] = np.linspace(1.0, 1000.0, 200)
    matrix[5, FEATURE_INDEX["txn_count_1h"]] = math.nan  # missing values are fine
    preds = B.predict(model, matrix, READABLE)
    assert preds.scores.shape == (200,)
    expected = np.where(
        preds.scores >= model.thresholds.block,
        "BLOCK",
        np.where(preds.scores >= model.thresholds.review, "REVIEW", "ALLOW"),
    )
    assert preds.decisions == expected.tolist()
    assert {"ALLOW", "BLOCK"} <= set(preds.decisions)
    alerts = [i for i, d in enumerate(preds.decisions) if d != "ALLOW"]
    assert preds.contrib_rows == len(alerts)
    for i, reasons in enumerate(preds.reasons):
        if i in alerts:
            assert 1 <= len(reasons) <= 3
            assert reasons[0] == READABLE["amount"]  # the model only learned amount
            assert set(reasons) <= set(READABLE.values())
        else:
            assert reasons == []


def test_predict_empty_batch(model: ServingModel) -> None:
    preds = B.predict(model, B.feature_matrix([], N_FEATURES), READABLE)
    assert preds.decisions == [] and preds.scores.shape == (0,)


def test_feature_matrix_refuses_wrong_width() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        B.feature_matrix([[1.0, 2.0]], N_FEATURES)


def test_scores_round_trip_through_the_codec(codec: Codec, model: ServingModel) -> None:
    records = [txn(i, amount=100.0 * (i + 1)) for i in range(9)]
    goods = [(raw(codec, r, i), r) for i, r in enumerate(records)]
    matrix = np.zeros((9, N_FEATURES))
    matrix[:, FEATURE_INDEX["amount"]] = [r["amount"] for r in records]
    matrix[0, 3] = math.nan
    preds = B.predict(model, matrix, READABLE)
    scores = B.score_records(
        goods, matrix, preds, model,
        consumed_at_ms=NOW, scored_at_ms=NOW + 4, times=B.StageTimes(features_us=30, predict_us=7),
    )  # fmt: skip
    out = B.encode_scores(scores, goods, codec, "p.scores")
    assert [o.key for o in out] == [r["card_id"].encode() for r in records]
    assert all(o.topic == "p.scores" and not o.droppable_value for o in out)
    back = [codec.decode("Score", o.value or b"") for o in out]
    assert [b["txn_id"] for b in back] == [r["txn_id"] for r in records]
    first = back[0]
    assert first["model_version"] == model.version and first["model_sha256"] == model.sha256
    assert first["feature_set"] == features.FEATURE_SET_FINGERPRINT
    assert first["shadow"] is False
    assert math.isnan(first["features"][3]) and len(first["features"]) == N_FEATURES
    assert first["timings"] == {"consumed_at": NOW, "scored_at": NOW + 4, "features_us": 30, "predict_us": 7}
    assert [b["decision"] for b in back] == preds.decisions
    assert back[-1]["decision"] == "BLOCK" and back[-1]["reason_codes"]


def test_dead_letters_keep_key_and_value_bytes() -> None:
    bad = B.Raw("p.transactions", 2, 41, b"\x00key", b"\xff\xfe", [("trace", b"1")])
    failure = Failure("DecodeError", "bad_marker", "not Avro single-object encoding")
    [out] = B.dead_letters([(bad, failure)], "p.transactions.dlq", failed_at_ms=NOW)
    assert (out.topic, out.key, out.value, out.droppable_value) == (
        "p.transactions.dlq",
        b"\x00key",
        b"\xff\xfe",
        True,
    )
    headers = dict(out.headers or [])
    assert headers["trace"] == b"1"
    assert headers[topics.DLQ_ORIGINAL_OFFSET] == b"41"
    assert headers[topics.DLQ_ERROR_REASON] == b"bad_marker"
    assert headers[topics.DLQ_FAILED_AT] == str(NOW).encode()
