"""A seeded 14-day data set (drift from day 7) and a two-model registry, once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.backtest.bt_helpers import make_dataset, register_model


@pytest.fixture(scope="session")
def bt_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data set directory, registry with fraud@1 champion and fraud@2 challenger)."""
    root = tmp_path_factory.mktemp("backtest")
    data = make_dataset(root / "data")
    registry = root / "models"
    register_model(data, registry, seed=0, rounds=30)
    register_model(data, registry, seed=1, rounds=10)
    return data, registry
