"""The codec's contract: round trips, the wire header, and a typed error for every kind
of bad input, on both the decode and the encode side."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import numpy as np
import pytest

from services.core.codec import (
    HEADER_LEN,
    MAGIC,
    Codec,
    DecodeError,
    DecodeReason,
    EncodeError,
    EncodeReason,
    default_schemas_dir,
)
from tests.unit.core.codec_samples import sample_record

CODEC = Codec.load()
NAMES = ("Label", "ModelUpdate", "RetrainEvent", "Score", "Transaction")

TXN: dict[str, Any] = {
    "txn_id": "t-0001",
    "card_id": "card-42",
    "merchant_id": "m-7",
    "mcc": 5411,
    "amount": 12.5,
    "currency": "EUR",
    "country": "DE",
    "channel": "ECOM",
    "device_id": "dev-1",
    "event_time": 1_767_225_600_000,
}


def encoded_txn(**changes: Any) -> bytes:
    return CODEC.encode("Transaction", {**TXN, **changes})


def reason_of(name: str, data: bytes | None) -> str:
    with pytest.raises(DecodeError) as info:
        CODEC.decode(name, data)
    assert "card-42" not in info.value.detail
    return info.value.reason


# --------------------------------------------------------------------------- round trips


def test_loads_every_record_type_from_the_repo() -> None:
    assert CODEC.names == NAMES
    assert default_schemas_dir().joinpath("transaction.avsc").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_every_schema_round_trips_seeded_records(name: str) -> None:
    rng = random.Random(f"roundtrip-{name}")
    version = CODEC.current(name)
    for _ in range(300):
        record = sample_record(version, rng)
        data = CODEC.encode(name, record)
        assert data[:HEADER_LEN] == MAGIC + CODEC.fingerprint(name)
        assert CODEC.decode(name, data) == record
        assert CODEC.encode(name, CODEC.decode(name, data)) == data


def test_in_memory_types_are_plain() -> None:
    decoded = CODEC.decode("Transaction", encoded_txn(device_id=None))
    assert decoded == {**TXN, "device_id": None}
    assert type(decoded["event_time"]) is int
    assert type(decoded["channel"]) is str


def test_fields_with_defaults_may_be_omitted() -> None:
    score = sample_record(CODEC.current("Score"), random.Random(1))
    del score["shadow"]
    assert CODEC.decode("Score", CODEC.encode("Score", score))["shadow"] is False
    event = {
        "event_id": "e1", "emitted_at": 5, "reason": "DRIFT", "model_name": "fraud",
        "model_version": "3", "window_start": 1, "window_end": 2,
    }  # fmt: skip
    decoded = CODEC.decode("RetrainEvent", CODEC.encode("RetrainEvent", event))
    assert decoded == {
        **event, "psi": {}, "drifted_features": [], "recall": None,
        "recall_baseline": None, "maturity": None, "details": "",
    }  # fmt: skip


def test_nan_and_signed_zero_survive_bit_for_bit() -> None:
    score = sample_record(CODEC.current("Score"), random.Random(2))
    payload_nan = struct.unpack("<d", bytes.fromhex("0100000000f8ff7f"))[0]
    score["features"] = [math.nan, -0.0, payload_nan, math.inf]
    data = CODEC.encode("Score", score)
    back = CODEC.decode("Score", data)["features"]
    assert [struct.pack("<d", x) for x in back] == [struct.pack("<d", x) for x in score["features"]]
    assert CODEC.encode("Score", {**score, "features": back}) == data


def test_numpy_values_are_accepted() -> None:
    score = sample_record(CODEC.current("Score"), random.Random(3))
    features = np.linspace(0, 1, 7)
    as_numpy = {**score, "features": features, "score": np.float64(0.25)}
    as_numpy["timings"] = {**score["timings"], "predict_us": np.int64(12)}
    decoded = CODEC.decode("Score", CODEC.encode("Score", as_numpy))
    assert decoded["features"] == features.tolist()
    assert decoded["score"] == 0.25 and decoded["timings"]["predict_us"] == 12


def test_batch_helpers_match_single_calls() -> None:
    rng = random.Random(4)
    txns = [sample_record(CODEC.current("Transaction"), rng) for _ in range(20)]
    blobs = CODEC.encode_many("Transaction", txns)
    assert blobs == [CODEC.encode("Transaction", t) for t in txns]
    results = CODEC.decode_many("Transaction", [blobs[0], b"junk", blobs[1]])
    assert results[0] == txns[0] and results[2] == txns[1]
    assert isinstance(results[1], DecodeError) and results[1].reason == "bad_marker"


def test_peek_names_the_writer_version() -> None:
    assert CODEC.peek(encoded_txn()).name == "Transaction"
    assert CODEC.known_versions("Score")[0] == CODEC.current("Score")


# --------------------------------------------------------------------------- decode errors


def test_header_errors() -> None:
    good = encoded_txn()
    assert reason_of("Transaction", None) == DecodeReason.BAD_MARKER
    assert reason_of("Transaction", b"") == DecodeReason.BAD_MARKER
    assert reason_of("Transaction", b"\x00\x01" + good[2:]) == DecodeReason.BAD_MARKER
    assert reason_of("Transaction", b"{}") == DecodeReason.BAD_MARKER
    for cut in range(1, HEADER_LEN):
        assert reason_of("Transaction", good[:cut]) == DecodeReason.TRUNCATED
    assert reason_of("Transaction", MAGIC + bytes(8) + good[10:]) == "unknown_fingerprint"


def test_another_record_type_is_a_schema_mismatch() -> None:
    label = {"txn_id": "t", "card_id": "card-42", "is_fraud": True, "label_time": 1,
             "source": "CHARGEBACK"}  # fmt: skip
    data = CODEC.encode("Label", label)
    assert reason_of("Transaction", data) == DecodeReason.SCHEMA_MISMATCH
    swapped = data[:2] + CODEC.fingerprint("Transaction") + data[10:]
    assert reason_of("Transaction", swapped) != "ok"  # some typed error, never garbage


def test_every_truncation_of_the_body_is_reported() -> None:
    for name in NAMES:
        data = CODEC.encode(name, sample_record(CODEC.current(name), random.Random(name)))
        for cut in range(HEADER_LEN, len(data)):
            assert reason_of(name, data[:cut]) in ("truncated", "out_of_range", "non_canonical")
        assert reason_of(name, data[: HEADER_LEN + 1]) == DecodeReason.TRUNCATED


def test_trailing_bytes() -> None:
    assert reason_of("Transaction", encoded_txn() + b"\x00") == DecodeReason.TRAILING_BYTES


def body_with(prefix: bytes, rest: bytes) -> bytes:
    return MAGIC + CODEC.fingerprint("Transaction") + prefix + rest


# A Transaction body after txn_id: card_id "c", merchant_id "m", mcc 1, amount 1.0,
# currency "EUR", country "DE".
AFTER_TXN_ID = b"\x02c\x02m\x02" + struct.pack("<d", 1.0) + b"\x06EUR\x04DE"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x03", "out_of_range"),  # txn_id with length -2
        (b"\x04\xff\xfe" + AFTER_TXN_ID + b"\x00\x00\x02", "invalid_value"),  # bad UTF-8
        (b"\x02t" + AFTER_TXN_ID + b"\x0a\x00\x02", "out_of_range"),  # channel index 5
        (b"\x02t" + AFTER_TXN_ID + b"\x01\x00\x02", "out_of_range"),  # channel index -1
        (b"\x02t" + AFTER_TXN_ID + b"\x00\x04\x02", "out_of_range"),  # union index 2
        (b"\x02t" + AFTER_TXN_ID + b"\x00\x01\x02", "out_of_range"),  # union index -1
        (b"\x02t" + AFTER_TXN_ID + b"\x00\x80\x00\x02", "non_canonical"),  # overlong 0
        (b"\x02t" + AFTER_TXN_ID + b"\x00\x00" + b"\xff" * 10 + b"\x01", "out_of_range"),
        (b"\x02t" + AFTER_TXN_ID + b"\x00\x00" + b"\xff" * 9 + b"\x02", "out_of_range"),
        (b"\x82\x00t" + AFTER_TXN_ID + b"\x00\x00\x02", "non_canonical"),  # overlong length
        (b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f" + AFTER_TXN_ID, "truncated"),  # huge length
    ],
)
def test_bad_bodies_get_their_reason(body: bytes, reason: str) -> None:
    assert reason_of("Transaction", body_with(body, b"")) == reason


def test_int_wider_than_32_bits_is_out_of_range() -> None:
    good = encoded_txn(mcc=1)
    at = good.index(b"\x02" + struct.pack("<d", 12.5))
    wide = good[:at] + b"\x80\x80\x80\x80\x10" + good[at + 1 :]  # 2**31
    assert reason_of("Transaction", wide) == DecodeReason.OUT_OF_RANGE


def test_boolean_bytes_other_than_0_and_1_are_out_of_range() -> None:
    label = {"txn_id": "t", "card_id": "c", "is_fraud": True, "label_time": 1, "source": "CLEARED"}
    data = CODEC.encode("Label", label)
    assert data[14] == 1
    assert reason_of("Label", data[:14] + b"\x02" + data[15:]) == DecodeReason.OUT_OF_RANGE


def score_bytes(**changes: Any) -> bytes:
    score = sample_record(CODEC.current("Score"), random.Random(5))
    return CODEC.encode("Score", {**score, **changes})


def test_arrays_in_several_blocks_or_with_byte_sizes_are_refused() -> None:
    one_block = score_bytes(reason_codes=["a", "b"])
    at = one_block.index(b"\x04\x02a\x02b\x00")
    two_blocks = one_block[:at] + b"\x02\x02a\x02\x02b\x00" + one_block[at + 6 :]
    assert reason_of("Score", two_blocks) == DecodeReason.NON_CANONICAL
    sized = one_block[:at] + b"\x03\x08\x02a\x02b\x00" + one_block[at + 6 :]
    assert reason_of("Score", sized) == DecodeReason.NON_CANONICAL


def test_map_with_a_repeated_key_is_invalid() -> None:
    event = {
        "event_id": "e", "emitted_at": 1, "reason": "DRIFT", "model_name": "m",
        "model_version": "1", "window_start": 0, "window_end": 1, "psi": {"a": 1.0, "b": 2.0},
    }  # fmt: skip
    data = CODEC.encode("RetrainEvent", event)
    repeated = data.replace(b"\x02b", b"\x02a", 1)
    assert reason_of("RetrainEvent", repeated) == DecodeReason.INVALID_VALUE


def test_unknown_record_type_name_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        CODEC.decode("Transactoin", encoded_txn())


# --------------------------------------------------------------------------- encode errors


@pytest.mark.parametrize(
    ("changes", "reason", "where"),
    [
        ({"mcc": 1.5}, EncodeReason.WRONG_TYPE, "Transaction.mcc"),
        ({"mcc": "5411"}, EncodeReason.WRONG_TYPE, "Transaction.mcc"),
        ({"mcc": True}, EncodeReason.WRONG_TYPE, "Transaction.mcc"),
        ({"mcc": 2**31}, EncodeReason.OUT_OF_RANGE, "Transaction.mcc"),
        ({"event_time": 2**63}, EncodeReason.OUT_OF_RANGE, "Transaction.event_time"),
        ({"amount": "12.5"}, EncodeReason.WRONG_TYPE, "Transaction.amount"),
        ({"amount": 10**400}, EncodeReason.OUT_OF_RANGE, "Transaction.amount"),
        ({"channel": "BRANCH"}, EncodeReason.INVALID_VALUE, "Transaction.channel"),
        ({"channel": 1}, EncodeReason.WRONG_TYPE, "Transaction.channel"),
        ({"device_id": 7}, EncodeReason.WRONG_TYPE, "Transaction.device_id"),
        ({"card_id": "\ud800"}, EncodeReason.INVALID_VALUE, "Transaction.card_id"),
        ({"card_id": None}, EncodeReason.WRONG_TYPE, "Transaction.card_id"),
        ({"wallet_type": "x"}, EncodeReason.UNKNOWN_FIELD, "Transaction"),
    ],
)
def test_invalid_records_raise_encode_error(changes: dict[str, Any], reason: str, where: str) -> None:
    with pytest.raises(EncodeError) as info:
        CODEC.encode("Transaction", {**TXN, **changes})
    assert isinstance(info.value, ValueError)
    assert info.value.reason == reason
    assert info.value.detail.startswith(where + ":")
    assert "card-42" not in str(info.value)


def test_missing_required_field_and_unknown_type() -> None:
    without_card = {k: v for k, v in TXN.items() if k != "card_id"}
    with pytest.raises(EncodeError, match="missing_field: Transaction.card_id"):
        CODEC.encode("Transaction", without_card)
    with pytest.raises(EncodeError) as info:
        CODEC.encode("Payment", TXN)
    assert info.value.reason == EncodeReason.UNKNOWN_TYPE
    with pytest.raises(EncodeError) as info:
        CODEC.encode("Transaction", [TXN])  # type: ignore[arg-type]
    assert info.value.reason == EncodeReason.WRONG_TYPE


def test_nested_paths_name_the_offending_item() -> None:
    with pytest.raises(EncodeError) as info:
        score_bytes(features=[0.5, "x"])
    assert info.value.detail.startswith("Score.features[1]:")
    with pytest.raises(EncodeError) as info:
        score_bytes(timings={"consumed_at": 1, "scored_at": 1.5, "features_us": 0, "predict_us": 0})
    assert info.value.detail.startswith("Score.timings.scored_at:")
    with pytest.raises(EncodeError) as info:
        score_bytes(reason_codes=["ok", 3])
    assert info.value.detail.startswith("Score.reason_codes[1]:")


def test_error_messages_show_only_field_like_keys() -> None:
    with pytest.raises(EncodeError) as info:
        CODEC.encode("Transaction", {**TXN, "card-4111111111111111": 1, "devce_id": None})
    assert info.value.detail == "Transaction: unknown fields ?, devce_id"
    event = {
        "event_id": "e", "emitted_at": 1, "reason": "DRIFT", "model_name": "m", "model_version": "1",
        "window_start": 0, "window_end": 1, "psi": {"amount_z": "high", "card 42": 1.0},
    }  # fmt: skip
    with pytest.raises(EncodeError) as info:
        CODEC.encode("RetrainEvent", event)
    assert info.value.detail.startswith("RetrainEvent.psi[amount_z]: expected float")
    event["psi"] = {"card 42": "x"}
    with pytest.raises(EncodeError) as info:
        CODEC.encode("RetrainEvent", event)
    assert info.value.detail.startswith("RetrainEvent.psi[?]:")


# --------------------------------------------------------------------------- other shapes

NODE = {
    "type": "record", "name": "Node", "namespace": "t",
    "fields": [
        {"name": "value", "type": ["int", "string", "null", {"type": "fixed", "name": "Id", "size": 2}]},
        {"name": "next", "type": ["null", "Node"], "default": None},
    ],
}  # fmt: skip


def test_recursive_schemas_and_general_unions() -> None:
    codec = Codec.from_schemas([NODE])
    chain = {"value": 7, "next": {"value": "x", "next": {"value": None, "next": {"value": b"ab"}}}}
    full = {
        "value": 7,
        "next": {"value": "x", "next": {"value": None, "next": {"value": b"ab", "next": None}}},
    }
    assert codec.decode("Node", codec.encode("Node", chain)) == full
    with pytest.raises(EncodeError) as info:
        codec.encode("Node", {"value": 1.5})
    assert info.value.reason == EncodeReason.WRONG_TYPE and info.value.detail.startswith("Node.value:")


def test_nesting_too_deep_is_a_typed_error_both_ways() -> None:
    codec = Codec.from_schemas([NODE])
    deep = MAGIC + codec.fingerprint("Node") + b"\x00\x02\x02" * 50_000 + b"\x00\x02\x00"
    with pytest.raises(DecodeError) as decode_info:
        codec.decode("Node", deep)
    assert decode_info.value.reason == DecodeReason.OUT_OF_RANGE
    chain: dict[str, Any] = {"value": 0, "next": None}
    for i in range(50_000):
        chain = {"value": i, "next": chain}
    with pytest.raises(EncodeError) as encode_info:
        codec.encode("Node", chain)
    assert encode_info.value.reason == EncodeReason.OUT_OF_RANGE
