"""Typed failures of the Avro codec.

Both errors carry a short machine-readable ``reason`` (it goes into the dead-letter
header ``dlq.error.reason`` and into metric labels) and a one-line human ``detail``.
A detail names record types, field paths, byte offsets and lengths, never a field's
value: a card id must not leak into logs or dead-letter headers through an error.
"""

from __future__ import annotations

from enum import StrEnum


class DecodeReason(StrEnum):
    BAD_MARKER = "bad_marker"  # not single-object encoding (no C3 01 marker, or no value)
    UNKNOWN_FINGERPRINT = "unknown_fingerprint"  # no known schema has this fingerprint
    SCHEMA_MISMATCH = "schema_mismatch"  # another record type, or resolution impossible
    TRUNCATED = "truncated"  # the bytes end inside the header or the body
    TRAILING_BYTES = "trailing_bytes"  # bytes left after the record
    OUT_OF_RANGE = "out_of_range"  # enum/union index, negative length, int32, boolean byte
    INVALID_VALUE = "invalid_value"  # invalid UTF-8, duplicate map key
    NON_CANONICAL = "non_canonical"  # legal Avro we refuse: overlong varint, blocked arrays


class EncodeReason(StrEnum):
    UNKNOWN_TYPE = "unknown_type"  # no record type of that name
    WRONG_TYPE = "wrong_type"  # e.g. a str where an int belongs, a bool where a number does
    OUT_OF_RANGE = "out_of_range"  # int outside 32 bits, long outside 64 bits
    INVALID_VALUE = "invalid_value"  # not an enum symbol, unencodable string, bad fixed size
    MISSING_FIELD = "missing_field"  # a field without default is absent
    UNKNOWN_FIELD = "unknown_field"  # the record has keys the schema does not know


class SchemaError(Exception):
    """A schema file or schema set the codec cannot use. The message is one line."""


class DecodeError(Exception):
    """Bytes that are not a valid single-object encoding of the expected record type."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EncodeError(ValueError):
    """A record that does not fit its schema.

    ``path`` locates the offending value (``("timings", "scored_at")``, ``("features",
    "[3]")``); ``detail`` is ``"timings.scored_at: <what is wrong>"``.
    """

    def __init__(self, reason: str, message: str, path: tuple[str, ...] = ()) -> None:
        self.reason = reason
        self.message = message
        self.path = path
        super().__init__(f"{reason}: {self.detail}")

    @property
    def detail(self) -> str:
        if not self.path:
            return self.message
        return f"{'.'.join(self.path)}: {self.message}".replace(".[", "[")

    def under(self, segment: str) -> EncodeError:
        """The same error one level further out (``segment`` is a field name or ``[i]``)."""
        return EncodeError(self.reason, self.message, (segment, *self.path))
