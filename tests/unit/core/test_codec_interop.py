"""Interoperability: the wire format is plain Avro, readable without our code.

- Records we encode decode with the Apache ``avro`` package given only schemas/, and
  records it encodes (with a fingerprint computed here, independently) decode with ours;
  the bodies are byte-identical both ways, and identical to fastavro's.
- The fingerprints equal a small CRC-64-AVRO + Parsing Canonical Form implementation
  written here from the Avro spec, itself checked against the spec's test vectors.
"""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import avro.io
import avro.schema
import fastavro
import pytest

from services.core.codec import HEADER_LEN, MAGIC, Codec, default_schemas_dir
from services.core.schemas import (
    canonical_form,
    fingerprint_of,
    parse_version,
    strip_logical_types,
)
from tests.unit.core.codec_samples import sample_record

CODEC = Codec.load()
SCHEMA_FILES = sorted(default_schemas_dir().glob("*.avsc"))
ALL_SCHEMA_FILES = SCHEMA_FILES + sorted(default_schemas_dir().glob("history/*.avsc"))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# --------------------------------------------------------------------------- from the spec

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
EMPTY64 = 0xC15D213AA4D7A795
TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (EMPTY64 & -(_fp & 1))
    TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    fp = EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ byte) & 0xFF]
    return fp


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def canonical(schema: Any, namespace: str = "") -> str:
    """Parsing Canonical Form: [PRIMITIVES] [FULLNAMES] [STRIP] [ORDER] [STRINGS] [WHITESPACE]."""
    if isinstance(schema, str):
        return json.dumps(schema if schema in PRIMITIVES else _fullname(schema, namespace))
    if isinstance(schema, list):
        return "[" + ",".join(canonical(s, namespace) for s in schema) + "]"
    kind = schema["type"]
    if not isinstance(kind, str) or kind in PRIMITIVES:
        return canonical(kind, namespace)  # drops logicalType and every other attribute
    if kind == "array":
        return '{"type":"array","items":' + canonical(schema["items"], namespace) + "}"
    if kind == "map":
        return '{"type":"map","values":' + canonical(schema["values"], namespace) + "}"
    name = _fullname(schema["name"], schema.get("namespace", namespace))
    head = '{"name":' + json.dumps(name) + ',"type":'
    if kind == "enum":
        return head + '"enum","symbols":' + json.dumps(schema["symbols"], separators=(",", ":")) + "}"
    if kind == "fixed":
        return head + '"fixed","size":' + str(int(schema["size"])) + "}"
    inner = name.rpartition(".")[0]
    fields = ",".join(
        '{"name":' + json.dumps(f["name"]) + ',"type":' + canonical(f["type"], inner) + "}"
        for f in schema["fields"]
    )
    return head + '"record","fields":[' + fields + "]}"


def fingerprint_bytes(schema: Any) -> bytes:
    return crc64_avro(canonical(schema).encode("utf-8")).to_bytes(8, "little")


# From the Avro project's share/test/data/schema-tests.txt (fingerprints as Java longs).
SPEC_VECTORS = [
    ('"null"', 7195948357588979594),
    ('"int"', 8247732601305521295),
    ('{"type":"string"}', -8142146995180207161),
    ('{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}', 5916914534497305771),
    ('{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}',
     -4448647247586288245),
    ('{"name":"foo","type":"fixed","size":15}', 1756455273707447556),
    # (the suite's default "true" is a string; fastavro rightly refuses it, and defaults
    # are stripped from the canonical form anyway, so a boolean keeps the fingerprint)
    ('{"fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true},'
     '{"order":"descending","name":"f2","doc":"Hello","type":"int"}], "type":"record", "name":"foo"}',
     -4860222112080293046),
    ('{"name":"PigValue","type":"record",'
     '"fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
     -1759257747318642341),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), SPEC_VECTORS)
def test_reference_fingerprint_matches_the_spec_vectors(text: str, expected: int) -> None:
    signed = crc64_avro(canonical(json.loads(text)).encode())
    assert signed - (1 << 64) * (signed >> 63) == expected


