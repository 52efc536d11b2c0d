"""The backtest's pieces: SVG charts, figures, batching of the monitor pass."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from services.backtest import figures, svg
from services.backtest.monitor_pass import batches
from services.core.drift import DriftConfig, WindowConfig
from services.monitor.core import MonitorConfig

T0 = 1_767_225_600_000
DAY = 86_400_000
SVG_NS = "{http://www.w3.org/2000/svg}"


def config(window_ms: int = 3_600_000, lateness_ms: int = 0) -> MonitorConfig:
    return MonitorConfig(
        window=WindowConfig(window_ms, lateness_ms, 1),
        drift=DriftConfig(),
        horizon_days=90,
        min_maturity=0.8,
        recall_margin=0.1,
        cooldown_ms=0,
    )


def test_chart_is_well_formed_svg_with_gaps_rules_and_escaped_text() -> None:
    chart = svg.Chart(
        "PSI <amount> & co",
        [
            svg.Series(
                "psi",
                [T0, T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY],
                [0.1, math.nan, 0.3, 0.2],
                style="line+dots",
                hollow=[True, False, False, True],
            ),
            svg.Series("limit", [T0, T0 + 3 * DAY], [0.25, 0.25], dash="4 3"),
        ],
        hrules=[svg.Rule(0.25, "threshold")],
        vrules=[svg.Rule(T0 + DAY, "onset")],
        x_time=True,
        extra={"figure": "psi"},
    )
    text = svg.render(chart)
    root = ET.fromstring(text)  # parses: well-formed XML
    assert root.tag == f"{SVG_NS}svg" and root.get("data-figure") == "psi"
    assert root.find(f"{SVG_NS}title").text == "PSI <amount> & co"  # type: ignore[union-attr]
    lines = root.findall(f"{SVG_NS}polyline")
    assert len(lines) == 3  # the NaN splits the first series in two runs; the limit is one
    circles = root.findall(f"{SVG_NS}circle")
    assert len(circles) == 3 and sum(c.get("fill") == "#fff" for c in circles) == 2
    assert "Jan 02" in text and svg.render(chart) == text  # deterministic


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (0, 0.037), (-6, 0), (3, 3017)])
def test_nice_ticks_cover_the_range_with_round_steps(lo: float, hi: float) -> None:
    ticks = svg.nice_ticks(lo, hi)
    assert 3 <= len(ticks) <= 11
    assert ticks[0] >= lo - 1e-12 and ticks[-1] <= hi + 1e-9
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1


def test_time_ticks_are_midnights() -> None:
    ticks = svg.time_ticks(T0 + 5000, T0 + 60 * DAY)
    assert all(t % DAY == 0 for t in ticks) and 2 <= len(ticks) <= 7


def test_clean_makes_standard_json() -> None:
    got = figures.clean({"a": math.nan, "b": [np.float64(1.5), np.int64(2), math.inf], "c": (None,)})
    assert got == {"a": None, "b": [1.5, 2, None], "c": [None]}


def test_score_histogram_shares_per_class() -> None:
    scores = np.array([1e-9, 0.001, 0.002, 0.5, 0.99, 1.0])
    y = np.array([False, False, False, False, True, True])
    h = figures.score_histogram(scores, y)
    assert sum(h["legit"]["share"]) == pytest.approx(1.0) and h["legit"]["n"] == 4
    assert sum(h["fraud"]["share"]) == pytest.approx(1.0)
    assert h["legit"]["share"][0] == 0.25  # below 1e-6 lands in the first bin
    assert h["fraud"]["share"][-1] == 1.0


def test_daily_shares() -> None:
    t = np.array([T0, T0 + 1, T0 + DAY, T0 + DAY + 5], dtype=np.int64)
    d = np.array(["ALLOW", "BLOCK", "REVIEW", "REVIEW"], dtype=object)
    got = figures.daily(t, d)
    assert got["day_ms"] == [T0, T0 + DAY] and got["n"] == [2, 2]
    assert got["block_share"] == [0.5, 0.0] and got["alert_share"] == [0.5, 1.0]


def test_quality_recall_and_precision_at_thresholds() -> None:
    scores = np.array([0.1, 0.2, 0.9, 0.8])
    y = np.array([False, True, True, False])
    d = np.array(["ALLOW", "ALLOW", "BLOCK", "REVIEW"], dtype=object)
    q = figures.quality(scores, y, d)
    assert q is not None
    assert q["recall_at_review_threshold"] == 0.5 and q["recall_at_block_threshold"] == 0.5
    assert q["precision_at_review_threshold"] == 0.5 and q["positives"] == 2
    assert figures.quality(scores, None, d) is None


def test_batches_cut_at_kind_changes_clock_windows_and_size() -> None:
    hour = 3_600_000
    kinds = np.array([0, 0, 0, 1, 0, 0, 0, 0], dtype=np.int8)
    times = np.array([0, 10, hour - 1, hour - 1, hour, hour + 1, 2 * hour, 2 * hour + 1], dtype=np.int64) + T0
    assert batches(kinds, times, config()) == [(0, 3), (3, 4), (4, 6), (6, 8)]
    assert batches(kinds, times, config(), max_batch=1) == [(i, i + 1) for i in range(8)]
    # The monitor's clock runs allowed-lateness behind the data: the cut moves with it.
    late = batches(kinds, times, config(lateness_ms=5))
    assert late == [(0, 1), (1, 3), (3, 4), (4, 6), (6, 8)]
    late = batches(kinds, times, config(lateness_ms=hour))
    assert late == [(0, 3), (3, 4), (4, 6), (6, 8)]
    assert batches(np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int64), config()) == []
