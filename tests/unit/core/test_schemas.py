"""Loading the schema files: every broken input is a one-line SchemaError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from services.core.codec import Codec, SchemaError, default_schemas_dir
from services.core.schemas import load_schema_dir, strip_logical_types

LABEL = json.loads((default_schemas_dir() / "label.avsc").read_text())


def schemas_dir(tmp_path: Path, files: dict[str, Any], history: dict[str, Any] | None = None) -> Path:
    root = tmp_path / "schemas"
    (root / "history").mkdir(parents=True)
    for name, content in files.items():
        text = content if isinstance(content, str) else json.dumps(content)
        (root / name).write_text(text)
    for name, content in (history or {}).items():
        (root / "history" / name).write_text(json.dumps(content))
    return root


def load_error(path: Path) -> str:
    with pytest.raises(SchemaError) as info:
        Codec.load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_repo_schemas_load_with_their_history() -> None:
    schema_set = load_schema_dir(default_schemas_dir())
    assert set(schema_set.current) == {"Transaction", "Score", "Label", "RetrainEvent", "ModelUpdate"}
    assert all(v.fullname.startswith("io.fraudstream.") for v in schema_set.current.values())


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    assert "does not exist" in load_error(tmp_path / "nope")
    assert "no *.avsc" in load_error(schemas_dir(tmp_path, {}))


def test_unreadable_json(tmp_path: Path) -> None:
    assert "label.avsc: cannot read schema" in load_error(
        schemas_dir(tmp_path, {"label.avsc": '{"type": "record",'})
    )


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "record", "name": "Label", "fields": [{"name": "x", "type": "strnig"}]},
        {"type": "record", "name": "Label", "fields": [{"name": "x", "type": "int", "default": "a"}]},
        {"type": "record", "name": "Label", "fields": [
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "A"]}}]},
    ],
)  # fmt: skip
def test_invalid_schemas(tmp_path: Path, schema: dict[str, Any]) -> None:
    assert "invalid Avro schema" in load_error(schemas_dir(tmp_path, {"label.avsc": schema}))


def test_a_file_must_hold_a_record(tmp_path: Path) -> None:
    message = load_error(schemas_dir(tmp_path, {"x.avsc": {"type": "enum", "name": "E", "symbols": ["A"]}}))
    assert "one record schema" in message


def test_two_current_files_for_one_record(tmp_path: Path) -> None:
    message = load_error(schemas_dir(tmp_path, {"a.avsc": LABEL, "b.avsc": LABEL}))
    assert "two current schemas for Label" in message


def test_history_of_an_unknown_record(tmp_path: Path) -> None:
    other = {**LABEL, "name": "Refund"}
    message = load_error(schemas_dir(tmp_path, {"label.avsc": LABEL}, {"refund.v1.avsc": other}))
    assert "no current schema for Refund" in message


def test_history_with_another_namespace(tmp_path: Path) -> None:
    other = {**LABEL, "namespace": "com.example"}
    message = load_error(schemas_dir(tmp_path, {"label.avsc": LABEL}, {"label.v0.avsc": other}))
    assert "com.example.Label" in message


def test_duplicate_history_entries_are_harmless(tmp_path: Path) -> None:
    root = schemas_dir(tmp_path, {"label.avsc": LABEL}, {"label.v1.avsc": LABEL})
    shutil.copy(root / "history" / "label.v1.avsc", root / "history" / "label.copy.avsc")
    assert len(Codec.load(root).known_versions("Label")) == 1


def test_strip_logical_types_keeps_everything_else() -> None:
    stripped = strip_logical_types(LABEL)
    label_time = next(f for f in stripped["fields"] if f["name"] == "label_time")
    assert label_time["type"] == {"type": "long"}
    assert label_time["doc"] and stripped["doc"] == LABEL["doc"]
    assert "logicalType" in json.dumps(LABEL)  # the input is not modified