@pytest.mark.parametrize(("text", "expected"), SPEC_VECTORS)
def test_schema_module_matches_the_spec_vectors(text: str, expected: int) -> None:
    schema = json.loads(text)
    assert fingerprint_of(schema) == expected.to_bytes(8, "little", signed=True)
    assert canonical_form(schema) == canonical(schema)


@pytest.mark.parametrize("path", ALL_SCHEMA_FILES, ids=lambda p: p.name)
def test_codec_fingerprints_equal_the_reference_implementation(path: Path) -> None:
    schema = json.loads(path.read_text())
    version = parse_version(schema, str(path))
    assert version.canonical_form == canonical(schema)
    assert version.fingerprint == fingerprint_bytes(schema)
    if path.parent == default_schemas_dir():
        assert CODEC.fingerprint(version.name) == fingerprint_bytes(schema)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_apache_avro_agrees_once_logical_types_are_stripped(path: Path) -> None:
    # avro-python 1.12 writes {"type":"long"} for a logical type in its canonical form,
    # unlike the spec's [PRIMITIVES] rule and Java; without logical types it agrees.
    stripped = strip_logical_types(json.loads(path.read_text()))
    parsed = avro.schema.parse(json.dumps(stripped))
    assert parsed.fingerprint("CRC-64-AVRO") == fingerprint_bytes(stripped)


# --------------------------------------------------------------------------- wire interop


def timestamp_paths(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where the timestamp-millis fields are, e.g. [("timings", "scored_at"), ...]."""
    found = []
    for field in node.get("fields", []):
        kind = field["type"]
        if isinstance(kind, dict) and kind.get("logicalType") == "timestamp-millis":
            found.append((*path, field["name"]))
        elif isinstance(kind, dict) and kind.get("type") == "record":
            found += timestamp_paths(kind, (*path, field["name"]))
    return found


def map_timestamps(record: dict[str, Any], paths: list[tuple[str, ...]], fn: Any) -> dict[str, Any]:
    out = _deep_copy(record)
    for path in paths:
        holder = out
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = fn(holder[path[-1]])
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def plausible_records(path: Path, count: int) -> list[dict[str, Any]]:
    """Seeded records whose timestamps a datetime can hold (avro-python converts them)."""
    schema = json.loads(path.read_text())
    rng = random.Random(path.name)
    version = CODEC.current(parse_version(schema).name)
    stamps = timestamp_paths(schema)
    return [
        map_timestamps(sample_record(version, rng), stamps, lambda _: rng.randint(0, 4 * 10**12))
        for _ in range(count)
    ]


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_apache_avro_reads_what_we_write(path: Path) -> None:
    raw = json.loads(path.read_text())
    schema = avro.schema.parse(path.read_text())
    reader = avro.io.DatumReader(schema)
    stamps = timestamp_paths(raw)
    for record in plausible_records(path, 50):
        data = CODEC.encode(parse_version(raw).name, record)
        assert data[:HEADER_LEN] == b"\xc3\x01" + fingerprint_bytes(raw)
        body = io.BytesIO(data[HEADER_LEN:])
        theirs = cast(dict[str, Any], reader.read(avro.io.BinaryDecoder(body)))
        assert body.tell() == len(data) - HEADER_LEN
        assert map_timestamps(theirs, stamps, to_ms) == record


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_we_read_what_apache_avro_writes(path: Path) -> None:
    raw = json.loads(path.read_text())
    schema = avro.schema.parse(path.read_text())
    writer = avro.io.DatumWriter(schema)
    header = MAGIC + fingerprint_bytes(raw)  # computed here, not by the codec
    name = parse_version(raw).name
    stamps = timestamp_paths(raw)
    for record in plausible_records(path, 50):
        body = io.BytesIO()
        writer.write(map_timestamps(record, stamps, to_datetime), avro.io.BinaryEncoder(body))
        data = header + body.getvalue()
        assert CODEC.decode(name, data) == record
        assert CODEC.encode(name, record) == data


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_fastavro_writes_the_same_bodies(path: Path) -> None:
    raw = json.loads(path.read_text())
    parsed = fastavro.parse_schema(strip_logical_types(raw))
    name = parse_version(raw).name
    for record in plausible_records(path, 50):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed, record)
        assert CODEC.encode(name, record)[HEADER_LEN:] == body.getvalue()
