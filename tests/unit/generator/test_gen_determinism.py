"""Same seed, byte-identical files; another seed, another data set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fastavro

from services import dataset
from services.generator.build import generate
from services.generator.config import DriftSpec
from services.generator.writer import write_dataset
from tests.unit.generator.worlds import small_config

FILES = (*dataset.DATA_FILES, dataset.MANIFEST_FILE)


def _write(directory: Path, seed: int) -> Path:
    config = small_config(
        seed=seed,
        cards=200,
        days=8,
        merchants=60,
        fraud_rate=0.02,
        drift=(DriftSpec("amount_inflation", 4), DriftSpec("new_pattern", 5)),
    )
    write_dataset(directory, generate(config))
    return directory


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", seed=3)
    b = _write(tmp_path / "b", seed=3)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", seed=3)
    b = _write(tmp_path / "b", seed=4)
    for name in dataset.DATA_FILES:
        assert (a / name).read_bytes() != (b / name).read_bytes(), name
    ids_a = {t["txn_id"] for t in dataset.iter_transactions(a)}
    ids_b = {t["txn_id"] for t in dataset.iter_transactions(b)}
    assert not ids_a & ids_b  # two data sets never share transaction ids


def test_manifest_has_no_wall_clock_and_matches_files(tmp_path: Path) -> None:
    directory = _write(tmp_path / "a", seed=3)
    dataset.verify_dataset(directory)
    manifest = dataset.read_manifest(directory)
    assert manifest["seed"] == 3
    assert [d["name"] for d in manifest["drift"]] == ["amount_inflation", "new_pattern"]
    assert manifest["counts"]["transactions"] == sum(1 for _ in dataset.iter_transactions(directory))


def test_identical_across_processes_with_different_hash_seeds(tmp_path: Path) -> None:
    """Set iteration order changes with PYTHONHASHSEED; the files must not."""
    args = ["--cards", "120", "--merchants", "40", "--days", "4", "--drift", "merchant_mix@2"]
    for name, hash_seed in (("a", "1"), ("b", "4242")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "FRAUDSTREAM_LOG_LEVEL": "ERROR"}
        subprocess.run(
            [sys.executable, "-m", "services.cli", "generate", "--out", str(tmp_path / name), *args],
            check=True,
            env=env,
            capture_output=True,
            timeout=120,
        )
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_header_carries_the_avsc_as_written(tmp_path: Path) -> None:
    directory = _write(tmp_path / "a", seed=3)
    with (directory / dataset.TRANSACTIONS_FILE).open("rb") as fo:
        header = fastavro.reader(fo).metadata["avro.schema"]
    assert json.loads(header) == dataset.load_schema("transaction")
