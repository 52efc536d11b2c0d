"""Domain checks of a decoded transaction, beyond what its Avro schema can say.

Pure and clock-free: the caller passes ``now_ms``. A failure raises
:class:`ValidationError` with a reason slug (for the dead-letter header and metrics) and
a one-line detail that names the field but never shows an id's value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

MAX_ID_LEN: Final = 64
MCC_MIN, MCC_MAX = 0, 9999
# Card payments before 2000-01-01T00:00Z are not plausible event times for this system.
MIN_EVENT_TIME_MS: Final = 946_684_800_000
ID_FIELDS: Final = ("txn_id", "card_id", "merchant_id")


class ValidationError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def validate_transaction(
    txn: Mapping[str, Any],
    *,
    now_ms: int,
    max_skew_ms: int,
    max_amount: float,
    min_event_time_ms: int = MIN_EVENT_TIME_MS,
) -> None:
    """Raise :class:`ValidationError` for the first implausible field of ``txn``.

    Reasons: ``wrong_type``, ``amount_not_finite``, ``amount_not_positive``,
    ``amount_too_large``, ``event_time_in_future`` (after ``now_ms + max_skew_ms``),
    ``event_time_too_old`` (before ``min_event_time_ms``, negative included),
    ``id_empty``, ``id_too_long`` (> 64 chars), ``id_bad_chars`` (control or other
    non-printable characters), ``card_id_looks_like_pan`` (13-19 digits passing the Luhn
    check: a raw card number must never enter the system), ``bad_currency`` (not 3
    uppercase ASCII letters), ``bad_country`` (not 2), ``mcc_out_of_range`` (0-9999).
    """
    _check_ids(txn)
    _check_amount(txn.get("amount"), max_amount)
    _check_event_time(txn.get("event_time"), now_ms, max_skew_ms, min_event_time_ms)
    _check_code(txn.get("currency"), "currency", 3, "bad_currency")
    _check_code(txn.get("country"), "country", 2, "bad_country")
    mcc = txn.get("mcc")
    if not _is_int(mcc):
        raise ValidationError("wrong_type", "mcc: not an int")
    if not MCC_MIN <= mcc <= MCC_MAX:
        raise ValidationError("mcc_out_of_range", f"mcc {mcc} not in {MCC_MIN}..{MCC_MAX}")


def looks_like_pan(value: str) -> bool:
    """True for 13-19 ASCII digits with a valid Luhn check digit, i.e. a card number."""
    if not (13 <= len(value) <= 19 and value.isascii() and value.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(value)):
        digit = ord(ch) - 48
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ids(txn: Mapping[str, Any]) -> None:
    for name in ID_FIELDS:
        _check_id(name, txn.get(name))
    device_id = txn.get("device_id")
    if device_id is not None:
        _check_id("device_id", device_id)
    if looks_like_pan(txn["card_id"]):
        raise ValidationError("card_id_looks_like_pan", "card_id: looks like a raw card number")


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ValidationError("wrong_type", f"{name}: not a string")
    if not value:
        raise ValidationError("id_empty", f"{name}: empty")
    if len(value) > MAX_ID_LEN:
        raise ValidationError("id_too_long", f"{name}: {len(value)} chars, max {MAX_ID_LEN}")
    if not value.isprintable():
        raise ValidationError("id_bad_chars", f"{name}: control or non-printable characters")


def _check_amount(amount: Any, max_amount: float) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise ValidationError("wrong_type", "amount: not a number")
    if not math.isfinite(amount):
        raise ValidationError("amount_not_finite", f"amount is {amount}")
    if amount <= 0:
        raise ValidationError("amount_not_positive", f"amount {amount} is not > 0")
    if amount > max_amount:
        raise ValidationError("amount_too_large", f"amount {amount} exceeds {max_amount}")


def _check_event_time(event_time: Any, now_ms: int, max_skew_ms: int, min_ms: int) -> None:
    if not _is_int(event_time):
        raise ValidationError("wrong_type", "event_time: not an int")
    if event_time > now_ms + max_skew_ms:
        ahead = event_time - now_ms
        raise ValidationError(
            "event_time_in_future", f"event_time {ahead} ms ahead of now, max {max_skew_ms}"
        )
    if event_time < min_ms:
        raise ValidationError("event_time_too_old", f"event_time {event_time} before {min_ms}")


def _check_code(value: Any, name: str, length: int, reason: str) -> None:
    if not (
        isinstance(value, str)
        and len(value) == length
        and value.isascii()
        and value.isalpha()
        and value.isupper()
    ):
        raise ValidationError(reason, f"{name}: not {length} uppercase ASCII letters")
