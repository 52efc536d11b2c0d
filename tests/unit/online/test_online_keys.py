"""The Redis layout of the online store, pinned: keys, fields and value codecs."""

from __future__ import annotations

import math
import struct

import pytest
from redis.crc import key_slot

from services.core.features import N_FEATURES, MerchantDelta, MerchantState, StateFormatError
from services.online import keys

DAY0 = 1_714_521_600_000 // 86_400_000  # 2024-05-01


def test_key_layout() -> None:
    assert keys.card_key("fs", "card-9") == "fs:c:{card-9}"
    assert keys.card_marker_key("fs", "card-9", DAY0) == "fs:c:{card-9}:t:20240501"
    assert keys.merchant_key("fs", "m-1") == "fs:m:{m-1}"
    assert keys.merchant_applied_key("fs", "m-1", DAY0 + 31) == "fs:m:{m-1}:a:20240601"
    assert keys.namespace_pattern("fs") == "fs:*"


def test_all_keys_of_a_card_or_merchant_share_a_cluster_slot() -> None:
    for ident in ("card-9", "x}y", "{weird", "Café"):
        card = {key_slot(k.encode()) for k in (
            keys.card_key("ns", ident),
            keys.card_marker_key("ns", ident, DAY0),
            keys.card_marker_key("ns", ident, DAY0 + 400),
        )}  # fmt: skip
        merchant = {key_slot(k.encode()) for k in (
            keys.merchant_key("ns", ident),
            keys.merchant_applied_key("ns", ident, DAY0),
        )}  # fmt: skip
        assert len(card) == 1 and len(merchant) == 1, ident


def test_day_stamp() -> None:
    assert keys.day_stamp(0) == "19700101"
    assert keys.day_stamp(DAY0) == "20240501"
    assert keys.day_stamp(DAY0 - 62) == "20240229"


def test_bucket_fields() -> None:
    assert keys.hour_field(476256) == "h476256"
    assert keys.day_count_field(19844) == "d19844n"
    assert keys.day_cents_field(19844) == "d19844c"


def test_hour_bucket_packs_both_counts_exactly() -> None:
    assert keys.NEW_CARD_UNIT == 2**32
    assert keys.split_hour_bucket(7) == (7, 0)
    assert keys.split_hour_bucket(3 * keys.NEW_CARD_UNIT + 5) == (5, 3)
    big = (2**32 - 1) + (2**31 - 1) * keys.NEW_CARD_UNIT  # the largest exact pair, < 2**63
    assert big < 2**63 and keys.split_hour_bucket(big) == (2**32 - 1, 2**31 - 1)


def test_window_fields_cover_every_read() -> None:
    hour = DAY0 * 24 + 5
    hours, days, names = keys.window_fields((hour,))
    assert hours == tuple(range(hour - 23, hour + 1))
    assert days == tuple(range(DAY0 - 6, DAY0 + 1))
    assert names[0] == "w" and len(names) == 1 + 24 + 2 * 7
    assert names[1:3] == (f"h{hour - 23}", f"h{hour - 22}")
    assert names[24] == f"h{hour}"
    assert names[25:27] == (f"d{DAY0 - 6}n", f"d{DAY0 - 6}c")
    assert names[-2:] == (f"d{DAY0}n", f"d{DAY0}c")
    hours2, _, _ = keys.window_fields((hour, hour + 30))
    assert hours2 == (*range(hour - 23, hour + 1), *range(hour + 7, hour + 31))


def test_merchant_view_parses_hmget_replies() -> None:
    hour = DAY0 * 24
    hours, days, names = keys.window_fields((hour,))
    values: list[bytes | None] = [None] * len(names)
    values[0] = str(hour).encode()
    values[names.index(f"h{hour}")] = str(keys.NEW_CARD_UNIT + 3).encode()  # 3 txns, 1 new card
    values[names.index(f"h{hour - 1}")] = b"2"  # 2 txns, no new card
    values[names.index(f"d{DAY0 - 1}n")] = b"2"
    values[names.index(f"d{DAY0 - 1}c")] = b"12345"
    values[names.index(f"d{DAY0}c")] = b"-5"  # a bucket may hold one of the two only
    view = keys.merchant_view(hours, days, values)
    want = MerchantState(hour, {hour: 3, hour - 1: 2}, {hour: 1}, {DAY0 - 1: 2}, {DAY0 - 1: 12345, DAY0: -5})
    assert view == want
    assert view.hour_new_cards == {hour: 1}  # no zero entries


def test_parse_merchant_hash() -> None:
    fields = {b"w": b"476256", b"h476256": str(keys.NEW_CARD_UNIT + 2).encode(), b"h476255": b"4",
              b"d19844n": b"2", b"d19844c": b"-5"}  # fmt: skip
    state = keys.parse_merchant_hash(fields)
    assert state == MerchantState(476256, {476256: 2, 476255: 4}, {476256: 1}, {19844: 2}, {19844: -5})
    assert state.hour_new_cards == {476256: 1}


def test_marker_round_trip_is_bit_exact() -> None:
    vector = tuple([math.nan, -0.0, 0.1 + 0.2, 1e308, 5e-324] + [float(i) for i in range(25)])
    assert len(vector) == N_FEATURES
    delta = MerchantDelta(476256, 123456789012, True)
    blob = keys.encode_marker(vector, delta)
    assert len(blob) == 8 * N_FEATURES + 8 + 1
    back = keys.decode_marker(blob, 476256)
    assert back.delta == delta
    assert struct.pack(f"<{N_FEATURES}d", *back.vector) == struct.pack(f"<{N_FEATURES}d", *vector)


def test_marker_of_another_size_is_refused() -> None:
    blob = keys.encode_marker(tuple([0.0] * N_FEATURES), MerchantDelta(1, 1, False))
    with pytest.raises(StateFormatError):
        keys.decode_marker(blob[8:], 1)
