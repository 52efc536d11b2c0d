"""Avro single-object encoding of our records, with no schema registry.

Wire format (Avro spec, "Single object encoding")::

    C3 01 | CRC-64-AVRO fingerprint of the writer schema, 8 bytes little-endian | body

Any Avro implementation can identify the writer schema from the fingerprint. Readers
keep a table of every known writer version (``schemas/*.avsc`` plus
``schemas/history/*.avsc``) and resolve an older or newer writer's record to the
current schema by Avro's resolution rules.

In memory a record is a plain dict: timestamps are int epoch milliseconds (UTC), enums
their symbol string, optional fields ``None``. Decoding is strict: anything but the one
canonical encoding of a valid record raises :class:`DecodeError` with a ``reason`` slug
(see :class:`DecodeReason`), never a partial record and never another exception type,
so a consumer can route every bad message to its dead-letter topic.

Usage::

    codec = Codec.load()
    data = codec.encode("Transaction", txn)
    txn2 = codec.decode("Transaction", data)
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from services.core.avro_read import Reader, compile_reader
from services.core.avro_write import Writer, compile_writer
from services.core.codec_errors import (
    DecodeError,
    DecodeReason,
    EncodeError,
    EncodeReason,
    SchemaError,
)
from services.core.schemas import (
    SchemaSet,
    SchemaVersion,
    build_schema_set,
    load_schema_dir,
    parse_version,
)

__all__ = [
    "HEADER_LEN",
    "MAGIC",
    "Codec",
    "DecodeError",
    "DecodeReason",
    "EncodeError",
    "EncodeReason",
    "SchemaError",
    "SchemaVersion",
    "default_schemas_dir",
]

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8

Record = dict[str, Any]


def default_schemas_dir() -> Path:
    """The repository's ``schemas/`` directory, found relative to the package."""
    import services

    return Path(services.__file__).resolve().parents[1] / "schemas"


@dataclass(frozen=True)
class _Decoder:
    version: SchemaVersion
    read: Reader
    # None when the writer is the current version; else maps a body to the current schema
    resolve: Callable[[bytes], Record] | None


