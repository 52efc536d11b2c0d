"""Strict Avro binary decoding, compiled once per schema into plain closures.

Why not ``fastavro.schemaless_reader``: it is lenient where we must be strict. It reads
a negative enum or union index as Python's ``symbols[-1]``, any non-zero byte as
``True``, a 40-bit value into an ``int`` field, overlong varints and negative block
counts, and it raises half a dozen exception types. A decoder that accepts several byte
strings for one record cannot promise that what it accepted re-encodes to the same bytes,
and a dead-letter queue needs one typed error per failure. This module accepts exactly
one encoding per value (the one every mainstream writer produces) and raises only
:class:`DecodeError`; on our records it is also faster than fastavro.

A compiled reader is ``read(buf, pos) -> (value, new_pos)`` over ``bytes``. Running past
the end shows up as ``IndexError`` or ``struct.error``; :mod:`services.core.codec` turns
those into ``truncated``. Values are plain: records are dicts, enums their symbol, unions
the branch's value, logical types their physical value (timestamp-millis is an int).
Schemas are fastavro-parsed (full names, later uses of a named type by name).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from services.core.avro_compile import PRIMITIVES, SchemaCompiler, schema_type
from services.core.codec_errors import DecodeError, DecodeReason

Reader = Callable[[bytes, int], tuple[Any, int]]

INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
# Arrays and maps of zero-width items (null, empty records) cannot be bounded by the
# bytes that remain, so they get a fixed cap instead; nothing of ours comes near it.
MAX_ZERO_WIDTH_ITEMS = 1 << 16


_unpack_double = struct.Struct("<d").unpack_from
_unpack_float = struct.Struct("<f").unpack_from


def _fail(reason: DecodeReason, detail: str) -> DecodeError:
    return DecodeError(reason, detail)


# --------------------------------------------------------------------------- primitives


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    return _read_long_multibyte(buf, pos)


def _read_long_multibyte(buf: bytes, pos: int) -> tuple[int, int]:
    start = pos
    n = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift >= 70:
            raise _fail(DecodeReason.OUT_OF_RANGE, f"varint longer than 10 bytes at byte {start}")
    if b == 0:
        raise _fail(DecodeReason.NON_CANONICAL, f"overlong varint at byte {start}")
    if n >> 64:
        raise _fail(DecodeReason.OUT_OF_RANGE, f"varint wider than 64 bits at byte {start}")
    return (n >> 1) ^ -(n & 1), pos


def read_int(buf: bytes, pos: int) -> tuple[int, int]:
    value, end = read_long(buf, pos)
    if not INT_MIN <= value <= INT_MAX:
        raise _fail(DecodeReason.OUT_OF_RANGE, f"int wider than 32 bits at byte {pos}")
    return value, end


def read_null(buf: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def read_boolean(buf: bytes, pos: int) -> tuple[bool, int]:
    b = buf[pos]
    if b > 1:
        raise _fail(DecodeReason.OUT_OF_RANGE, f"boolean byte {b} (not 0 or 1) at byte {pos}")
    return b == 1, pos + 1


def read_double(buf: bytes, pos: int) -> tuple[float, int]:
    return _unpack_double(buf, pos)[0], pos + 8


def read_float(buf: bytes, pos: int) -> tuple[float, int]:
    return _unpack_float(buf, pos)[0], pos + 4


def _read_length(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    n = buf[pos]
    if n < 0x80:
        n = (n >> 1) ^ -(n & 1)
        end = pos + 1
    else:
        n, end = _read_long_multibyte(buf, pos)
    if n < 0:
        raise _fail(DecodeReason.OUT_OF_RANGE, f"negative {what} length at byte {pos}")
    if end + n > len(buf):
        raise _fail(DecodeReason.TRUNCATED, f"{what} of {n} bytes runs past the end at byte {pos}")
    return n, end


def read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _read_length(buf, pos, "bytes")
    return buf[pos : pos + n], pos + n


def read_string(buf: bytes, pos: int) -> tuple[str, int]:
    b = buf[pos]
    if b < 0x80 and not b & 1 and pos + 1 + (b >> 1) <= len(buf):  # short string, inline
        start, end = pos + 1, pos + 1 + (b >> 1)
    else:
        n, start = _read_length(buf, pos, "string")
        end = start + n
    try:
        return buf[start:end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise _fail(DecodeReason.INVALID_VALUE, f"string at byte {pos} is not UTF-8") from None


PRIMITIVE_READERS: dict[str, Reader] = {
    "null": read_null,
    "boolean": read_boolean,
    "int": read_int,
    "long": read_long,
    "float": read_float,
    "double": read_double,
    "bytes": read_bytes,
    "string": read_string,
}
_PRIMITIVE_WIDTH = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8}


# --------------------------------------------------------------------------- complex types


def _record_reader(fields: list[tuple[str, Reader]]) -> Reader:
    def read_record(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        for name, read in fields:
            out[name], pos = read(buf, pos)
        return out, pos

    return read_record


def _enum_reader(name: str, symbols: tuple[str, ...]) -> Reader:
    count = len(symbols)

    def read_enum(buf: bytes, pos: int) -> tuple[str, int]:
        index, end = read_long(buf, pos)
        if not 0 <= index < count:
            raise _fail(DecodeReason.OUT_OF_RANGE, f"{name} index {index} at byte {pos}")
        return symbols[index], end

    return read_enum


def _fixed_reader(size: int) -> Reader:
    def read_fixed(buf: bytes, pos: int) -> tuple[bytes, int]:
        end = pos + size
        if end > len(buf):
            raise _fail(DecodeReason.TRUNCATED, f"fixed({size}) runs past the end at byte {pos}")
        return buf[pos:end], end

    return read_fixed


def _optional_reader(read_value: Reader) -> Reader:
    """``["null", X]``, the only union shape in our schemas: one byte picks the branch."""

    def read_optional(buf: bytes, pos: int) -> tuple[Any, int]:
        b = buf[pos]
        if b == 0:
            return None, pos + 1
        if b == 2:
            return read_value(buf, pos + 1)
        index, _ = read_long(buf, pos)  # overlong zero/one -> non_canonical, else range
        raise _fail(DecodeReason.OUT_OF_RANGE, f"union index {index} at byte {pos}")

    return read_optional


def _union_reader(branches: tuple[Reader, ...]) -> Reader:
    count = len(branches)

    def read_union(buf: bytes, pos: int) -> tuple[Any, int]:
        index, end = read_long(buf, pos)
        if not 0 <= index < count:
            raise _fail(DecodeReason.OUT_OF_RANGE, f"union index {index} at byte {pos}")
        return branches[index](buf, end)

    return read_union


def _block_count(buf: bytes, pos: int, what: str, item_width: int) -> tuple[int, int]:
    """The item count of an array or map, written as one block (Avro allows several)."""
    count, end = read_long(buf, pos)
    if count < 0:
        raise _fail(DecodeReason.NON_CANONICAL, f"{what} block with byte size at byte {pos}")
    if item_width:
        if count * item_width > len(buf) - end:
            raise _fail(DecodeReason.TRUNCATED, f"{what} of {count} items runs past the end")
    elif count > MAX_ZERO_WIDTH_ITEMS:
        raise _fail(DecodeReason.OUT_OF_RANGE, f"{what} of {count} zero-width items")
    return count, end


def _block_end(buf: bytes, pos: int, what: str) -> int:
    if buf[pos] != 0:
        raise _fail(DecodeReason.NON_CANONICAL, f"{what} in several blocks at byte {pos}")
    return pos + 1


def _array_reader(read_item: Reader, item_width: int) -> Reader:
    def read_array(buf: bytes, pos: int) -> tuple[list[Any], int]:
        count, pos = _block_count(buf, pos, "array", item_width)
        items: list[Any] = []
        if count == 0:
            return items, pos
        append = items.append
        for _ in range(count):
            item, pos = read_item(buf, pos)
            append(item)
        return items, _block_end(buf, pos, "array")

    return read_array


def read_double_array(buf: bytes, pos: int) -> tuple[list[float], int]:
    """Arrays of doubles (feature vectors) in one ``struct`` call instead of n calls."""
    count, pos = _block_count(buf, pos, "array", 8)
    if count == 0:
        return [], pos
    items = list(struct.unpack_from(f"<{count}d", buf, pos))
    return items, _block_end(buf, pos + 8 * count, "array")


def _map_reader(read_value: Reader) -> Reader:
    def read_map(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
        start = pos
        count, pos = _block_count(buf, pos, "map", 1)
        out: dict[str, Any] = {}
        if count == 0:
            return out, pos
        for _ in range(count):
            key, pos = read_string(buf, pos)
            out[key], pos = read_value(buf, pos)
        if len(out) != count:  # a repeated key would silently drop an entry
            raise _fail(DecodeReason.INVALID_VALUE, f"duplicate key in map at byte {start}")
        return out, _block_end(buf, pos, "map")

    return read_map


# --------------------------------------------------------------------------- compiler


def compile_reader(schema: Any, named: Mapping[str, Any]) -> Reader:
    """Compile a fastavro-parsed schema; ``named`` maps full names to their definitions."""
    return _ReaderCompiler(named).compile(schema)


class _ReaderCompiler(SchemaCompiler[Reader]):
    def primitive(self, kind: str) -> Reader:
        return PRIMITIVE_READERS[kind]

    def union(self, branches: list[Any]) -> Reader:
        compiled = tuple(self.compile(b) for b in branches)
        if len(branches) == 2 and schema_type(branches[0]) == "null":
            return _optional_reader(compiled[1])
        return _union_reader(compiled)

    def array(self, items: Any) -> Reader:
        if schema_type(items) == "double":
            return read_double_array
        return _array_reader(self.compile(items), self.width(items))

    def map(self, values: Any) -> Reader:
        return _map_reader(self.compile(values))

    def record(self, fields: list[Mapping[str, Any]]) -> Reader:
        return _record_reader([(f["name"], self.compile(f["type"])) for f in fields])

    def enum(self, name: str, symbols: list[str]) -> Reader:
        return _enum_reader(name, tuple(symbols))

    def fixed(self, size: int) -> Reader:
        return _fixed_reader(size)

    def forward(self, cell: list[Reader]) -> Reader:
        return lambda buf, pos: cell[0](buf, pos)

    def width(self, node: Any, seen: frozenset[str] = frozenset()) -> int:
        """The fewest bytes one value of ``node`` can take (0 for null, empty records)."""
        if isinstance(node, str) and node not in PRIMITIVES:
            if node in seen:  # recursion; a lower bound of 0 is always safe
                return 0
            seen = seen | {node}
        node = self.resolve(node)
        if isinstance(node, dict) and not isinstance(node["type"], str):
            return self.width(node["type"], seen)
        kind = schema_type(node)
        if kind in _PRIMITIVE_WIDTH:
            return _PRIMITIVE_WIDTH[kind]
        if kind == "fixed":
            return int(node["size"])
        if kind in ("record", "error"):
            return sum(self.width(f["type"], seen | {node["name"]}) for f in node["fields"])
        return 1  # strings, bytes, enums, unions, arrays and maps take at least one byte
