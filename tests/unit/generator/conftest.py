"""Small generated worlds shared by the generator tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.generator.build import World, generate
from services.generator.config import DriftSpec
from services.generator.writer import write_dataset
from tests.unit.generator.worlds import small_config


@pytest.fixture(scope="session")
def world() -> World:
    """About 40k transactions, default fraud rate, all patterns, no drift."""
    return generate(small_config())


@pytest.fixture(scope="session")
def fraud_heavy_world() -> World:
    """Many fraud episodes, for statistics on labels."""
    return generate(small_config(fraud_rate=0.03, seed=5))


@pytest.fixture(scope="session")
def drift_world() -> World:
    return generate(
        small_config(
            drift=(
                DriftSpec("amount_inflation", 20),
                DriftSpec("merchant_mix", 20),
                DriftSpec("new_pattern", 20),
            )
        )
    )


@pytest.fixture(scope="session")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small data set on disk, with drift, as the CLI would write it."""
    directory = tmp_path_factory.mktemp("dataset")
    config = small_config(
        cards=400, days=12, merchants=100, fraud_rate=0.02, drift=(DriftSpec("new_pattern", 6),)
    )
    write_dataset(directory, generate(config))
    return directory
