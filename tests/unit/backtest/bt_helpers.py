"""Small seeded data sets and models for the backtest, replay-parity and report tests.

The model is a real LightGBM model over the real features of the data set, registered
with a manifest the loader, the scorer and the monitor accept (thresholds, PSI
reference, recall baseline). It is fitted on the ground truth for speed: tests need a
model with the right shape, not an honest one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm
import numpy as np

from services import dataset
from services.core import decision, features, psi
from services.core.offline import build_features
from services.generator import cli as generate_cli
from services.registry import ModelVersion, Registry

REFERENCE_SHARE = 0.5  # the PSI reference comes from the first half of the rows


def make_dataset(
    out: Path,
    *,
    days: int = 14,
    cards: int = 1000,
    merchants: int = 100,
    seed: int = 3,
    fraud_rate: float = 0.02,
    drift: str | None = "amount_inflation@7",
) -> Path:
    argv = [
        "--out",
        str(out),
        "--days",
        str(days),
        "--cards",
        str(cards),
        "--merchants",
        str(merchants),
        "--seed",
        str(seed),
        "--fraud-rate",
        str(fraud_rate),
        "--log-level",
        "WARNING",
    ]
    if drift:
        argv += ["--drift", drift]
    assert generate_cli.main(argv) == 0
    return out


def train_text(X: np.ndarray, y: np.ndarray, seed: int, rounds: int) -> str:
    params = {
        "objective": "binary",
        "verbose": -1,
        "num_threads": 1,
        "seed": seed,
        "deterministic": True,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "learning_rate": 0.1,
    }
    booster = lightgbm.train(params, lightgbm.Dataset(X, y.astype(float)), num_boost_round=rounds)
    return str(booster.model_to_string())


def manifest_for(
    X: np.ndarray, scores: np.ndarray, *, baseline: float = 0.6, review_rate: float = 0.02, **extra: Any
) -> dict[str, Any]:
    names = list(features.FEATURE_NAMES)
    thresholds = decision.choose_thresholds(scores, review_rate, min(review_rate, 0.005))
    return {
        "feature_names": names,
        "feature_set_fingerprint": features.FEATURE_SET_FINGERPRINT,
        "thresholds": thresholds.to_dict(),
        "psi_reference": psi.build_references(X, names, scores, exempt=features.DRIFT_EXEMPT),
        "metrics": {"test": {"label_based": {"recall_at_review_threshold": baseline}}},
        "params": {},
        "lightgbm_version": lightgbm.__version__,
        **extra,
    }


def register_model(
    data_dir: Path,
    registry: Path,
    *,
    name: str = "fraud",
    seed: int = 0,
    rounds: int = 30,
    promote: bool = False,
    baseline: float = 0.6,
    review_rate: float = 0.02,
) -> ModelVersion:
    """Fit on the data set's truth, freeze the reference on its first half, register.
    ``baseline`` is the recall the monitor expects (a high one makes recall "decay")."""
    txns = dataset.read_transactions(data_dir)
    frame = build_features(txns)
    truth = dataset.read_truth(data_dir)
    y = np.asarray([truth[t][0] for t in frame.txn_ids], dtype=bool)
    text = train_text(frame.X, y, seed, rounds)
    booster = lightgbm.Booster(model_str=text)
    ref = slice(0, int(len(frame) * REFERENCE_SHARE))
    scores = np.asarray(booster.predict(frame.X[ref]), dtype=np.float64)
    manifest = manifest_for(frame.X[ref], scores, baseline=baseline, review_rate=review_rate)
    return Registry(registry).register(name, text, manifest, promote=promote)
