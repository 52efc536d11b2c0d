"""Valid records for any of our schemas, generated from the schema itself.

``sample_record(version, rng)`` is seeded and plain-random (for exact-equality tests and
the integration round trip); ``records(version)`` is the same as a hypothesis strategy.
Both stay inside the value ranges of the Avro types (int32, int64, float32...), use
non-ASCII strings, and avoid NaN (NaN != NaN would break equality checks; NaN is
tested on its own).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from services.core.avro_compile import PRIMITIVES, schema_type
from services.core.schemas import SchemaVersion

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
ALPHABET = "abcXYZ09 -_é€中😀"


def _float32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _resolve(node: Any, named: Mapping[str, Any]) -> Any:
    if isinstance(node, str) and node not in PRIMITIVES:
        return named[node]
    if isinstance(node, dict) and not isinstance(node["type"], str):
        return _resolve(node["type"], named)
    return node


# --------------------------------------------------------------------------- seeded


def sample_record(version: SchemaVersion, rng: random.Random) -> dict[str, Any]:
    value = _sample(version.parsed, version.named, rng)
    assert isinstance(value, dict)
    return value


def _sample(node: Any, named: Mapping[str, Any], rng: random.Random) -> Any:
    node = _resolve(node, named)
    kind = schema_type(node)
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind in ("int", "long"):
        lo, hi = INT32 if kind == "int" else INT64
        return rng.choice([0, 1, -1, lo, hi, rng.randint(-1000, 1000), rng.randint(lo, hi)])
    if kind in ("float", "double"):
        x = rng.choice([0.0, -0.0, float("inf"), 1e308, 5e-324, rng.uniform(-1e6, 1e6)])
        return _float32(min(x, 3e38)) if kind == "float" else x
    if kind == "string":
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 8))
    if kind == "fixed":
        return rng.randbytes(int(node["size"]))
    if kind == "enum":
        return rng.choice(node["symbols"])
    if kind == "union":
        return _sample(rng.choice(node), named, rng)
    if kind == "array":
        return [_sample(node["items"], named, rng) for _ in range(rng.randint(0, 4))]
    if kind == "map":
        return {
            f"k{i}{rng.choice(ALPHABET)}": _sample(node["values"], named, rng)
            for i in range(rng.randint(0, 3))
        }
    return {f["name"]: _sample(f["type"], named, rng) for f in node["fields"]}


# --------------------------------------------------------------------------- hypothesis


def records(version: SchemaVersion) -> st.SearchStrategy[dict[str, Any]]:
    return _strategy(version.parsed, version.named)


def _strategy(node: Any, named: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    node = _resolve(node, named)
    kind = schema_type(node)
    simple: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(*INT32),
        "long": st.integers(*INT64),
        "float": st.floats(allow_nan=False, width=32),
        "double": st.floats(allow_nan=False),
        "string": st.text(max_size=20),
        "bytes": st.binary(max_size=20),
    }
    if kind in simple:
        return simple[kind]
    if kind == "fixed":
        size = int(node["size"])
        return st.binary(min_size=size, max_size=size)
    if kind == "enum":
        return st.sampled_from(node["symbols"])
    if kind == "union":
        return st.one_of(*(_strategy(b, named) for b in node))
    if kind == "array":
        return st.lists(_strategy(node["items"], named), max_size=5)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), _strategy(node["values"], named), max_size=4)
    fields = {f["name"]: _strategy(f["type"], named) for f in node["fields"]}
    return st.fixed_dictionaries(fields)
