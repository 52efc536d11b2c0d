"""Merchant buckets: windows, increments, watermark horizon and trimming."""

from __future__ import annotations

import random

from services.core.features import (
    MERCHANT_DAILY_KEEP_D,
    MERCHANT_HOURLY_KEEP_H,
    MerchantDelta,
    MerchantState,
    MerchantWindow,
    compute,
    named,
)

H0 = 1_714_521_600_000 // 3_600_000  # epoch hour of 2024-05-01T00Z (a day boundary)


def test_window_reads_hour_and_day_buckets_before_the_transaction() -> None:
    m = MerchantState()
    m.add(MerchantDelta(H0 + 5, 1000, True))  # 10.00
    m.add(MerchantDelta(H0 + 5, 2001, False))  # 20.01
    m.add(MerchantDelta(H0 - 19, 300, True))  # 24 h before H0+5: outside its 24 h window
    m.add(MerchantDelta(H0 - 18, 500, False))  # 23 h before H0+5: inside
    assert m.window(H0 + 5) == MerchantWindow(
        count_1h=2, count_24h=3, new_cards_24h=1, count_7d=4, cents_7d=3801
    )
    assert m.window(H0 + 6) == MerchantWindow(0, 2, 1, 4, 3801)
    assert m.window(H0 + 5 + 24) == MerchantWindow(0, 0, 0, 4, 3801)  # day window: 7 days
    assert m.window(H0 + 24 * 7) == MerchantWindow(0, 0, 0, 0, 0)


def test_merchant_features_in_compute() -> None:
    m = MerchantState()
    m.add(MerchantDelta(H0, 1000, True))
    m.add(MerchantDelta(H0, 3000, False))
    txn = {
        "txn_id": "t",
        "card_id": "c",
        "merchant_id": "m",
        "mcc": 1,
        "amount": 40.0,
        "currency": "EUR",
        "country": "DE",
        "channel": "POS",
        "device_id": None,
        "event_time": H0 * 3_600_000 + 5,
    }
    vector, _, delta = compute(None, m, txn)
    v = named(vector)
    assert (v["merchant_txn_count_1h"], v["merchant_txn_count_24h"]) == (2.0, 2.0)
    assert v["merchant_new_card_count_24h"] == 1.0
    assert v["merchant_mean_amount_7d"] == 4000 / 200
    assert v["amount_to_merchant_mean"] == 40.0 / 20.0
    assert delta == MerchantDelta(H0, 4000, True)  # own delta is not in its own features


def test_amount_in_cents_is_rounded() -> None:
    base = {"txn_id": "t", "card_id": "c", "merchant_id": "m", "mcc": 1, "currency": "EUR",
            "country": "DE", "channel": "POS", "device_id": None, "event_time": 0}  # fmt: skip
    for amount, cents in ((19.99, 1999), (0.1 + 0.2, 30), (1234.5678, 123457), (7, 700)):
        _, _, delta = compute(None, MerchantState(), {**base, "amount": amount})
        assert delta.cents == cents


def test_watermark_horizon_cuts_windows_of_very_late_events() -> None:
    m = MerchantState()
    m.add(MerchantDelta(H0, 100, False))
    m.add(MerchantDelta(H0 + 1, 100, False))
    w = H0 + 1 + MERCHANT_HOURLY_KEEP_H  # watermark moves far ahead
    m.add(MerchantDelta(w, 100, False))
    # An event at H0+1 is now more than 72 h behind the watermark: H0 and H0+1 are dead.
    assert m.window(H0 + 1).count_24h == 0 and m.window(H0 + 1).count_1h == 0
    # Events inside the horizon still see everything in their window.
    assert m.window(w).count_24h == 1
    assert m.window(H0 + 2).count_7d == 2  # day buckets are kept 10 days


