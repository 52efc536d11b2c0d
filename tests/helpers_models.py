"""Tiny LightGBM models registered like the trainer would, for scorer tests and benches.

The model learns "large amount = fraud" on random vectors with the real feature layout,
so on generated traffic a known share of transactions is REVIEW or BLOCK and reason
codes are exercised. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm
import numpy as np

from services.core import features
from services.registry import ModelVersion, Registry

AMOUNT = features.FEATURE_INDEX["amount"]
# Transactions above this amount score high (the generator in tests draws 1-1000).
FRAUD_AMOUNT = 800.0


def train_text(seed: int = 0, rounds: int = 20, rows: int = 2000) -> str:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features.N_FEATURES))
    x[:, AMOUNT] = rng.uniform(1.0, 1000.0, size=rows)
    y = ((x[:, AMOUNT] > FRAUD_AMOUNT) ^ (rng.uniform(size=rows) < 0.02)).astype(int)
    params = {
        "objective": "binary",
        "verbose": -1,
        "num_threads": 1,
        "seed": seed,
        "deterministic": True,
        "num_leaves": 15,
    }
    booster = lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=rounds)
    return str(booster.model_to_string())


def manifest(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "feature_names": list(features.FEATURE_NAMES),
        "feature_set_fingerprint": features.FEATURE_SET_FINGERPRINT,
        "thresholds": {"review": 0.5, "block": 0.8, "review_rate": 0.2, "block_rate": 0.1},
        "psi_reference": {},
        "metrics": {"test": {"roc_auc": 0.9}},
        "params": {},
        "lightgbm_version": lightgbm.__version__,
    }
    base.update(overrides)
    return base


def register_model(
    root: Path,
    *,
    name: str = "fraud",
    seed: int = 0,
    rounds: int = 20,
    promote: bool = False,
    **overrides: Any,
) -> ModelVersion:
    """Train and register a tiny model; the first one of a name becomes champion."""
    return Registry(root).register(name, train_text(seed, rounds), manifest(**overrides), promote=promote)
