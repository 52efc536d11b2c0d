"""Read and write the data-set directory that ``fraudstream generate`` produces.

Layout of a data-set directory ``DIR``::

    DIR/transactions.avro  schema schemas/transaction.avsc, sorted by (event_time, txn_id)
    DIR/labels.avro        schema schemas/label.avsc, sorted by (label_time, txn_id); a
                           transaction may have two labels (a false dispute's chargeback,
                           then its reversal): the later label_time wins. Labels after
                           the last day are kept. Policy: services/generator/labels.py
    DIR/truth.avro         {txn_id, is_fraud, pattern} in transaction order; evaluation only,
                           never for training ("" pattern = legitimate)
    DIR/manifest.json      seed, days, start, counts, fraud rate, patterns, drift scenarios,
                           generator version and the sha256 of each file

Timestamps are plain ``int`` epoch milliseconds UTC everywhere in this API. The files
carry the real schema (``timestamp-millis``), so any Avro tool reads them. fastavro
applies the *writer's* logical types even when given a reader schema without them, so
the readers turn its datetimes back into exact int ms (cheaper than schema resolution).
Enums come back as ``str``.

Files are written deterministically: no wall-clock metadata and a 16-byte sync marker
derived from the seed and the file name, so the same seed gives byte-identical files.
The codec is ``null``: measured on 300k transactions on the 2-core dev box, deflate adds
~15% to write time and ~50% to read time (the trainer reads every run) for a size saving
local data sets do not need; every Avro tool reads both.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

TRANSACTIONS_FILE = "transactions.avro"
LABELS_FILE = "labels.avro"
TRUTH_FILE = "truth.avro"
MANIFEST_FILE = "manifest.json"
DATA_FILES = (TRANSACTIONS_FILE, LABELS_FILE, TRUTH_FILE)

CODEC = "null"

TRUTH_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Truth",
    "namespace": "io.fraudstream",
    "doc": "Ground truth of a generated transaction; for evaluation only, never training.",
    "fields": [
        {"name": "txn_id", "type": "string"},
        {"name": "is_fraud", "type": "boolean"},
        {"name": "pattern", "type": "string", "doc": "fraud pattern name; empty when legit"},
    ],
}


class DatasetError(Exception):
    """A data-set directory is missing, incomplete or does not match its manifest."""


# --------------------------------------------------------------------------- schemas


@cache
def _load_avsc(name: str) -> str:
    path = SCHEMA_DIR / f"{name}.avsc"
    return path.read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """The JSON of ``schemas/<name>.avsc`` (``transaction``, ``label``, ...), a fresh copy."""
    if name == "truth":
        return copy.deepcopy(TRUTH_SCHEMA)
    loaded: dict[str, Any] = json.loads(_load_avsc(name))
    return loaded


def _timestamp_fields(name: str) -> tuple[str, ...]:
    return tuple(
        f["name"]
        for f in load_schema(name)["fields"]
        if isinstance(f["type"], dict) and f["type"].get("logicalType") == "timestamp-millis"
    )


def sync_marker(seed: int, file_name: str) -> bytes:
    """A deterministic 16-byte Avro sync marker for ``file_name`` of the data set ``seed``."""
    return hashlib.sha256(f"fraudstream:{seed}:{file_name}".encode()).digest()[:16]


# --------------------------------------------------------------------------- writing


def write_avro(path: Path, schema_name: str, records: Iterable[dict[str, Any]], *, seed: int) -> None:
    """Write ``records`` to an Avro container at ``path``, byte-reproducibly for ``seed``.

    Timestamps must already be int epoch ms; ``records`` may be a generator.
    """
    with path.open("wb") as fo:
        fastavro.writer(
            fo,
            # the raw .avsc dict, not a parsed schema: fastavro writes what it is given
            # into the header, and its parsed form orders keys by set iteration, which
            # changes with PYTHONHASHSEED and would break byte-identical files
            load_schema(schema_name),
            records,
            codec=CODEC,
            sync_marker=sync_marker(seed, path.name),
            metadata=None,
            strict=True,
        )


def write_transactions(directory: Path, records: Iterable[dict[str, Any]], *, seed: int) -> Path:
    path = directory / TRANSACTIONS_FILE
    write_avro(path, "transaction", records, seed=seed)
    return path


def write_labels(directory: Path, records: Iterable[dict[str, Any]], *, seed: int) -> Path:
    path = directory / LABELS_FILE
    write_avro(path, "label", records, seed=seed)
    return path


def write_truth(directory: Path, records: Iterable[dict[str, Any]], *, seed: int) -> Path:
    path = directory / TRUTH_FILE
    write_avro(path, "truth", records, seed=seed)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fo:
        for block in iter(lambda: fo.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` plus the sha256 of every data file, as stable, sorted JSON."""
    body = dict(manifest)
    body["files"] = {
        name: {"sha256": file_sha256(directory / name)} for name in DATA_FILES if (directory / name).exists()
    }
    path = directory / MANIFEST_FILE
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- reading


def _iter_avro(path: Path, schema_name: str) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"{path} not found; is this a directory from `fraudstream generate`?")
    stamps = _timestamp_fields(schema_name)
    with path.open("rb") as fo:
        for record in fastavro.reader(fo):
            assert isinstance(record, dict)
            for field in stamps:
                value = record[field]
                if isinstance(value, datetime):
                    record[field] = (value - _EPOCH) // _MILLISECOND
            yield record


def iter_transactions(directory: Path) -> Iterator[dict[str, Any]]:
    """Transactions in (event_time, txn_id) order; event_time is int epoch ms UTC."""
    return _iter_avro(Path(directory) / TRANSACTIONS_FILE, "transaction")


def read_transactions(directory: Path) -> list[dict[str, Any]]:
    return list(iter_transactions(directory))


def iter_labels(directory: Path) -> Iterator[dict[str, Any]]:
    """Labels in (label_time, txn_id) order; label_time is int epoch ms, source a str."""
    return _iter_avro(Path(directory) / LABELS_FILE, "label")


def read_labels(directory: Path) -> list[dict[str, Any]]:
    return list(iter_labels(directory))


def iter_truth(directory: Path) -> Iterator[dict[str, Any]]:
    """Ground-truth records ``{txn_id, is_fraud, pattern}`` in transaction order."""
    return _iter_avro(Path(directory) / TRUTH_FILE, "truth")


def read_truth(directory: Path) -> dict[str, tuple[bool, str]]:
    """``txn_id -> (is_fraud, pattern)``; pattern is "" for legitimate transactions."""
    return {r["txn_id"]: (r["is_fraud"], r["pattern"]) for r in iter_truth(directory)}


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise DatasetError(f"{path} not found; is this a directory from `fraudstream generate`?")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from None
    return manifest


def verify_dataset(directory: Path) -> None:
    """Raise :class:`DatasetError` unless every data file matches the manifest's sha256."""
    directory = Path(directory)
    files = read_manifest(directory).get("files", {})
    for name in DATA_FILES:
        expected = files.get(name, {}).get("sha256")
        if expected is None:
            raise DatasetError(f"manifest of {directory} lists no sha256 for {name}")
        if not (directory / name).is_file():
            raise DatasetError(f"{directory / name} is missing")
        if file_sha256(directory / name) != expected:
            raise DatasetError(f"{directory / name} does not match its manifest sha256")
