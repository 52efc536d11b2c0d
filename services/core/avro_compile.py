"""The schema walk shared by the reader and writer compilers.

A schema is compiled once into nested closures (one per field, item, branch), so the
per-record work is plain function calls with no schema lookups. Schemas arrive
fastavro-parsed: names are full names, and a named type is defined at its first use and
referenced by name afterwards (possibly recursively, from inside its own definition).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from services.core.codec_errors import SchemaError

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})

F = TypeVar("F")


def schema_type(node: Any) -> str:
    """The Avro type of a parsed schema node: a primitive, a complex type, "union", or
    "named" (a reference to a named type by its full name)."""
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node if node in PRIMITIVES else "named"
    inner = node["type"]
    return schema_type(inner) if not isinstance(inner, str) else inner


class SchemaCompiler(Generic[F]):
    """Dispatches on the schema; subclasses build the closure for each kind of type."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self._done: dict[str, F] = {}
        self._pending: dict[str, list[F]] = {}

    def compile(self, node: Any) -> F:
        kind = schema_type(node)
        if kind in PRIMITIVES:
            return self.primitive(kind)  # a logicalType is carried as its physical value
        if kind == "named":
            return self._reference(node)
        if isinstance(node, dict) and not isinstance(node["type"], str):
            return self.compile(node["type"])
        if kind == "union":
            return self.union(node)
        if kind in NAMED:
            return self._define(node)
        if kind == "array":
            return self.array(node["items"])
        if kind == "map":
            return self.map(node["values"])
        raise SchemaError(f"unsupported Avro type {kind!r}")

    def resolve(self, node: Any) -> Any:
        """The definition behind a named reference (other nodes unchanged)."""
        if isinstance(node, str) and node not in PRIMITIVES:
            if node not in self.named:
                raise SchemaError(f"unknown type name {node!r}")
            return self.named[node]
        return node

    def _define(self, node: Mapping[str, Any]) -> F:
        name = node["name"]
        if name in self._done:
            return self._done[name]
        cell: list[F] = []
        self._pending[name] = cell  # a recursive reference goes through this cell
        kind = node["type"]
        built: F
        if kind == "enum":
            built = self.enum(name.rpartition(".")[2], list(node["symbols"]))
        elif kind == "fixed":
            built = self.fixed(int(node["size"]))
        else:
            built = self.record(node["fields"])
        self._done[name] = built
        cell.append(built)
        del self._pending[name]
        return built

    def _reference(self, name: str) -> F:
        if name in self._done:
            return self._done[name]
        if name in self._pending:
            return self.forward(self._pending[name])
        return self._define(self.resolve(name))

    # ------------------------------------------------------------- per kind of type

    def primitive(self, kind: str) -> F:
        raise NotImplementedError

    def union(self, branches: list[Any]) -> F:
        raise NotImplementedError

    def array(self, items: Any) -> F:
        raise NotImplementedError

    def map(self, values: Any) -> F:
        raise NotImplementedError

    def record(self, fields: list[Mapping[str, Any]]) -> F:
        raise NotImplementedError

    def enum(self, name: str, symbols: list[str]) -> F:
        raise NotImplementedError

    def fixed(self, size: int) -> F:
        raise NotImplementedError

    def forward(self, cell: list[F]) -> F:
        """A closure that calls ``cell[0]``, for a type used inside its own definition."""
        raise NotImplementedError