def test_trimming_drops_only_dead_buckets_and_matches_an_untrimmed_twin() -> None:
    rng = random.Random(11)
    trimmed = MerchantState()
    hours: list[MerchantDelta] = []
    for i in range(3000):
        hour = H0 + i // 4 - rng.choice([0, 0, 0, 1, 5, 30, 80, 300])
        delta = MerchantDelta(hour, rng.randrange(1, 50_000), rng.random() < 0.2)
        # the reference keeps every bucket and applies the same read horizon by hand
        w = trimmed.watermark
        expected = naive_window(hours, hour, w)
        assert trimmed.window(hour) == expected
        trimmed.add(delta)
        hours.append(delta)
    # Late deltas may add dead buckets; the next day the watermark enters trims them all.
    assert trimmed.watermark is not None
    w = (trimmed.watermark // 24 + 1) * 24
    trimmed.add(MerchantDelta(w, 1, False))
    assert min(trimmed.hour_counts) > w - MERCHANT_HOURLY_KEEP_H
    assert min(trimmed.day_counts) > w // 24 - MERCHANT_DAILY_KEEP_D
    assert len(trimmed.hour_counts) <= MERCHANT_HOURLY_KEEP_H + 1


def naive_window(deltas: list[MerchantDelta], hour: int, w: int | None) -> MerchantWindow:
    lo_h, lo_d, day = hour - 23, hour // 24 - 6, hour // 24
    if w is not None:
        lo_h = max(lo_h, w - MERCHANT_HOURLY_KEEP_H + 1)
        lo_d = max(lo_d, w // 24 - MERCHANT_DAILY_KEEP_D + 1)
    in_h = [d for d in deltas if lo_h <= d.hour <= hour]
    in_d = [d for d in deltas if lo_d <= d.hour // 24 <= day]
    return MerchantWindow(
        sum(1 for d in in_h if d.hour == hour),
        len(in_h),
        sum(1 for d in in_h if d.new_card),
        len(in_d),
        sum(d.cents for d in in_d),
    )


def test_add_increments_and_moves_the_watermark_forward_only() -> None:
    m = MerchantState()
    m.add(MerchantDelta(H0, 100, True))
    m.add(MerchantDelta(H0 - 2, 250, False))  # late: no watermark move
    assert m == MerchantState(
        H0, {H0: 1, H0 - 2: 1}, {H0: 1}, {H0 // 24: 1, H0 // 24 - 1: 1}, {H0 // 24: 100, H0 // 24 - 1: 250}
    )


def test_empty_merchant_window_is_zero() -> None:
    assert MerchantState().window(H0) == MerchantWindow(0, 0, 0, 0, 0)


def test_memo_of_the_last_window_always_equals_a_fresh_read() -> None:
    rng = random.Random(5)
    m = MerchantState()
    for i in range(4000):
        now = H0 + i // 6
        if rng.random() < 0.5:
            hour = now - rng.choice([0, 0, 0, 1, 3, 23, 24, 70, 75, 200])
            fresh = MerchantState(m.watermark, m.hour_counts, m.hour_new_cards, m.day_counts, m.day_cents)
            assert m.window(hour) == fresh.window(hour), i
        else:
            hour = now - rng.choice([0, 0, 0, 0, 2, 30, 80, 300]) + rng.choice([0, 0, 0, 50, 100])
            m.add(MerchantDelta(hour, rng.randrange(1, 10_000), rng.random() < 0.3))


def test_memo_is_dropped_when_the_horizon_moves_into_its_windows() -> None:
    m = MerchantState()
    m.add(MerchantDelta(H0, 100, True))
    assert m.window(H0 + 1).count_24h == 1  # memo for H0+1
    m.add(MerchantDelta(H0 + 1 + MERCHANT_HOURLY_KEEP_H, 100, False))  # H0 falls off
    assert m.window(H0 + 1) == MerchantWindow(0, 0, 0, 1, 100)
    m.add(MerchantDelta(H0 + 1 + 24 * MERCHANT_DAILY_KEEP_D, 100, False))
    assert m.window(H0 + 1) == MerchantWindow(0, 0, 0, 0, 0)


def test_sliding_the_memo_forward_equals_a_fresh_read() -> None:
    # Reads a few hours after the memo's hour (the common case) are slid from the memo;
    # gaps cross day boundaries and the horizon, with late deltas in between.
    rng = random.Random(23)
    m = MerchantState()
    hour = H0
    for i in range(5000):
        hour += rng.choice([0, 1, 1, 2, 3, 5, 11, 12, 13])
        for _ in range(rng.choice([0, 1, 1, 2])):
            late = hour - rng.choice([0, 0, 1, 6, 23, 24, 71, 72, 200])
            m.add(MerchantDelta(late, rng.randrange(1, 10_000), rng.random() < 0.3))
        fresh = MerchantState(m.watermark, m.hour_counts, m.hour_new_cards, m.day_counts, m.day_cents)
        assert m.window(hour) == fresh.window(hour), i
        m.add(MerchantDelta(hour, rng.randrange(1, 10_000), rng.random() < 0.3))


def test_advancing_the_memo_past_an_untidy_state_equals_a_fresh_read() -> None:
    # A state built with buckets above its watermark (or negative counts) is never
    # assumed empty above the watermark: reads after the memo stay exact.
    odd = [
        (H0, {H0 + 2: 5, H0 - 1: 1}, {H0 + 2: 1}, {H0 // 24 + 1: 3}, {H0 // 24 + 1: 70}),
        (H0, {H0 - 1: -2, H0: 1}, {H0 - 1: 1}, {}, {}),
        (None, {H0 + 1: 1}, {}, {H0 // 24: 1}, {H0 // 24: 5}),
    ]
    for w, hc, hn, dc, ds in odd:
        m = MerchantState(w, hc, hn, dc, ds)
        for hour in (H0, H0 + 1, H0 + 2, H0 + 3, H0 + 30, H0 + 200):
            fresh = MerchantState(w, hc, hn, dc, ds)
            assert m.window(hour) == fresh.window(hour), (w, hour)
