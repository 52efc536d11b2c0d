"""Avro binary encoding with type checks, compiled once per schema into plain closures.

Why not ``fastavro.schemaless_writer``: it silently truncates ``1.5`` into an ``int``
field, writes a 40-bit number into an ``int`` field (bytes no strict reader accepts) and
ignores unknown keys unless asked. Here a record that does not fit its schema raises
:class:`EncodeError` naming the field, and the bytes written are the one canonical
encoding the strict reader in :mod:`services.core.avro_read` accepts.

A compiled writer is ``write(out: bytearray, value) -> None``. Missing fields with a
schema default are written from the default (pre-encoded at compile time); unknown keys
are refused so that a typo in a field name fails loudly.
"""

from __future__ import annotations

import numbers
import re
import struct
from collections.abc import Callable, Mapping
from typing import Any

from services.core.avro_compile import SchemaCompiler, schema_type
from services.core.avro_read import INT_MAX, INT_MIN
from services.core.codec_errors import EncodeError, EncodeReason, SchemaError

Writer = Callable[[bytearray, Any], None]

LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
_MISSING = object()
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def _shown_key(key: object) -> str:
    """A key as error messages show it: field-like names as they are, anything else
    (which could be an id a caller used as a key by mistake) as ``?``."""
    return key if isinstance(key, str) and _IDENTIFIER.fullmatch(key) else "?"


def _wrong(expected: str, value: object) -> EncodeError:
    return EncodeError(EncodeReason.WRONG_TYPE, f"expected {expected}, got {type(value).__name__}")


# --------------------------------------------------------------------------- primitives


def write_varint(out: bytearray, value: int) -> None:
    """Zig-zag varint of a value already known to be in the 64-bit range."""
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _as_integer(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)  # numpy integers
    raise _wrong("int", value)


def write_int(out: bytearray, value: Any) -> None:
    value = _as_integer(value)
    if not INT_MIN <= value <= INT_MAX:
        raise EncodeError(EncodeReason.OUT_OF_RANGE, "int value outside 32 bits")
    write_varint(out, value)


def write_long(out: bytearray, value: Any) -> None:
    value = _as_integer(value)
    if not LONG_MIN <= value <= LONG_MAX:
        raise EncodeError(EncodeReason.OUT_OF_RANGE, "long value outside 64 bits")
    write_varint(out, value)


