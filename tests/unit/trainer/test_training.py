from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest

from services import dataset
from services.core import features, offline
from services.core.decision import Thresholds, top_reasons
from services.core.psi import BinSpec, bin_counts
from services.registry.loader import REQUIRED_KEYS
from services.trainer.split import split_by_time
from services.trainer.training import TrainConfig, TrainError, TrainResult, train_model, train_on_features

FAST = TrainConfig(seed=11, max_rounds=80, early_stopping_rounds=20)
IDENTITY_KEYS = {"name", "version", "created_at", "model_sha256"}  # added by the registry


def clock() -> datetime:
    return datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def data(small_dataset: Path) -> dict[str, Any]:
    txns = dataset.read_transactions(small_dataset)
    return {
        "manifest": dataset.read_manifest(small_dataset),
        "txns": txns,
        "labels": dataset.read_labels(small_dataset),
        "truth": dataset.read_truth(small_dataset),
        "frame": offline.build_features(txns),
    }


def train(
    data: dict[str, Any], labels: list[dict[str, Any]] | None = None, config: TrainConfig = FAST
) -> TrainResult:
    return train_on_features(
        data["frame"],
        data["labels"] if labels is None else labels,
        config=config,
        dataset=data["manifest"],
        clock=clock,
        truth=data["truth"],
    )


@pytest.fixture(scope="module")
def result(data: dict[str, Any]) -> TrainResult:
    return train(data)


def test_same_data_and_seed_give_the_same_model_and_metrics(
    data: dict[str, Any], result: TrainResult
) -> None:
    again = train_model(
        data["txns"], data["labels"], config=FAST, dataset=data["manifest"], clock=clock, truth=data["truth"]
    )
    assert again.model_text == result.model_text
    assert again.manifest["metrics"] == result.manifest["metrics"]
    assert again.manifest["thresholds"] == result.manifest["thresholds"]
    assert again.manifest["psi_reference"] == result.manifest["psi_reference"]


def test_manifest_has_what_the_registry_loader_requires(result: TrainResult) -> None:
    manifest = json.loads(json.dumps(result.manifest))  # plain JSON, no numpy types
    assert set(REQUIRED_KEYS) - IDENTITY_KEYS <= set(manifest)
    assert manifest["feature_names"] == list(features.FEATURE_NAMES)
    assert manifest["feature_set_fingerprint"] == features.FEATURE_SET_FINGERPRINT
    assert manifest["lightgbm_version"] == lightgbm.__version__
    assert len(manifest["schema_fingerprint"]) == 16  # 8 bytes, hex
    assert manifest["params"]["deterministic"] is True and manifest["params"]["num_threads"] == 2
    assert manifest["data"]["content_sha256"] and manifest["dataset"]["seed"] == 3
    assert set(manifest["readable_features"]) == set(features.FEATURE_NAMES)
    assert manifest["training_window"]["end_ms"] == manifest["label_policy"]["fit_label_cutoff_ms"]


def test_model_text_is_the_best_iteration(result: TrainResult) -> None:
    booster = lightgbm.Booster(model_str=result.model_text)
    assert booster.num_trees() == result.manifest["best_iteration"]
    assert booster.num_feature() == len(features.FEATURE_NAMES)


def test_metrics_cover_every_split(data: dict[str, Any], result: TrainResult) -> None:
    metrics = result.manifest["metrics"]
    assert sum(metrics[s]["rows"] for s in ("train", "validation", "test")) == len(data["txns"])
    for split in ("train", "validation", "test"):
        for kind in ("label_based", "truth_based"):
            block = metrics[split][kind]
            assert {
                "roc_auc",
                "pr_auc",
                "recall_at_top_decile",
                "recall_at_1pct_alert_rate",
                "precision_at_k",
                "k",
                "positives",
            } <= set(block)
    assert metrics["test"]["fit_labels"]["known"] == 0  # nothing after T is known at T
    assert metrics["test"]["truth_based"]["roc_auc"] > 0.8


def test_thresholds_keep_validation_alerts_within_the_target(result: TrainResult) -> None:
    th = Thresholds.from_dict(result.manifest["thresholds"])
    shares = result.manifest["metrics"]["validation"]["alert_shares"]
    assert (th.review_rate, th.block_rate) == (0.02, 0.005)
    assert 0.015 <= shares["review_or_block"] <= th.review_rate
    assert 0.003 <= shares["block"] <= th.block_rate


