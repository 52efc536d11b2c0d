"""Restart: a monitor stopped mid-stream and started again ends with the same figures
as one that ran through; a crashed agent leaves its batch unacknowledged."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import wait_until
from tests.integration.monitor.conftest import (
    MIN_MS,
    T0,
    MonitorEnv,
    MonitorProcess,
    score_stream,
)

WINDOWS, PER_WINDOW = 20, 250
FLAGS = {"window_s": 60, "window_min_records": 200, "allowed_lateness_s": 0, "recall_margin": 0.99}
FAILING = Path(__file__).with_name("failing_monitor.py")
LATE_SEEK = Path(__file__).with_name("late_seek_monitor.py")


def produce(env: MonitorEnv, part: slice, stream: Any, labels: list[tuple[str, int, bool]]) -> None:
    ids = [f"t{i}" for i in range(len(stream))][part]
    env.produce(
        "scores", env.score_values(type(stream)(stream.t[part], stream.X[part], stream.scores[part]), ids)
    )
    env.produce_labels([lab for lab in labels if lab[0] in set(ids)])


def figures(env: MonitorEnv, proc: MonitorProcess) -> dict[str, Any]:
    metrics = proc.metrics()
    recall = {
        k: v
        for k, v in metrics.items()
        if k[0] in ("fraudstream_monitor_recall", "fraudstream_monitor_label_maturity") and not math.isnan(v)
    }
    return {
        "windows": {s: w["eval"] for s, w in env.windows().items()},
        "events": [{k: v for k, v in e.items()} for e in env.retrain_events()],
        "recall": recall,
        "tracked": metrics.get(("fraudstream_monitor_tracked_transactions", ())),
    }


def wait_done(proc: MonitorProcess, n_windows: int, tracked: int) -> None:
    proc.wait_for("fraudstream_monitor_windows_closed_total", n_windows, result="evaluated")
    proc.wait_for("fraudstream_monitor_tracked_transactions", tracked)
    proc.wait_for("fraudstream_monitor_pending_labels", 0)
    proc.wait_decided(T0 + (WINDOWS - 1) * MIN_MS)  # the start of the newest, open window


@pytest.mark.parametrize("script", [None, LATE_SEEK], ids=["cli", "late-seek"])
def test_restart_mid_stream_equals_an_uninterrupted_run(
    make_env: Callable[[], MonitorEnv], start_monitor: Callable[..., MonitorProcess], script: Path | None
) -> None:
    stream = score_stream(seed=41, windows=WINDOWS, per_window=PER_WINDOW, shift_from=10)
    n = len(stream)
    rng = np.random.default_rng(42)
    labelled = rng.choice(n, 300, replace=False)
    # Labels minutes after their scores: the clock (the scores' time) passes them, so
    # they are applied; the last ones stay buffered across the restart.
    labels = [
        (f"t{i}", int(stream.t[i]) + int(rng.integers(MIN_MS, 5 * MIN_MS)), bool(i % 2)) for i in labelled
    ]
    half = slice(0, n // 2)

    straight = make_env()
    straight.produce_origin()
    produce(straight, slice(0, n), stream, labels)
    proc = start_monitor(straight, **FLAGS)
    wait_done(proc, WINDOWS - 1, n + 1)

    restarted = make_env()
    restarted.produce_origin()
    produce(restarted, half, stream, labels)
    first = start_monitor(restarted, **FLAGS)
    first.wait_for("fraudstream_monitor_records_total", n // 2 + 1, topic="scores", outcome="counted")
    assert first.stop() == 0
    produce(restarted, slice(n // 2, n), stream, labels)
    second = start_monitor(restarted, script, **FLAGS)
    wait_done(second, WINDOWS - 1 - 9, n + 1)  # the second run closes windows 9..18

    expected = figures(straight, proc)
    assert expected["events"] and expected["events"][0]["reason"] == "DRIFT"
    assert expected["recall"]
    try:
        wait_until(
            lambda: figures(restarted, second) == expected,
            timeout=30,
            interval=0.5,
            message="restarted figures == uninterrupted figures",
        )
    except AssertionError:
        assert figures(restarted, second) == expected  # pytest shows where they differ
        raise


def test_a_failed_agent_leaves_its_batch_for_the_restart(
    monitor_env: MonitorEnv, start_monitor: Callable[..., MonitorProcess]
) -> None:
    stream = score_stream(seed=43, windows=3, per_window=200)
    monitor_env.produce_scores(stream)
    failed = start_monitor(monitor_env, FAILING, window_s=60)
    assert failed.proc.wait(timeout=120) == 1, failed.tail()
    output = failed.log.read_text(errors="replace")
    assert "agent scores failed" in output and "injected failure" in output
    proc = start_monitor(monitor_env, **FLAGS)
    # Nothing was skipped: every score is counted once by the restarted worker.
    proc.wait_for("fraudstream_monitor_records_total", len(stream), topic="scores", outcome="counted")
    proc.wait_for("fraudstream_monitor_windows_closed_total", 2, result="evaluated")
    assert (
        proc.value("fraudstream_monitor_window_records")
        == ((stream.t >= T0 + 60_000) & (stream.t < T0 + 120_000)).sum()
    )
