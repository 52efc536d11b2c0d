"""services.dataset: Avro round trip, int timestamps, reproducible bytes, interop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import avro.datafile
import avro.io
import fastavro
import pytest

from services import dataset

TXNS: list[dict[str, Any]] = [
    {
        "txn_id": "t_0001",
        "card_id": "card_00aa",
        "merchant_id": "m_1",
        "mcc": 5411,
        "amount": 12.5,
        "currency": "EUR",
        "country": "DE",
        "channel": "POS",
        "device_id": None,
        "event_time": 1_767_225_600_123,
    },
    {
        "txn_id": "t_0002",
        "card_id": "card_00bb",
        "merchant_id": "m_2",
        "mcc": 5967,
        "amount": 1.0,
        "currency": "USD",
        "country": "US",
        "channel": "ECOM",
        "device_id": "d_01",
        "event_time": 1_767_225_601_000,
    },
]
LABELS: list[dict[str, Any]] = [
    {
        "txn_id": "t_0002",
        "card_id": "card_00bb",
        "is_fraud": True,
        "label_time": 1_769_000_000_000,
        "source": "CHARGEBACK",
    },
]
TRUTH = [
    {"txn_id": "t_0001", "is_fraud": False, "pattern": ""},
    {"txn_id": "t_0002", "is_fraud": True, "pattern": "card_testing"},
]


def _write(directory: Path, seed: int = 1) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dataset.write_transactions(directory, TXNS, seed=seed)
    dataset.write_labels(directory, LABELS, seed=seed)
    dataset.write_truth(directory, TRUTH, seed=seed)
    dataset.write_manifest(directory, {"seed": seed})
    return directory


def test_round_trip_with_int_timestamps(tmp_path: Path) -> None:
    directory = _write(tmp_path)
    assert dataset.read_transactions(directory) == TXNS
    assert list(dataset.iter_transactions(directory)) == TXNS
    assert dataset.read_labels(directory) == LABELS
    assert dataset.read_truth(directory) == {"t_0001": (False, ""), "t_0002": (True, "card_testing")}
    first = dataset.read_transactions(directory)[0]
    assert type(first["event_time"]) is int and type(first["channel"]) is str
    manifest = dataset.read_manifest(directory)
    assert manifest["seed"] == 1 and set(manifest["files"]) == set(dataset.DATA_FILES)


def test_same_seed_same_bytes_other_seed_other_sync_marker(tmp_path: Path) -> None:
    a, b, c = _write(tmp_path / "a"), _write(tmp_path / "b"), _write(tmp_path / "c", seed=2)
    for name in (*dataset.DATA_FILES, dataset.MANIFEST_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / dataset.TRANSACTIONS_FILE).read_bytes() != (c / dataset.TRANSACTIONS_FILE).read_bytes()
    assert dataset.sync_marker(1, "x") != dataset.sync_marker(2, "x")
    assert len(dataset.sync_marker(1, "x")) == 16


def test_files_carry_the_project_schema_and_read_with_the_reference_library(tmp_path: Path) -> None:
    directory = _write(tmp_path)
    path = directory / dataset.TRANSACTIONS_FILE
    with path.open("rb") as fo:
        header_schema = fastavro.reader(fo).writer_schema
    expected = fastavro.parse_schema(dataset.load_schema("transaction"))
    assert fastavro.schema.to_parsing_canonical_form(header_schema) == (
        fastavro.schema.to_parsing_canonical_form(expected)
    )
    with path.open("rb") as fo, avro.datafile.DataFileReader(fo, avro.io.DatumReader()) as rd:
        records: list[dict[str, Any]] = [dict(r) for r in rd]  # type: ignore[call-overload]
    assert [r["txn_id"] for r in records] == ["t_0001", "t_0002"]
    assert records[1]["device_id"] == "d_01"


def test_verify_detects_tampering(tmp_path: Path) -> None:
    directory = _write(tmp_path)
    dataset.verify_dataset(directory)
    labels = directory / dataset.LABELS_FILE
    labels.write_bytes(labels.read_bytes() + b"\0")
    with pytest.raises(dataset.DatasetError, match="does not match"):
        dataset.verify_dataset(directory)


def test_missing_files_raise_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(dataset.DatasetError, match="not found"):
        dataset.read_manifest(tmp_path)
    with pytest.raises(dataset.DatasetError, match="not found"):
        dataset.read_transactions(tmp_path)
    (tmp_path / dataset.MANIFEST_FILE).write_text("{not json")
    with pytest.raises(dataset.DatasetError, match="not valid JSON"):
        dataset.read_manifest(tmp_path)


def test_manifest_is_stable_sorted_json(tmp_path: Path) -> None:
    directory = _write(tmp_path)
    text = (directory / dataset.MANIFEST_FILE).read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_writer_rejects_records_off_the_schema(tmp_path: Path) -> None:
    bad = [{**TXNS[0], "channel": "TELEPATHY"}]
    with pytest.raises(ValueError):
        dataset.write_transactions(tmp_path, bad, seed=1)
