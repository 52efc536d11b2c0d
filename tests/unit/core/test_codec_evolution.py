"""Schema evolution: old and new writer versions resolve to the reader's schema.

tests/data/transaction_v2.avsc is Transaction v1 plus an optional ``wallet_type``
(default null), the kind of change the rollout in schemas/README.md is for.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path
from typing import Any

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from services.core.codec import Codec, DecodeError, default_schemas_dir
from services.core.schemas import HISTORY_DIR, read_version
from tests.unit.core.codec_samples import sample_record

SCHEMAS = default_schemas_dir()
DATA = Path(__file__).resolve().parents[2] / "data"
V1 = json.loads((SCHEMAS / "transaction.avsc").read_text())
V2 = json.loads((DATA / "transaction_v2.avsc").read_text())
OTHERS = [json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.avsc"))
          if p.name != "transaction.avsc"]  # fmt: skip
REPO = Codec.load()
HISTORY = sorted((SCHEMAS / HISTORY_DIR).glob("*.avsc"))


def codec(current: dict[str, Any], *history: dict[str, Any]) -> Codec:
    return Codec.from_schemas([current, *OTHERS], list(history))


def transactions(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [sample_record(REPO.current("Transaction"), rng) for _ in range(count)]


def test_v2_written_records_decode_with_the_v1_reader() -> None:
    writer = codec(V2)
    reader = codec(V1, V2)  # a v1 service that has been told about v2
    for txn in transactions(100, seed=1):
        data = writer.encode("Transaction", {**txn, "wallet_type": "APPLE_PAY"})
        assert reader.decode("Transaction", data) == txn


def test_v1_written_records_decode_with_the_v2_reader() -> None:
    reader = codec(V2, V1)
    for txn in transactions(100, seed=2):
        assert reader.decode("Transaction", REPO.encode("Transaction", txn)) == {
            **txn, "wallet_type": None,
        }  # fmt: skip


def test_a_reader_must_know_a_newer_version_before_writers_use_it() -> None:
    data = codec(V2).encode("Transaction", {**transactions(1, seed=3)[0], "wallet_type": None})
    with pytest.raises(DecodeError) as info:
        REPO.decode("Transaction", data)
    assert info.value.reason == "unknown_fingerprint"


def test_history_in_a_schemas_directory_is_loaded(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "schemas")
    shutil.copy(DATA / "transaction_v2.avsc", tmp_path / "schemas" / "history" / "transaction.v2.avsc")
    reader = Codec.load(tmp_path / "schemas")
    assert len(reader.known_versions("Transaction")) == 2
    txn = transactions(1, seed=4)[0]
    data = codec(V2).encode("Transaction", {**txn, "wallet_type": "X"})
    assert reader.decode("Transaction", data) == txn


def test_unknown_enum_symbols_resolve_to_the_enum_default() -> None:
    wider = copy.deepcopy(V1)
    channel = next(f for f in wider["fields"] if f["name"] == "channel")
    channel["type"]["symbols"].append("WALLET")
    txn = {**transactions(1, seed=5)[0], "channel": "WALLET"}
    data = codec(wider).encode("Transaction", txn)
    assert codec(V1, wider).decode("Transaction", data) == {**txn, "channel": "UNKNOWN"}


def test_an_incompatible_writer_is_a_schema_mismatch() -> None:
    changed = copy.deepcopy(V1)
    next(f for f in changed["fields"] if f["name"] == "mcc")["type"] = "string"
    txn = {**transactions(1, seed=6)[0], "mcc": "5411"}
    data = codec(changed).encode("Transaction", txn)
    with pytest.raises(DecodeError) as info:
        codec(V1, changed).decode("Transaction", data)
    assert info.value.reason == "schema_mismatch"


# --------------------------------------------------------------------------- history


def test_every_current_schema_is_archived_in_history() -> None:
    """Changing a schema without keeping its predecessor would orphan old data."""
    archived = {read_version(p).fingerprint for p in HISTORY}
    for name in REPO.names:
        current = REPO.current(name)
        assert current.fingerprint in archived, (
            f"{current.source} is not in schemas/{HISTORY_DIR}/: copy it there as a new "
            f"version, keeping the old ones (see schemas/README.md)"
        )


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
def test_history_versions_are_compatible_with_the_current_both_ways(path: Path) -> None:
    old = avro.schema.parse(path.read_text())
    name = read_version(path).name
    current = avro.schema.parse(json.dumps(REPO.current(name).schema))
    checker = ReaderWriterCompatibilityChecker()
    for reader, writer in ((current, old), (old, current)):
        result = checker.get_compatibility(reader, writer)
        assert result.compatibility is SchemaCompatibilityType.compatible, result.messages


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
def test_history_versions_round_trip_through_the_repo_codec(path: Path) -> None:
    version = read_version(path)
    writer = Codec.from_schemas([version.schema])
    assert version.fingerprint in {v.fingerprint for v in REPO.known_versions(version.name)}
    rng = random.Random(path.name)
    for _ in range(50):
        record = sample_record(version, rng)
        decoded = REPO.decode(version.name, writer.encode(version.name, record))
        assert REPO.decode(version.name, REPO.encode(version.name, decoded)) == decoded
        if version.fingerprint == REPO.fingerprint(version.name):
            assert decoded == record


def test_v2_test_schema_is_compatible_with_v1_both_ways() -> None:
    v1 = avro.schema.parse(json.dumps(V1))
    v2 = avro.schema.parse(json.dumps(V2))
    checker = ReaderWriterCompatibilityChecker()
    assert checker.get_compatibility(v1, v2).compatibility is SchemaCompatibilityType.compatible
    assert checker.get_compatibility(v2, v1).compatibility is SchemaCompatibilityType.compatible
