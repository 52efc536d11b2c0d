"""Fuzzing the decoder: random bytes and mutated valid encodings.

The property: decoding either raises :class:`DecodeError`, or succeeds with a record
that re-encodes to exactly the bytes given. Nothing else: no other exception type, and
no second byte string for the same record (which would mean we accepted garbage).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.codec import HEADER_LEN, MAGIC, Codec, DecodeError
from tests.unit.core.codec_samples import records

CODEC = Codec.load()
NAMES = CODEC.names
FINGERPRINTS = [CODEC.fingerprint(n) for n in NAMES]
FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def assert_decodes_canonically_or_fails_typed(name: str, data: bytes) -> None:
    try:
        record = CODEC.decode(name, data)
    except DecodeError as exc:
        assert exc.reason and exc.detail and "\n" not in exc.detail
        return
    assert CODEC.encode(name, record) == data


@st.composite
def valid_encoding(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(NAMES))
    record: dict[str, Any] = draw(records(CODEC.current(name)))
    return name, CODEC.encode(name, record)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name, data = draw(valid_encoding())
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "append", "swap", "splice"]))
        if kind == "flip" and buf:
            at = draw(st.integers(0, len(buf) - 1))
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and buf:
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del buf[draw(st.integers(0, len(buf))) :]
        elif kind == "append":
            buf += draw(st.binary(min_size=1, max_size=8))
        elif kind == "swap" and len(buf) >= HEADER_LEN:
            buf[2:HEADER_LEN] = draw(st.sampled_from(FINGERPRINTS))
        elif kind == "splice" and buf:
            at = draw(st.integers(0, len(buf)))
            buf[at:at] = draw(st.binary(min_size=1, max_size=4))
    target = draw(st.sampled_from([name, name, *NAMES]))  # mostly the type it was
    return target, bytes(buf)


@FUZZ
@given(st.sampled_from(NAMES), st.binary(max_size=64))
def test_random_bytes(name: str, data: bytes) -> None:
    assert_decodes_canonically_or_fails_typed(name, data)


@FUZZ
@given(st.sampled_from(NAMES), st.binary(max_size=64))
def test_random_bodies_behind_a_valid_header(name: str, body: bytes) -> None:
    data = MAGIC + CODEC.fingerprint(name) + body
    assert_decodes_canonically_or_fails_typed(name, data)


@FUZZ
@given(mutated())
def test_mutated_valid_encodings(case: tuple[str, bytes]) -> None:
    assert_decodes_canonically_or_fails_typed(*case)


@FUZZ
@given(valid_encoding())
def test_valid_encodings_round_trip(case: tuple[str, bytes]) -> None:
    name, data = case
    assert CODEC.encode(name, CODEC.decode(name, data)) == data
