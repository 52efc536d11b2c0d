from __future__ import annotations

from typing import Any

import numpy as np

from services.core.codec import Codec
from services.monitor.records import Raw, decode_labels, decode_scores

CODEC = Codec.load()


def score(i: int, **over: Any) -> dict[str, Any]:
    rec = {
        "txn_id": f"t{i}",
        "card_id": "c",
        "event_time": 1_000 + i,
        "score": 0.25,
        "decision": "ALLOW",
        "reason_codes": [],
        "model_name": "fraud",
        "model_version": "1",
        "model_sha256": "0" * 64,
        "feature_set": "fs",
        "features": [float(i), 1.0],
        "shadow": False,
        "timings": {"consumed_at": 0, "scored_at": 0, "features_us": 0, "predict_us": 0},
    }
    rec.update(over)
    return rec


def raw(i: int, value: bytes | None) -> Raw:
    return Raw("scores", 2, 100 + i, b"k", value)


def test_scores_split_into_counted_skipped_and_rejected() -> None:
    values = [
        CODEC.encode("Score", score(0, decision="REVIEW")),
        CODEC.encode("Score", score(1, shadow=True)),
        CODEC.encode("Score", score(2, model_name="other")),
        CODEC.encode("Score", score(3, model_version="0", features=[1.0])),  # old version: recall only
        CODEC.encode("Score", score(4, score=1.5)),
        CODEC.encode("Score", score(5, features=[1.0, 2.0, 3.0])),
        b"\x00garbage",
        None,
        CODEC.encode(
            "Label", {"txn_id": "x", "card_id": "c", "is_fraud": True, "label_time": 1, "source": "UNKNOWN"}
        ),
    ]
    rows, rejected = decode_scores(CODEC, [raw(i, v) for i, v in enumerate(values)], "fraud", "1", 2)
    assert rows.txn_id == ["t0", "t3"]
    assert rows.flagged.tolist() == [True, False]
    assert rows.psi_rows.tolist() == [True, False]
    assert rows.features.shape == (1, 2) and rows.features[0].tolist() == [0.0, 1.0]
    assert rows.offset.tolist() == [100, 103] and rows.partition.tolist() == [2, 2]
    assert dict(rows.outcomes) == {"counted": 1, "shadow": 1, "other_model": 1, "recall_only": 1}
    reasons = [(r.raw.offset, r.error_class, r.reason) for r in rejected]
    assert reasons == [
        (104, "ValidationError", "score_out_of_range"),
        (105, "ValidationError", "feature_count"),
        (106, "DecodeError", "bad_marker"),
        (107, "DecodeError", "bad_marker"),
        (108, "DecodeError", "schema_mismatch"),
    ]
    assert rejected[2].raw.value == b"\x00garbage"  # the original bytes go to the DLQ


def test_an_empty_batch_has_the_right_shapes() -> None:
    rows, rejected = decode_scores(CODEC, [], "fraud", "1", 30)
    assert len(rows) == 0 and rows.features.shape == (0, 30) and rejected == []
    assert rows.event_ms.dtype == np.int64


def test_times_beyond_the_wall_clock_bound_are_rejected() -> None:
    values = [
        CODEC.encode("Score", score(0, event_time=5_000)),
        CODEC.encode("Score", score(1, event_time=4_000)),
    ]
    rows, rejected = decode_scores(
        CODEC, [raw(i, v) for i, v in enumerate(values)], "fraud", "1", 2, latest_ms=4_500
    )
    assert rows.txn_id == ["t1"] and [r.reason for r in rejected] == ["event_time_in_future"]
    label = CODEC.encode(
        "Label", {"txn_id": "t1", "card_id": "c", "is_fraud": True, "label_time": 9, "source": "CHARGEBACK"}
    )
    rows_l, rejected_l = decode_labels(CODEC, [Raw("labels", 0, 1, None, label)], latest_ms=8)
    assert len(rows_l) == 0 and rejected_l[0].reason == "label_time_in_future"


def test_labels_decode_and_reject() -> None:
    good = CODEC.encode(
        "Label", {"txn_id": "t1", "card_id": "c", "is_fraud": True, "label_time": 5, "source": "CHARGEBACK"}
    )
    bad = CODEC.encode(
        "Label", {"txn_id": "", "card_id": "c", "is_fraud": False, "label_time": 5, "source": "UNKNOWN"}
    )
    rows, rejected = decode_labels(CODEC, [Raw("labels", 0, 7, None, good), Raw("labels", 0, 8, None, bad)])
    assert (rows.txn_id, rows.label_ms, rows.is_fraud, rows.offset) == (["t1"], [5], [True], [7])
    assert [(r.reason, r.raw.offset) for r in rejected] == [("missing_txn_id", 8)]
