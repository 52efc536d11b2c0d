"""Vectors as bytes and as named dicts.

``pack_vector`` is little-endian IEEE-754 doubles, ``8 * N_FEATURES`` bytes: exact for
every value, NaN included, and fast (one ``struct`` call).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from services.core.features.schema import FEATURE_NAMES, N_FEATURES

VECTOR_STRUCT = struct.Struct(f"<{N_FEATURES}d")


def pack_vector(vector: Sequence[float]) -> bytes:
    return VECTOR_STRUCT.pack(*vector)


def unpack_vector(blob: bytes) -> tuple[float, ...]:
    return VECTOR_STRUCT.unpack(blob)


def named(vector: Sequence[float]) -> dict[str, float]:
    """``{feature name: value}`` for logs, explanations and tests."""
    if len(vector) != N_FEATURES:
        raise ValueError(f"a feature vector has {N_FEATURES} values, got {len(vector)}")
    return dict(zip(FEATURE_NAMES, vector, strict=True))
