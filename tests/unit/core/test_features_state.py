"""Card state: exact serialization and immutability."""

from __future__ import annotations

import json
import math
import random

import pytest

from services.core.features import (
    FEATURE_SET_FINGERPRINT,
    CardState,
    MerchantState,
    StateFormatError,
    compute,
)

T0 = 1_714_521_600_000


def awkward_state() -> CardState:
    amounts = (0.1, 0.2 + 0.1, 1e-300, 123456789.123456789, 5e-324, 2.0**60 + 0.5)
    return CardState(
        times=tuple(T0 + i for i in range(len(amounts))),
        amounts=amounts,
        merchants=("m-1", "Café ☕", "m}{x", "m-1", '"q"', "m-2"),
        countries=("DE", "FR", "DE", "NL", "DE", "DE"),
        last_time=T0 + 5,
        first_time=T0 - 10**9,
        n=7,
        mean=math.pi,
        m2=1 / 3,
        seen_merchants=("m-1", "Café ☕"),
        seen_countries=("DE",),
        seen_devices=(),
    )


def test_round_trip_is_exact() -> None:
    state = awkward_state()
    blob = state.to_bytes()
    back = CardState.from_bytes(blob)
    assert back == state
    assert back.to_bytes() == blob
    for a, b in zip(back.amounts, state.amounts, strict=True):
        assert a.hex() == b.hex()
    assert back.mean.hex() == state.mean.hex() and back.m2.hex() == state.m2.hex()


def test_round_trip_of_computed_states_is_exact() -> None:
    rng = random.Random(3)
    state = None
    merchant = MerchantState()
    for i in range(300):
        record = {
            "txn_id": f"t{i}",
            "card_id": "c",
            "merchant_id": f"m-{rng.randrange(5)}",
            "mcc": 5411,
            "amount": round(rng.lognormvariate(3, 1.2), 2),
            "currency": "EUR",
            "country": rng.choice(["DE", "FR"]),
            "channel": "ECOM",
            "device_id": rng.choice([None, "d1", "d2"]),
            "event_time": T0 + i * 97_000 - rng.randrange(3) * 3_600_000,
        }
        vector, state, delta = compute(state, merchant, record)
        merchant.add(delta)
        blob = state.to_bytes()
        assert CardState.from_bytes(blob) == state
        assert CardState.from_bytes(blob).to_bytes() == blob


def test_blob_is_compact_tagged_json() -> None:
    raw = json.loads(awkward_state().to_bytes())
    assert raw[0] == FEATURE_SET_FINGERPRINT[:16]
    assert b" " not in CardState((1,), (1.0,), ("m",), ("DE",), 1, 1, 1, 1.0, 0.0, (), (), ()).to_bytes()


def test_state_of_another_feature_set_is_refused() -> None:
    raw = json.loads(awkward_state().to_bytes())
    raw[0] = "0123456789abcdef"
    with pytest.raises(StateFormatError, match="feature set"):
        CardState.from_bytes(json.dumps(raw).encode())


@pytest.mark.parametrize("blob", [b"", b"{", b"{}", b"[1, 2]", b"null"])
def test_garbage_is_refused(blob: bytes) -> None:
    with pytest.raises(StateFormatError):
        CardState.from_bytes(blob)


def test_state_is_immutable() -> None:
    state = awkward_state()
    with pytest.raises(AttributeError):
        state.n = 3  # type: ignore[misc]


def test_merchant_state_round_trip() -> None:
    state = MerchantState(476256, {476256: 3, 476200: 1}, {476256: 1}, {19844: 4}, {19844: 123456789012})
    back = MerchantState.from_bytes(state.to_bytes())
    assert back == state and back.to_bytes() == state.to_bytes()
    assert MerchantState.from_bytes(MerchantState().to_bytes()) == MerchantState()


@pytest.mark.parametrize("blob", [b"", b"[]", b'{"tag": "x"}', b"{}"])
def test_bad_merchant_state_is_refused(blob: bytes) -> None:
    with pytest.raises(StateFormatError):
        MerchantState.from_bytes(blob)
