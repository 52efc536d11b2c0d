"""Delayed labels end to end: labels before their scores, long after them, out of order
and duplicated still give the exact cohort recall; mature decay asks for a retrain."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from services.core.metrics import recall_at_top_fraction
from services.core.recall import DAY_MS, SCORE_BINS
from tests.helpers import wait_until
from tests.integration.monitor.conftest import (
    N_FEATURES,
    T0,
    MonitorEnv,
    MonitorProcess,
    Stream,
    score_record,
)

DAYS, PER_DAY = 5, 400


def test_delayed_out_of_order_labels_give_the_right_recall(
    monitor_env: MonitorEnv, start_monitor: Callable[..., MonitorProcess]
) -> None:
    rng = np.random.default_rng(31)
    n = DAYS * PER_DAY
    t = np.sort(T0 + rng.integers(0, DAYS * DAY_MS, n))
    # Scores at the middle of their score bins: the binned top decile is then exact.
    scores = (rng.integers(0, SCORE_BINS, n) + 0.5) / SCORE_BINS
    fraud = rng.random(n) < 0.1
    scores[fraud] = np.minimum(scores[fraud] + 0.3, (SCORE_BINS - 0.5) / SCORE_BINS)
    flagged = (fraud & (rng.random(n) < 0.5)) | (~fraud & (rng.random(n) < 0.02))
    label_t = t + rng.integers(1 * DAY_MS, 30 * DAY_MS, n)
    ids = [f"t{i}" for i in range(n)]
    codec = monitor_env.codec
    stream = Stream(t, rng.normal(size=(n, N_FEATURES)), scores)

    frauds = np.flatnonzero(fraud)
    rng.shuffle(frauds)
    early, late = frauds[:40], frauds[40:]
    labels = [(ids[i], int(label_t[i]), True) for i in early]
    monitor_env.produce_labels(labels)  # before their scores exist
    monitor_env.produce(
        "scores",
        [
            (
                ids[i].encode(),
                codec.encode(
                    "Score",
                    score_record(
                        ids[i],
                        int(t[i]),
                        stream.X[i],
                        float(scores[i]),
                        decision="REVIEW" if flagged[i] else "ALLOW",
                    ),
                ),
            )
            for i in range(n)
        ],
    )
    replay = [(ids[i], int(label_t[i]), True) for i in late]
    replay += replay[:30]  # duplicates
    order = rng.permutation(len(replay))  # out of order
    monitor_env.produce_labels([replay[k] for k in order])
    # Time is the scores' time: a score on day 80 moves the clock there, past every label.
    sentinel = T0 + 80 * DAY_MS
    monitor_env.produce(
        "scores",
        [
            (
                b"clock",
                codec.encode(
                    "Score", score_record("clock", sentinel, [0.0] * N_FEATURES, 0.5, decision="ALLOW")
                ),
            )
        ],
    )

    proc = start_monitor(monitor_env, window_s=3600, allowed_lateness_s=0)
    proc.wait_for("fraudstream_monitor_tracked_transactions", n + 1)
    proc.wait_for("fraudstream_monitor_pending_labels", 0)

    # Ground truth, cohort by cohort (all cohorts are 75-80 days old: bucket 60d+, mature).
    day = (t - T0) // DAY_MS
    captured = sum(
        recall_at_top_fraction(fraud[day == d], scores[day == d], 0.1) * fraud[day == d].sum()
        for d in range(DAYS)
    )
    expected = {"flagged": flagged[fraud].sum() / fraud.sum(), "top_decile": captured / fraud.sum()}

    def published() -> bool:
        values = {
            k: proc.value("fraudstream_monitor_recall", kind=k, age_bucket="60d+", maturity="mature")
            for k in expected
        }
        return all(
            v is not None and not math.isnan(v) and abs(v - expected[k]) < 1e-9 for k, v in values.items()
        )

    wait_until(published, timeout=60, interval=0.5, message=f"recall metrics == {expected}")
    maturity = proc.value("fraudstream_monitor_label_maturity", age_bucket="60d+", maturity="mature")
    assert maturity is not None and maturity > 0.95
    provisional = proc.value(
        "fraudstream_monitor_recall", kind="flagged", age_bucket="0-7d", maturity="provisional"
    )
    assert provisional is not None and math.isnan(provisional)

    # Mature recall (about 0.5) is below the champion's 0.8 - 0.1: a retrain request as
    # soon as the cohorts are mature, over the labels that had arrived by then.
    event = wait_until(monitor_env.retrain_events, timeout=30, message="a RECALL_DECAY event")[0]
    assert event["reason"] == "RECALL_DECAY" and event["recall_baseline"] == 0.8
    at, lo, hi = event["emitted_at"], event["window_start"], event["window_end"]
    assert at % 3_600_000 == 0 and T0 <= lo < hi <= T0 + DAYS * DAY_MS and event["maturity"] >= 0.8
    known = fraud & (label_t < at) & (t >= lo) & (t < hi)
    assert event["recall"] == pytest.approx(flagged[known].sum() / known.sum(), abs=1e-9)
    assert proc.stop() == 0
