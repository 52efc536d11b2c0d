"""Domain validation of transactions: one test per reason."""

from __future__ import annotations

import math
from typing import Any

import pytest

from services.core.validate import (
    MIN_EVENT_TIME_MS,
    ValidationError,
    looks_like_pan,
    validate_transaction,
)

NOW = 1_767_225_600_000  # 2026-01-01T00:00Z
SKEW = 300_000
MAX_AMOUNT = 1_000_000.0
GOOD: dict[str, Any] = {
    "txn_id": "t-0001",
    "card_id": "card-42",
    "merchant_id": "m-7",
    "mcc": 5411,
    "amount": 12.5,
    "currency": "EUR",
    "country": "DE",
    "channel": "POS",
    "device_id": None,
    "event_time": NOW - 1000,
}


def check(**changes: Any) -> None:
    validate_transaction({**GOOD, **changes}, now_ms=NOW, max_skew_ms=SKEW, max_amount=MAX_AMOUNT)


def reason(**changes: Any) -> str:
    with pytest.raises(ValidationError) as info:
        check(**changes)
    assert "\n" not in info.value.detail
    for value in changes.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in info.value.detail  # never echo an id
    return info.value.reason


def test_a_plausible_transaction_passes() -> None:
    check()
    check(device_id="dev-1", amount=MAX_AMOUNT, mcc=0, event_time=NOW + SKEW)
    check(mcc=9999, amount=1, event_time=MIN_EVENT_TIME_MS, txn_id="x" * 64, card_id="tok ü")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"amount": math.nan}, "amount_not_finite"),
        ({"amount": math.inf}, "amount_not_finite"),
        ({"amount": -math.inf}, "amount_not_finite"),
        ({"amount": 0.0}, "amount_not_positive"),
        ({"amount": -5.0}, "amount_not_positive"),
        ({"amount": MAX_AMOUNT * 1.01}, "amount_too_large"),
        ({"amount": "12.5"}, "wrong_type"),
        ({"amount": True}, "wrong_type"),
        ({"event_time": NOW + SKEW + 1}, "event_time_in_future"),
        ({"event_time": MIN_EVENT_TIME_MS - 1}, "event_time_too_old"),
        ({"event_time": -1}, "event_time_too_old"),
        ({"event_time": 1.5e12}, "wrong_type"),
        ({"txn_id": ""}, "id_empty"),
        ({"merchant_id": "m" * 65}, "id_too_long"),
        ({"card_id": "card\n42"}, "id_bad_chars"),
        ({"card_id": "card\x0042"}, "id_bad_chars"),
        ({"txn_id": "t\u200b1"}, "id_bad_chars"),  # zero-width space
        ({"device_id": ""}, "id_empty"),
        ({"device_id": "d\x7f"}, "id_bad_chars"),
        ({"card_id": None}, "wrong_type"),
        ({"card_id": "4111111111111111"}, "card_id_looks_like_pan"),
        ({"currency": "eur"}, "bad_currency"),
        ({"currency": "EURO"}, "bad_currency"),
        ({"currency": "ÉUR"}, "bad_currency"),
        ({"country": "DEU"}, "bad_country"),
        ({"country": "d1"}, "bad_country"),
        ({"mcc": -1}, "mcc_out_of_range"),
        ({"mcc": 10_000}, "mcc_out_of_range"),
        ({"mcc": "5411"}, "wrong_type"),
    ],
)
def test_each_reason(changes: dict[str, Any], expected: str) -> None:
    assert reason(**changes) == expected


def test_validation_error_is_a_value_error_with_reason_and_detail() -> None:
    with pytest.raises(ValueError, match="^amount_too_large: amount"):
        check(amount=1e12)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4111111111111111", True),  # Visa test number
        ("5500005555555559", True),  # Mastercard test number
        ("378282246310005", True),  # Amex test number, 15 digits
        ("4111111111111112", False),  # Luhn check fails
        ("411111111111", False),  # 12 digits
        ("41111111111111111111", False),  # 20 digits
        ("card-4111111111111111", False),
        ("４１１１１１１１１１１１１１１１", False),  # full-width digits are not ASCII
    ],
)
def test_looks_like_pan(value: str, expected: bool) -> None:
    assert looks_like_pan(value) is expected
