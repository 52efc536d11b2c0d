"""Drift end to end: a seeded Score stream with an onset gives one retrain event within
3 windows; the same stream without drift gives none; exported PSI equals numpy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from services.core import topics
from services.core.drift import Reference
from tests.integration.monitor.conftest import (
    MIN_MS,
    NAMES,
    ORIGIN,
    T0,
    MonitorEnv,
    MonitorProcess,
    champion_manifest,
    score_stream,
)

WINDOWS, PER_WINDOW, ONSET = 24, 300, 12
FLAGS = {
    "window_s": 60,
    "window_min_records": 200,
    "allowed_lateness_s": 0,
    "drift_consecutive": 3,
    "drift_alpha": 0.01,
    "drift_min_psi": 0.1,
}


def numpy_psi(reference: Reference, values: np.ndarray, j: int) -> float:
    """PSI of one variable in one window, straight from the bin layout and the formula."""
    spec = reference.specs[j]
    inner = 2 + np.searchsorted(np.asarray(spec.edges), values, side="left")
    inner[values < spec.minimum] = 1
    inner[values > spec.maximum] = spec.n_bins - 1
    inner[np.isnan(values)] = 0
    counts = np.bincount(inner, minlength=spec.n_bins)
    eps = reference.epsilon
    e = (np.asarray(spec.expected) + eps) / (1 + eps * spec.n_bins)
    a = (counts / counts.sum() + eps) / (1 + eps * spec.n_bins)
    return float(np.sum((a - e) * np.log(a / e)))


def test_drift_onset_gives_one_retrain_event_and_exact_psi(
    monitor_env: MonitorEnv, start_monitor: Callable[..., MonitorProcess]
) -> None:
    stream = score_stream(seed=21, windows=WINDOWS, per_window=PER_WINDOW, shift_from=ONSET)
    monitor_env.produce_origin()
    monitor_env.produce_scores(stream)
    proc = start_monitor(monitor_env, **FLAGS)
    proc.wait_for("fraudstream_monitor_windows_closed_total", WINDOWS - 1, result="evaluated")
    proc.wait_decided(T0 + (WINDOWS - 1) * MIN_MS)

    [event] = monitor_env.retrain_events()
    assert event["reason"] == "DRIFT" and event["model_version"] == "1"
    assert event["window_start"] == T0 + ONSET * MIN_MS  # the onset window opens the incident
    assert event["window_end"] <= T0 + (ONSET + 3) * MIN_MS  # declared within 3 windows
    assert "amount" in event["drifted_features"] and "score" in event["drifted_features"]
    assert event["emitted_at"] == event["window_end"]

    reference = Reference.from_manifest(champion_manifest()["psi_reference"], NAMES)
    windows = monitor_env.windows()
    windows.pop(ORIGIN, None)  # the origin's window: a week behind, already forgotten
    assert sorted(windows) == [T0 + w * MIN_MS for w in range(WINDOWS)]
    last_psi: dict[str, float] = {}
    for start, window in sorted(windows.items()):  # the changelog's key order is not time order
        ev = window["eval"]
        if ev is None:
            assert start == T0 + (WINDOWS - 1) * MIN_MS  # the newest window is still open
            continue
        rows = (stream.t >= start) & (stream.t < start + MIN_MS)
        assert ev["n"] == int(rows.sum()) and ev["late"] == 0
        for j, name in enumerate([*NAMES, "score"]):
            column = stream.scores[rows] if name == "score" else stream.X[rows, j]
            assert ev["psi"][name] == pytest.approx(numpy_psi(reference, column, j), abs=1e-9)
        last_psi = ev["psi"]
    metrics = proc.metrics()
    for name, value in last_psi.items():
        assert metrics[("fraudstream_monitor_psi", (("feature", name),))] == pytest.approx(value, abs=1e-9)
    assert proc.stop() == 0


def test_same_length_without_drift_gives_no_event(
    monitor_env: MonitorEnv, start_monitor: Callable[..., MonitorProcess]
) -> None:
    stream = score_stream(seed=22, windows=WINDOWS, per_window=PER_WINDOW)
    # An aborted transaction full of drifted scores: read_committed must never see it.
    drifted = score_stream(seed=23, windows=WINDOWS, per_window=100, shift_from=0, shift=3.0)
    monitor_env.produce_aborted(
        topics.SCORES, monitor_env.score_values(drifted, [f"aborted{i}" for i in range(len(drifted))])
    )
    garbage: list[tuple[Any, Any]] = [(b"k1", b"not avro"), (b"k2", None)]
    monitor_env.produce(topics.SCORES, garbage)
    monitor_env.produce_origin()
    monitor_env.produce_scores(stream)
    proc = start_monitor(monitor_env, **FLAGS)
    proc.wait_for("fraudstream_monitor_windows_closed_total", WINDOWS - 1, result="evaluated")
    proc.wait_decided(T0 + (WINDOWS - 1) * MIN_MS)

    assert monitor_env.retrain_events() == []
    counted = proc.value("fraudstream_monitor_records_total", topic="scores", outcome="counted")
    assert counted == len(stream) + 1
    assert proc.value("fraudstream_monitor_drift_active") == 0
    dead = monitor_env.read(topics.MONITOR_DLQ)
    assert [(m.key(), m.value()) for m in dead] == garbage
    headers = dict(dead[0].headers() or [])
    assert headers[topics.DLQ_ERROR_REASON] == b"bad_marker"
    assert headers[topics.DLQ_ORIGINAL_TOPIC] == monitor_env.topic(topics.SCORES).encode()
    assert headers[topics.DLQ_SERVICE] == b"monitor"
    assert proc.value("fraudstream_monitor_dead_lettered_total", topic="scores", reason="bad_marker") == 2
    assert proc.stop() == 0
