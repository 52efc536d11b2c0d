"""A small generated data set, shared by the trainer tests (about 22k transactions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import cli

SMALL = ["--days", "21", "--seed", "3", "--cards", "3000", "--merchants", "300", "--fraud-rate", "0.02"]


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("trainer") / "data"
    assert cli.main(["generate", "--out", str(directory), *SMALL, "--log-level", "WARNING"]) == 0
    return directory
