"""The pure feature function, with hand-computed expectations."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import pytest

from services.core import features as F
from services.core.features import CardState, MerchantState, compute, named

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z, a Wednesday
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def txn(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "txn_id": "t",
        "card_id": "card-1",
        "merchant_id": "m-1",
        "mcc": 5411,
        "amount": 10.0,
        "currency": "EUR",
        "country": "DE",
        "channel": "POS",
        "device_id": None,
        "event_time": T0,
    }
    base.update(overrides)
    return base


def run(txns: Iterable[dict[str, Any]]) -> tuple[list[dict[str, float]], CardState | None]:
    """Named vectors of ``txns`` for one card (merchant buckets discarded)."""
    state: CardState | None = None
    merchant = MerchantState()
    out = []
    for t in txns:
        vector, state, _ = compute(state, merchant, t)
        out.append(named(vector))
    return out, state


def at(*offsets_ms: int, **overrides: Any) -> list[dict[str, Any]]:
    return [txn(txn_id=f"t{i}", event_time=T0 + o, **overrides) for i, o in enumerate(offsets_ms)]


# ----------------------------------------------------------------------- the contract


def test_names_are_unique_and_all_readable() -> None:
    assert len(set(F.FEATURE_NAMES)) == len(F.FEATURE_NAMES) == F.N_FEATURES == 30
    assert set(F.READABLE) == set(F.FEATURE_NAMES)
    assert all(F.READABLE[name] for name in F.FEATURE_NAMES)
    assert F.READABLE["txn_count_1h"] == "many transactions on this card in the last hour"


def test_fingerprint_is_sha256_hex_and_stable_across_processes() -> None:
    assert len(F.FEATURE_SET_FINGERPRINT) == 64
    int(F.FEATURE_SET_FINGERPRINT, 16)
    code = "from services.core import features; print(features.FEATURE_SET_FINGERPRINT)"
    for seed in ("0", "12345"):  # hash randomisation must not leak into it
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        )
        assert out.stdout.strip() == F.FEATURE_SET_FINGERPRINT


def test_fingerprint_is_pinned() -> None:
    # Changing names, order, parameters or logic version changes this on purpose: update
    # the pin, and bump FEATURE_LOGIC_VERSION if compute() changed behaviour.
    assert F.FEATURE_SET_FINGERPRINT == ("975c967e993bd0c9256684a0ebe2f32a37c3973e898eb76b72f7b58dfc2bee32")


def test_compute_does_not_mutate_its_inputs() -> None:
    merchant = MerchantState(T0 // HOUR, {T0 // HOUR: 2}, {}, {T0 // DAY: 2}, {T0 // DAY: 500})
    before = merchant.as_dict()
    _, state, _ = compute(None, merchant, txn())
    snapshot = state.to_bytes()
    record = txn(txn_id="t2", event_time=T0 + MIN)
    frozen = dict(record)
    compute(state, merchant, record)
    assert merchant.as_dict() == before
    assert state.to_bytes() == snapshot
    assert record == frozen


# ----------------------------------------------------------------------- the transaction


def test_first_transaction_of_a_card() -> None:
    [v], state = run([txn(amount=25.5, channel="ECOM", mcc=7995, device_id="dev-1")])
    assert v["amount"] == 25.5
    assert v["log_amount"] == math.log1p(25.5)
    assert (v["hour_of_day"], v["day_of_week"]) == (0.0, 2.0)  # Wednesday
    assert (v["is_ecom"], v["is_atm"], v["is_card_not_present"]) == (1.0, 0.0, 1.0)
    assert v["has_device_id"] == 1.0 and v["mcc_risk_group"] == 2.0
    assert (v["txn_count_1h"], v["txn_count_24h"], v["txn_count_7d"]) == (1.0, 1.0, 1.0)
    assert (v["amount_sum_1h"], v["amount_sum_24h"], v["amount_sum_7d"]) == (25.5, 25.5, 25.5)
    assert v["card_prior_txn_count"] == 0.0 and v["card_age_days"] == 0.0
    for missing in ("amount_to_card_mean", "amount_zscore", "secs_since_last_txn"):
        assert math.isnan(v[missing]), missing
    assert (v["is_new_merchant"], v["is_new_country"], v["is_new_device"]) == (1.0, 1.0, 1.0)
    assert (v["distinct_merchants_24h"], v["distinct_countries_24h"]) == (1.0, 1.0)
    assert v["merchant_txn_count_1h"] == v["merchant_txn_count_24h"] == 0.0
    assert v["merchant_new_card_count_24h"] == 0.0
    assert math.isnan(v["merchant_mean_amount_7d"]) and math.isnan(v["amount_to_merchant_mean"])
    assert state == CardState(
        (T0,), (25.5,), ("m-1",), ("DE",), T0, T0, 1, 25.5, 0.0, ("m-1",), ("DE",), ("dev-1",)
    )


def test_no_device_is_missing_not_new() -> None:
    [first, second], _ = run(at(0, MIN))
    assert math.isnan(first["is_new_device"]) and math.isnan(second["is_new_device"])
    assert first["has_device_id"] == 0.0


@pytest.mark.parametrize(
    ("channel", "flags"),
    [
        ("POS", (0.0, 0.0, 0.0)),
        ("ECOM", (1.0, 0.0, 1.0)),
        ("ATM", (0.0, 1.0, 0.0)),
        ("MOTO", (0.0, 0.0, 1.0)),
        ("UNKNOWN", (0.0, 0.0, 0.0)),
    ],
)
def test_channel_flags(channel: str, flags: tuple[float, float, float]) -> None:
    [v], _ = run([txn(channel=channel)])
    assert (v["is_ecom"], v["is_atm"], v["is_card_not_present"]) == flags


@pytest.mark.parametrize(("mcc", "group"), [(5411, 0.0), (5732, 1.0), (3005, 1.0), (6051, 2.0)])
def test_mcc_risk_group(mcc: int, group: float) -> None:
    [v], _ = run([txn(mcc=mcc)])
    assert v["mcc_risk_group"] == group


def test_time_of_day_and_weekday_come_from_event_time_in_utc() -> None:
    # 2024-05-05 is a Sunday; 23:59:59.999 UTC is still hour 23 of Sunday.
    [v], _ = run([txn(event_time=T0 + 5 * DAY - 1)])
    assert (v["hour_of_day"], v["day_of_week"]) == (23.0, 6.0)


# ----------------------------------------------------------------------- card windows


@pytest.mark.parametrize(
    ("name", "window"), [("txn_count_1h", HOUR), ("txn_count_24h", DAY), ("txn_count_7d", 7 * DAY)]
)
def test_window_is_half_open_at_its_start(name: str, window: int) -> None:
    # (t - W, t]: an event exactly W ago is out, one W - 1 ms ago is in.
    vectors, _ = run(at(0, window))
    assert vectors[1][name] == 1.0
    vectors, _ = run(at(0, window - 1))
    assert vectors[1][name] == 2.0


def test_velocity_counts_and_sums() -> None:
    offsets = [0, 2 * DAY, 6 * DAY, 6 * DAY + 23 * HOUR, 7 * DAY - 30 * MIN, 7 * DAY]
    amounts = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    records = [
        txn(txn_id=f"t{i}", event_time=T0 + o, amount=a)
        for i, (o, a) in enumerate(zip(offsets, amounts, strict=True))
    ]
    vectors, state = run(records)
    last = vectors[-1]
    # 1h: 7d-30m and itself; 24h: 6d is exactly 24 h back, so out; 7d: T0 is out
    assert (last["txn_count_1h"], last["txn_count_24h"], last["txn_count_7d"]) == (2.0, 3.0, 5.0)
    assert last["amount_sum_1h"] == 16.0 + 32.0
    assert last["amount_sum_24h"] == (8.0 + 16.0) + 32.0
    assert last["amount_sum_7d"] == (2.0 + 4.0 + 8.0 + 16.0) + 32.0
    assert last["secs_since_last_txn"] == 30 * 60.0
    assert last["card_age_days"] == 7.0
    assert last["card_prior_txn_count"] == 5.0
    assert state is not None
    assert state.times == tuple(T0 + o for o in offsets[1:])  # T0 is 7 d older than the newest


def test_out_of_order_event_is_inserted_in_time_order() -> None:
    records = at(0, 2 * HOUR, HOUR, 2 * HOUR + 30 * MIN)  # the third arrives late
    records[2]["amount"] = 5.0
    vectors, state = run(records)
    late = vectors[2]
    assert late["secs_since_last_txn"] == 3600.0  # gap to the event before it, not after
    assert late["txn_count_1h"] == 1.0  # T0 is exactly 1 h before: out; T0+2h is later: out
    assert late["txn_count_24h"] == 2.0  # T0 and itself; never the newer event
    assert late["amount_sum_24h"] == 10.0 + 5.0
    assert late["card_age_days"] == HOUR / DAY
    after = vectors[3]
    assert after["secs_since_last_txn"] == 1800.0
    assert after["txn_count_1h"] == 2.0  # T0+2h and itself (T0+1h is 1.5 h before)
    assert state is not None
    assert state.times == (T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 2 * HOUR + 30 * MIN)
    assert state.amounts == (10.0, 5.0, 10.0, 10.0)
    assert state.last_time == T0 + 2 * HOUR + 30 * MIN


def test_late_event_before_every_kept_event() -> None:
    vectors, state = run(at(DAY, 0))
    late = vectors[1]
    assert math.isnan(late["secs_since_last_txn"])  # no earlier event known
    assert late["card_age_days"] == 0.0  # it is the oldest event: age 0, not negative
    assert late["txn_count_24h"] == 1.0
    assert state is not None and state.first_time == T0 and state.times == (T0, T0 + DAY)


def test_event_older_than_the_kept_window_is_not_kept() -> None:
    vectors, state = run(at(10 * DAY, DAY))
    assert vectors[1]["txn_count_7d"] == 1.0
    assert state is not None
    assert state.times == (T0 + 10 * DAY,)
    assert state.first_time == T0 + DAY and state.n == 2


def test_equal_times_count_both_and_keep_processing_order() -> None:
    records = at(0, 0, 0)
    for i, record in enumerate(records):
        record["amount"] = float(i + 1)
    vectors, state = run(records)
    assert vectors[2]["txn_count_1h"] == 3.0 and vectors[2]["secs_since_last_txn"] == 0.0
    assert state is not None and state.amounts == (1.0, 2.0, 3.0)


def test_window_is_capped() -> None:
    records = at(*range(0, (F.CARD_WINDOW_CAP + 10) * 1000, 1000))
    vectors, state = run(records)
    assert state is not None and len(state.times) == F.CARD_WINDOW_CAP
    assert state.times[0] == T0 + 10 * 1000  # the oldest ones went
    assert vectors[-1]["txn_count_1h"] == F.CARD_WINDOW_CAP + 1.0
    assert vectors[-1]["card_prior_txn_count"] == F.CARD_WINDOW_CAP + 9.0


# ----------------------------------------------------------------------- card history


def test_amount_against_card_history() -> None:
    records = at(0, MIN, 2 * MIN)
    for record, amount in zip(records, (10.0, 20.0, 45.0), strict=True):
        record["amount"] = amount
    vectors, state = run(records)
    assert vectors[1]["amount_to_card_mean"] == 2.0
    assert math.isnan(vectors[1]["amount_zscore"])  # one prior amount: no spread yet
    # mean 15, sample variance ((10-15)^2 + (20-15)^2) / 1 = 50
    assert vectors[2]["amount_to_card_mean"] == 45.0 / 15.0
    assert vectors[2]["amount_zscore"] == (45.0 - 15.0) / math.sqrt(50.0)
    assert state is not None and (state.n, state.mean, state.m2) == (3, 25.0, 650.0)


def test_zscore_spread_is_floored_for_constant_amounts() -> None:
    records = at(0, MIN, 2 * MIN)
    records[2]["amount"] = 12.0
    vectors, _ = run(records)
    assert vectors[2]["amount_zscore"] == (12.0 - 10.0) / (0.1 * 10.0)


def test_new_merchant_country_device_flags() -> None:
    records = [
        txn(txn_id="a", event_time=T0, merchant_id="m-1", country="DE", device_id="d1"),
        txn(txn_id="b", event_time=T0 + MIN, merchant_id="m-2", country="DE", device_id="d1"),
        txn(txn_id="c", event_time=T0 + 2 * MIN, merchant_id="m-1", country="FR", device_id="d2"),
        txn(txn_id="d", event_time=T0 + 3 * MIN, merchant_id="m-2", country="FR", device_id="d1"),
    ]
    vectors, state = run(records)
    flags = [(v["is_new_merchant"], v["is_new_country"], v["is_new_device"]) for v in vectors]
    assert flags == [(1.0, 1.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 1.0), (0.0, 0.0, 0.0)]
    assert [v["distinct_merchants_24h"] for v in vectors] == [1.0, 2.0, 2.0, 2.0]
    assert [v["distinct_countries_24h"] for v in vectors] == [1.0, 1.0, 2.0, 2.0]
    assert state is not None
    assert state.seen_merchants == ("m-1", "m-2")  # most recently used last
    assert state.seen_devices == ("d2", "d1")


def test_distinct_counts_only_look_back_24h() -> None:
    records = at(0, DAY - 1, DAY, DAY + MIN)
    records[0]["merchant_id"], records[0]["country"] = "m-0", "NL"
    records[3]["merchant_id"] = "m-9"
    vectors, _ = run(records)
    assert vectors[2]["distinct_merchants_24h"] == 1.0  # m-0 at T0 is exactly 24 h back
    assert vectors[1]["distinct_countries_24h"] == 2.0
    assert vectors[3]["distinct_merchants_24h"] == 2.0


def test_seen_set_is_bounded_and_forgets_the_least_recent() -> None:
    cap = F.SEEN_CAP
    records = [txn(txn_id=f"t{i}", event_time=T0 + i * 8 * DAY, merchant_id=f"m-{i}") for i in range(cap + 1)]
    records.append(txn(txn_id="back", event_time=T0 + (cap + 1) * 8 * DAY, merchant_id="m-0"))
    vectors, state = run(records)
    assert vectors[-1]["is_new_merchant"] == 1.0  # m-0 was evicted by the 65th merchant
    assert state is not None and len(state.seen_merchants) == cap
    assert state.seen_merchants[-1] == "m-0" and "m-1" not in state.seen_merchants