def test_psi_reference_is_the_validation_split(data: dict[str, Any], result: TrainResult) -> None:
    ref = result.manifest["psi_reference"]
    assert set(ref["features"]) == set(features.FEATURE_NAMES)
    assert ref["n"] == result.manifest["metrics"]["validation"]["rows"]
    frame = data["frame"]
    _, val, _ = split_by_time(frame.event_time, FAST.split).masks(frame.event_time)
    j = features.FEATURE_NAMES.index("amount")
    spec = BinSpec.from_dict(ref["features"]["amount"])
    assert np.allclose(bin_counts(spec, frame.X[val, j]) / val.sum(), spec.expected)


def _unlabelled_train_txn(data: dict[str, Any]) -> str:
    labelled = {label["txn_id"] for label in data["labels"]}
    split = split_by_time(data["frame"].event_time, FAST.split)
    return next(
        t["txn_id"]
        for t in data["txns"]
        if t["event_time"] < split.train_end_ms and t["txn_id"] not in labelled
    )


def _with_label(data: dict[str, Any], txn_id: str, at: int) -> list[dict[str, Any]]:
    extra = {"txn_id": txn_id, "card_id": "x", "is_fraud": True, "label_time": at, "source": "CHARGEBACK"}
    return sorted([*data["labels"], extra], key=lambda label: (label["label_time"], label["txn_id"]))


def test_a_label_arriving_after_the_cutoff_does_not_mark_a_train_row_fraud(
    data: dict[str, Any], result: TrainResult
) -> None:
    cutoff = result.manifest["label_policy"]["fit_label_cutoff_ms"]
    txn_id = _unlabelled_train_txn(data)
    late = train(data, _with_label(data, txn_id, cutoff + 1))
    assert late.model_text == result.model_text
    assert (
        late.manifest["metrics"]["train"]["fit_labels"] == result.manifest["metrics"]["train"]["fit_labels"]
    )
    on_time = train(data, _with_label(data, txn_id, cutoff))
    fraud = on_time.manifest["metrics"]["train"]["fit_labels"]["fraud"]
    assert fraud == result.manifest["metrics"]["train"]["fit_labels"]["fraud"] + 1


def test_no_known_fraud_label_is_a_train_error(data: dict[str, Any]) -> None:
    with pytest.raises(TrainError, match="no fraud label"):
        train(data, labels=[])


def test_reason_codes_from_the_trained_model(data: dict[str, Any], result: TrainResult) -> None:
    booster = lightgbm.Booster(model_str=result.model_text)
    X = data["frame"].X
    top = int(np.argmax(booster.predict(X)))
    contrib = booster.predict(X[top : top + 1], pred_contrib=True)[0]
    reasons = top_reasons(contrib, features.FEATURE_NAMES, features.READABLE, k=3)
    assert 1 <= len(reasons) <= 3
    assert set(reasons) <= set(features.READABLE.values())


def test_imbalance_options_are_recorded(data: dict[str, Any]) -> None:
    weighted = train(data, config=replace(FAST, imbalance="scale_pos_weight", max_rounds=5))
    assert weighted.manifest["params"]["scale_pos_weight"] > 10


def test_without_truth_or_file_hashes_as_in_the_trainer_service(data: dict[str, Any]) -> None:
    result = train_on_features(
        data["frame"], data["labels"], config=replace(FAST, max_rounds=5), dataset={}, clock=clock
    )
    test = result.manifest["metrics"]["test"]
    assert "truth_based" not in test and "recall_by_pattern" not in test
    assert test["label_based"]["roc_auc"] is not None
    assert len(result.manifest["data"]["content_sha256"]) == 64
    assert "[label_based]" in result.report and "[truth_based]" not in result.report


def test_unsorted_input_with_a_redelivered_transaction_trains_the_same_model(
    data: dict[str, Any], result: TrainResult
) -> None:
    txns = list(data["txns"])
    txns.append(dict(txns[len(txns) // 2]))  # a redelivery
    shuffled = [txns[i] for i in np.random.default_rng(0).permutation(len(txns))]
    again = train_model(
        shuffled, data["labels"], config=FAST, dataset=data["manifest"], clock=clock, truth=data["truth"]
    )
    assert again.model_text == result.model_text
    assert again.manifest["metrics"] == result.manifest["metrics"]