class Codec:
    """Encoder and strict decoder for a set of schema versions. Thread-safe, immutable."""

    def __init__(self, schema_set: SchemaSet) -> None:
        self._set = schema_set
        self._writers: dict[str, tuple[bytes, Writer]] = {
            name: (MAGIC + v.fingerprint, compile_writer(v.parsed, v.named))
            for name, v in schema_set.current.items()
        }
        # Keyed by the whole 10-byte header (marker + fingerprint) the version writes.
        self._by_header: dict[bytes, _Decoder] = {}
        for fp, version in schema_set.known.items():
            current = schema_set.current[version.name]
            resolve = None if current.fingerprint == fp else _resolver(version, current)
            read = compile_reader(version.parsed, version.named)
            self._by_header[MAGIC + fp] = _Decoder(version, read, resolve)

    @classmethod
    def load(cls, schemas_dir: Path | None = None) -> Codec:
        """Load ``<dir>/*.avsc`` and ``<dir>/history/*.avsc`` (default: the repo's schemas/).

        Raises :class:`SchemaError` (one line) for a missing, unreadable or invalid file.
        """
        return cls(load_schema_dir(schemas_dir or default_schemas_dir()))

    @classmethod
    def from_schemas(
        cls, current: Iterable[Mapping[str, Any]], history: Iterable[Mapping[str, Any]] = ()
    ) -> Codec:
        """Build from schema JSON objects instead of files (tests, tools)."""
        return cls(build_schema_set([parse_version(s) for s in current], [parse_version(s) for s in history]))

    # ----------------------------------------------------------------- introspection

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._set.current))

    def current(self, name: str) -> SchemaVersion:
        """The current (writer and reader) version of record type ``name``."""
        try:
            return self._set.current[name]
        except KeyError:
            raise KeyError(f"no record type {name!r}; known: {', '.join(self.names)}") from None

    def fingerprint(self, name: str) -> bytes:
        """The 8-byte fingerprint the current version of ``name`` writes."""
        return self.current(name).fingerprint

    def known_versions(self, name: str) -> list[SchemaVersion]:
        """Every version of ``name`` this codec decodes, the current one first."""
        current = self.current(name)
        others = [v for v in self._set.known.values() if v.name == name and v is not current]
        return [current, *others]

    def peek(self, data: bytes | None) -> SchemaVersion:
        """The writer version named by the header of ``data``; raises :class:`DecodeError`."""
        return self._writer_of(_as_bytes(data) if type(data) is not bytes else data).version

    # ----------------------------------------------------------------- encode

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Encode with the current schema. Raises :class:`EncodeError` (a ``ValueError``)."""
        try:
            header, write = self._writers[name]
        except KeyError:
            raise EncodeError(EncodeReason.UNKNOWN_TYPE, f"no record type {name!r}") from None
        out = bytearray(header)
        try:
            write(out, record)
        except EncodeError as exc:
            raise EncodeError(exc.reason, exc.message, (name, *exc.path)) from None
        except RecursionError:
            raise EncodeError(EncodeReason.OUT_OF_RANGE, f"{name}: nested too deep") from None
        return bytes(out)

    def encode_many(self, name: str, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        return [self.encode(name, record) for record in records]

    # ----------------------------------------------------------------- decode

    def decode(self, name: str, data: bytes | None) -> Record:
        """Decode bytes written by any known version of ``name`` into the current schema.

        Raises :class:`DecodeError` for every kind of bad input; ``KeyError`` only for a
        record type name this codec does not know (a programming error).
        """
        if type(data) is not bytes:
            data = _as_bytes(data)
        # Hot path: one slice and one dict lookup find the writer version by its header.
        decoder = self._by_header.get(data[:HEADER_LEN])
        if decoder is None or decoder.version.name != name:
            decoder = self._diagnose_header(name, data)
        try:
            record, end = decoder.read(data, HEADER_LEN)
        except DecodeError as exc:
            raise DecodeError(exc.reason, f"{name}: {exc.detail}") from None
        except (IndexError, struct.error):
            raise DecodeError(DecodeReason.TRUNCATED, f"{name}: the body ends early") from None
        except RecursionError:
            raise DecodeError(DecodeReason.OUT_OF_RANGE, f"{name}: nested too deep") from None
        if end != len(data):
            raise DecodeError(
                DecodeReason.TRAILING_BYTES, f"{name}: {len(data) - end} bytes after the record"
            )
        if decoder.resolve is not None:
            return decoder.resolve(data[HEADER_LEN:])
        return record

    def decode_many(self, name: str, items: Iterable[bytes | None]) -> list[Record | DecodeError]:
        """Decode a batch; a bad item becomes its :class:`DecodeError` in the result."""
        out: list[Record | DecodeError] = []
        for data in items:
            try:
                out.append(self.decode(name, data))
            except DecodeError as exc:
                out.append(exc)
        return out

    def _diagnose_header(self, name: str, data: bytes) -> _Decoder:
        """The slow path of the header check: which error, exactly (or the decoder)."""
        self.current(name)  # an unknown name is a KeyError, whatever the data
        decoder = self._writer_of(data)
        if decoder.version.name != name:
            raise DecodeError(
                DecodeReason.SCHEMA_MISMATCH,
                f"fingerprint {decoder.version.fingerprint.hex()} is a {decoder.version.name}"
                f" schema, not {name}",
            )
        return decoder

    def _writer_of(self, data: bytes) -> _Decoder:
        if data[:2] != MAGIC:
            if 0 < len(data) < 2 and MAGIC.startswith(data):
                raise DecodeError(DecodeReason.TRUNCATED, "the header ends early")
            raise DecodeError(DecodeReason.BAD_MARKER, "not Avro single-object encoding")
        if len(data) < HEADER_LEN:
            raise DecodeError(DecodeReason.TRUNCATED, "the fingerprint ends early")
        decoder = self._by_header.get(data[:HEADER_LEN])
        if decoder is None:
            raise DecodeError(
                DecodeReason.UNKNOWN_FINGERPRINT,
                f"no known schema has fingerprint {data[2:HEADER_LEN].hex()}",
            )
        return decoder


def _as_bytes(data: bytes | bytearray | memoryview | None) -> bytes:
    if data is None:  # a Kafka tombstone: bad data, not a programming error
        raise DecodeError(DecodeReason.BAD_MARKER, "no value (a tombstone?)")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"decode takes bytes, not {type(data).__name__}")
    return bytes(data)


def _resolver(writer: SchemaVersion, reader: SchemaVersion) -> Callable[[bytes], Record]:
    """Avro schema resolution from an older or newer writer version, done by fastavro.

    Only called on a body our strict reader has already accepted with the writer schema,
    so whatever fastavro raises here is a resolution failure.
    """

    def resolve(body: bytes) -> Record:
        try:
            record = fastavro.schemaless_reader(io.BytesIO(body), writer.parsed, reader.parsed)
        except Exception as exc:  # SchemaResolutionError and friends, all one outcome
            raise DecodeError(
                DecodeReason.SCHEMA_MISMATCH,
                f"{reader.name}: writer version {writer.fingerprint.hex()} does not resolve "
                f"to the current schema ({type(exc).__name__})",
            ) from None
        assert isinstance(record, dict)
        return record

    return resolve
