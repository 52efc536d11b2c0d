"""The schema files: parsing, fingerprints, and the table of known writer versions.

``schemas/*.avsc`` are the current versions, one record type per file; they are what
we write and the reader schemas we resolve to. ``schemas/history/*.avsc`` are every
other version a reader must recognise: every version ever released (so old data still
decodes) and, during a rollout, the next one (so readers learn it before writers use it).

A version is identified by its CRC-64-AVRO (Rabin) fingerprint of the Parsing Canonical
Form, as the Avro spec defines for single-object encoding. fastavro computes both; its
canonical form is checked against the spec by tests/unit/core/test_codec_interop.py.
(The Apache ``avro`` Python package keeps ``{"type":"long"}`` for logical types in its
canonical form, unlike the spec and the Java reference, so its fingerprints differ for
schemas with timestamps; we follow the spec.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint as _fingerprint_hex
from fastavro.schema import to_parsing_canonical_form

from services.core.codec_errors import SchemaError

HISTORY_DIR = "history"


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per file
class SchemaVersion:
    """One version of one record type."""

    name: str  # the record's short name, e.g. "Transaction"
    fullname: str  # e.g. "io.fraudstream.Transaction"
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as on the wire
    canonical_form: str
    source: str  # the file it came from, for messages
    schema: Mapping[str, Any] = field(repr=False)  # the JSON as written
    # fastavro-parsed copy without logical types (timestamps stay ints), plus its named types
    parsed: Any = field(repr=False)
    named: Mapping[str, Any] = field(repr=False)


def rabin_fingerprint(canonical_form: str) -> bytes:
    """CRC-64-AVRO of a canonical form, as the 8 little-endian bytes of the wire format."""
    return bytes.fromhex(_fingerprint_hex(canonical_form, "CRC-64-AVRO"))


def canonical_form(schema: Any) -> str:
    """The Parsing Canonical Form of any schema (fastavro's, checked by the tests)."""
    return str(to_parsing_canonical_form(schema))


def fingerprint_of(schema: Any) -> bytes:
    """The single-object-encoding fingerprint of any schema."""
    return rabin_fingerprint(canonical_form(schema))


def strip_logical_types(node: Any) -> Any:
    """A copy without ``logicalType``: we carry every logical type as its physical value."""
    if isinstance(node, dict):
        return {k: strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [strip_logical_types(v) for v in node]
    return node


def parse_version(schema: Mapping[str, Any], source: str = "<memory>") -> SchemaVersion:
    """Validate one record schema and compute its identity."""
    if not isinstance(schema, Mapping) or schema.get("type") not in ("record", "error"):
        raise SchemaError(f"{source}: a schema file must hold one record schema")
    try:
        canonical = canonical_form(dict(schema))
        named: dict[str, Any] = {}
        parsed = cast(
            dict[str, Any],
            fastavro.parse_schema(strip_logical_types(dict(schema)), named_schemas=named),
        )
    except Exception as exc:  # fastavro raises several types for one thing: a bad schema
        raise SchemaError(f"{source}: invalid Avro schema: {_one_line(exc)}") from exc
    fullname = str(parsed["name"])
    return SchemaVersion(
        name=fullname.rpartition(".")[2],
        fullname=fullname,
        fingerprint=rabin_fingerprint(canonical),
        canonical_form=canonical,
        source=source,
        schema=schema,
        parsed=parsed,
        named=named,
    )


def read_version(path: Path) -> SchemaVersion:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read schema: {_one_line(exc)}") from exc
    return parse_version(schema, str(path))


@dataclass(frozen=True)
class SchemaSet:
    """Current versions by record name, and every known version by fingerprint."""

    current: Mapping[str, SchemaVersion]
    known: Mapping[bytes, SchemaVersion]


def build_schema_set(current: Sequence[SchemaVersion], others: Sequence[SchemaVersion] = ()) -> SchemaSet:
    by_name: dict[str, SchemaVersion] = {}
    for version in current:
        if version.name in by_name:
            raise SchemaError(
                f"two current schemas for {version.name}: {by_name[version.name].source} and {version.source}"
            )
        by_name[version.name] = version
    known = {v.fingerprint: v for v in current}
    for version in others:
        if version.name not in by_name:
            raise SchemaError(f"{version.source}: no current schema for {version.name}")
        if by_name[version.name].fullname != version.fullname:
            raise SchemaError(f"{version.source}: {version.fullname} is not {version.name}'s name")
        known.setdefault(version.fingerprint, version)  # the current file wins a tie
    return SchemaSet(current=by_name, known=known)


def load_schema_dir(schemas_dir: Path) -> SchemaSet:
    """Read ``<dir>/*.avsc`` (current) and ``<dir>/history/*.avsc`` (other versions)."""
    if not schemas_dir.is_dir():
        raise SchemaError(f"schema directory {schemas_dir} does not exist")
    current = [read_version(p) for p in sorted(schemas_dir.glob("*.avsc"))]
    if not current:
        raise SchemaError(f"no *.avsc files in {schemas_dir}")
    history = [read_version(p) for p in sorted((schemas_dir / HISTORY_DIR).glob("*.avsc"))]
    return build_schema_set(current, history)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__