def _as_real(value: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return float(value)  # ints, numpy floats
        except OverflowError:
            raise EncodeError(EncodeReason.OUT_OF_RANGE, "number too large for double") from None
    raise _wrong("float", value)


def write_double(out: bytearray, value: Any) -> None:
    out += _pack_double(_as_real(value))


def write_float(out: bytearray, value: Any) -> None:
    try:
        out += _pack_float(_as_real(value))
    except OverflowError:
        raise EncodeError(EncodeReason.OUT_OF_RANGE, "number too large for float") from None


def write_null(out: bytearray, value: Any) -> None:
    if value is not None:
        raise _wrong("None", value)


def write_boolean(out: bytearray, value: Any) -> None:
    if value is True:
        out.append(1)
    elif value is False:
        out.append(0)
    else:
        raise _wrong("bool", value)


def write_string(out: bytearray, value: Any) -> None:
    if not isinstance(value, str):
        raise _wrong("str", value)
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError(EncodeReason.INVALID_VALUE, "string has lone surrogates") from None
    write_varint(out, len(data))
    out += data


def write_bytes(out: bytearray, value: Any) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise _wrong("bytes", value)
    write_varint(out, len(value))
    out += value


PRIMITIVE_WRITERS: dict[str, Writer] = {
    "null": write_null,
    "boolean": write_boolean,
    "int": write_int,
    "long": write_long,
    "float": write_float,
    "double": write_double,
    "bytes": write_bytes,
    "string": write_string,
}


def _as_list(value: Any) -> list[Any] | tuple[Any, ...]:
    if isinstance(value, list | tuple):
        return value
    if hasattr(value, "tolist") and not isinstance(value, memoryview):  # numpy, array.array
        listed = value.tolist()
        if isinstance(listed, list):
            return listed
    raise _wrong("list", value)


# --------------------------------------------------------------------------- complex types


def _record_writer(fields: list[tuple[str, Writer, bytes | None]]) -> Writer:
    count = len(fields)
    known = frozenset(name for name, _, _ in fields)

    def write_record(out: bytearray, record: Any) -> None:
        if type(record) is not dict and not isinstance(record, Mapping):
            raise _wrong("a mapping", record)
        missing = 0
        for name, write, default in fields:
            value = record.get(name, _MISSING)
            if value is _MISSING:
                if default is None:
                    raise EncodeError(EncodeReason.MISSING_FIELD, "field is required", (name,))
                out += default
                missing += 1
                continue
            try:
                write(out, value)
            except EncodeError as exc:
                raise exc.under(name) from None
        if len(record) + missing != count:
            extra = sorted(_shown_key(k) for k in record if k not in known)
            raise EncodeError(EncodeReason.UNKNOWN_FIELD, f"unknown fields {', '.join(extra[:3])}")

    return write_record


def _enum_writer(name: str, symbols: list[str]) -> Writer:
    index = {symbol: i for i, symbol in enumerate(symbols)}

    def write_enum(out: bytearray, value: Any) -> None:
        if not isinstance(value, str):
            raise _wrong(f"a {name} symbol (str)", value)
        i = index.get(value)
        if i is None:
            raise EncodeError(EncodeReason.INVALID_VALUE, f"not a {name} symbol")
        write_varint(out, i)

    return write_enum


def _fixed_writer(size: int) -> Writer:
    def write_fixed(out: bytearray, value: Any) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise _wrong("bytes", value)
        if len(value) != size:
            raise EncodeError(EncodeReason.INVALID_VALUE, f"fixed needs {size} bytes")
        out += value

    return write_fixed


def _optional_writer(write_value: Writer) -> Writer:
    def write_optional(out: bytearray, value: Any) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(2)
            write_value(out, value)

    return write_optional


def _union_writer(branches: list[tuple[Callable[[Any], bool], Writer]]) -> Writer:
    def write_union(out: bytearray, value: Any) -> None:
        for index, (matches, write) in enumerate(branches):
            if matches(value):
                write_varint(out, index)
                write(out, value)
                return
        raise _wrong("a value of one of the union's types", value)

    return write_union


def _array_writer(write_item: Writer) -> Writer:
    def write_array(out: bytearray, value: Any) -> None:
        items = _as_list(value)
        if items:
            write_varint(out, len(items))
            for i, item in enumerate(items):
                try:
                    write_item(out, item)
                except EncodeError as exc:
                    raise exc.under(f"[{i}]") from None
        out.append(0)

    return write_array


def write_double_array(out: bytearray, value: Any) -> None:
    items = _as_list(value)
    if items:
        write_varint(out, len(items))
        try:
            out += struct.pack(f"<{len(items)}d", *items)
        except (struct.error, TypeError, OverflowError):  # find the culprit, slowly
            for i, item in enumerate(items):
                try:
                    write_double(bytearray(), item)
                except EncodeError as exc:
                    raise exc.under(f"[{i}]") from None
            raise _wrong("a list of floats", value) from None
    out.append(0)


def _map_writer(write_value: Writer) -> Writer:
    def write_map(out: bytearray, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise _wrong("a mapping", value)
        if value:
            write_varint(out, len(value))
            for key, item in value.items():
                label = f"[{_shown_key(key)}]"
                try:
                    write_string(out, key)
                    write_value(out, item)
                except EncodeError as exc:
                    raise exc.under(label) from None
        out.append(0)

    return write_map


# --------------------------------------------------------------------------- compiler


def compile_writer(schema: Any, named: Mapping[str, Any]) -> Writer:
    """Compile a fastavro-parsed schema; ``named`` maps full names to their definitions."""
    return _WriterCompiler(named).compile(schema)


def _is_bytes(value: Any) -> bool:
    return isinstance(value, bytes | bytearray | memoryview)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# Which union branch a value belongs to: the first whose test it passes.
_MATCHES: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "int": lambda v: _is_int(v) and INT_MIN <= int(v) <= INT_MAX,
    "long": _is_int,
    "float": _is_real,
    "double": _is_real,
    "bytes": _is_bytes,
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list | tuple) or hasattr(v, "tolist"),
    "map": lambda v: isinstance(v, Mapping),
    "record": lambda v: isinstance(v, Mapping),
    "error": lambda v: isinstance(v, Mapping),
}


class _WriterCompiler(SchemaCompiler[Writer]):
    def primitive(self, kind: str) -> Writer:
        return PRIMITIVE_WRITERS[kind]

    def union(self, branches: list[Any]) -> Writer:
        if len(branches) == 2 and schema_type(branches[0]) == "null":
            return _optional_writer(self.compile(branches[1]))
        return _union_writer([(self._matcher(b), self.compile(b)) for b in branches])

    def array(self, items: Any) -> Writer:
        if schema_type(items) == "double":
            return write_double_array
        return _array_writer(self.compile(items))

    def map(self, values: Any) -> Writer:
        return _map_writer(self.compile(values))

    def record(self, fields: list[Mapping[str, Any]]) -> Writer:
        compiled = []
        for field in fields:
            default = self._default(field) if "default" in field else None
            compiled.append((field["name"], self.compile(field["type"]), default))
        return _record_writer(compiled)

    def enum(self, name: str, symbols: list[str]) -> Writer:
        return _enum_writer(name, symbols)

    def fixed(self, size: int) -> Writer:
        return _fixed_writer(size)

    def forward(self, cell: list[Writer]) -> Writer:
        return lambda out, value: cell[0](out, value)

    def _matcher(self, branch: Any) -> Callable[[Any], bool]:
        node = self.resolve(branch)
        kind = schema_type(node)
        if kind == "enum":
            symbols = frozenset(node["symbols"])
            return lambda v: isinstance(v, str) and v in symbols
        if kind == "fixed":
            size = int(node["size"])
            return lambda v: _is_bytes(v) and len(v) == size
        return _MATCHES[kind]

    def _default(self, field: Mapping[str, Any]) -> bytes:
        """A field's default, encoded once. A union's default belongs to its first branch."""
        node, value = field["type"], field["default"]
        out = bytearray()
        try:
            if isinstance(node, list):
                out.append(0)
                node = node[0]
            if schema_type(self.resolve(node)) in ("bytes", "fixed") and isinstance(value, str):
                value = value.encode("latin-1")  # the spec's JSON form of a bytes default
            self.compile(node)(out, value)
        except (EncodeError, LookupError, TypeError, UnicodeEncodeError) as exc:
            raise SchemaError(f"field {field['name']!r}: default does not fit its type") from exc
        return bytes(out)
