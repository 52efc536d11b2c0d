"""The monitor's decisions, offline: :class:`services.monitor.core.MonitorCore` itself,
fed from a file instead of Kafka.

The live monitor reads ``scores`` and ``labels``; here the same core gets the same
records as decoded batches, in the replay's order (:func:`services.core.replay_plan.merged_order`:
by time, a transaction's score before a label at the same millisecond), with its tables
as plain dicts and its metrics on a private registry. So drift windows, PSI, recall
cohorts, cooldowns and retrain event ids come from the very code the service runs.

Batches: runs of one kind, cut where ``time - allowed lateness`` enters a new window and
at the live monitor's batch size. No decision depends on the cuts: the core decides on
its event-time clock (:mod:`services.monitor.core`). In the merged order every label
before a score has been given to the core by the time the score is, which is what the
live monitor establishes by reading the labels topic to its end; after each run of
scores the pass says so (:meth:`MonitorCore.labels_complete`), so the clock is the
scores' watermark, as it is live once the labels are read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from services.core.drift import WindowEvaluation
from services.core.recall import CohortFigures
from services.core.replay_plan import merged_order
from services.monitor.champion import Champion
from services.monitor.core import MonitorConfig, MonitorCore
from services.monitor.metrics import MonitorMetrics
from services.monitor.records import COUNTED, LabelRows, ScoreRows

MAX_BATCH = 2_000  # the live monitor's largest batch


class RecordingMetrics(MonitorMetrics):
    """The monitor's metrics on a private registry, keeping every closed window."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())
        self.closed: list[WindowEvaluation] = []

    def window_closed(self, ev: WindowEvaluation, run: int, active: bool) -> None:
        self.closed.append(ev)
        super().window_closed(ev, run, active)


@dataclass(frozen=True)
class ScoredRows:
    """What the scorer would have published, as columns in transaction order."""

    txn_ids: list[str]
    event_ms: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    flagged: npt.NDArray[np.bool_]
    X: npt.NDArray[np.float64]


@dataclass(frozen=True)
class LabelColumns:
    txn_id: list[str]
    label_ms: npt.NDArray[np.int64]
    is_fraud: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class MonitorOutcome:
    windows: list[WindowEvaluation]  # every closed window, in closing order
    events: list[dict[str, Any]]  # retrain events, as the monitor would publish them
    cohorts: list[CohortFigures]  # recall per event-day cohort when the last score was in
    now_ms: int | None  # the monitor's clock then


def batches(
    kinds: npt.NDArray[np.int8], times: npt.NDArray[np.int64], cfg: MonitorConfig, max_batch: int = MAX_BATCH
) -> list[tuple[int, int]]:
    """``[lo, hi)`` slices of the merged stream: one kind each, cut at the monitor clock's
    window boundaries and at ``max_batch`` records."""
    n = kinds.size
    if n == 0:
        return []
    slots = (times - cfg.window.allowed_lateness_ms) // cfg.window.window_ms
    cuts = np.flatnonzero((kinds[1:] != kinds[:-1]) | (slots[1:] != slots[:-1])) + 1
    bounds = [0, *cuts.tolist(), n]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        out += [(s, min(s + max_batch, hi)) for s in range(lo, hi, max_batch)]
    return out


def score_rows(rows: ScoredRows, idx: npt.NDArray[np.int64], offset: int, version: str) -> ScoreRows:
    n = idx.size
    return ScoreRows(
        partition=np.zeros(n, dtype=np.int64),
        offset=np.arange(offset, offset + n, dtype=np.int64),
        event_ms=rows.event_ms[idx],
        score=rows.scores[idx],
        flagged=rows.flagged[idx],
        txn_id=[rows.txn_ids[i] for i in idx.tolist()],
        version=[version] * n,
        psi_rows=np.ones(n, dtype=bool),
        features=rows.X[idx],
        outcomes=Counter({COUNTED: n}),
    )


def label_rows(labels: LabelColumns, idx: npt.NDArray[np.int64], offset: int) -> LabelRows:
    n = idx.size
    return LabelRows(
        txn_id=[labels.txn_id[i] for i in idx.tolist()],
        label_ms=labels.label_ms[idx].tolist(),
        is_fraud=labels.is_fraud[idx].tolist(),
        partition=[0] * n,
        offset=list(range(offset, offset + n)),
    )


def run_monitor(
    champion: Champion, cfg: MonitorConfig, rows: ScoredRows, labels: LabelColumns
) -> MonitorOutcome:
    """Drive a fresh :class:`MonitorCore` over the scored rows and the labels."""
    metrics = RecordingMetrics()
    core = MonitorCore(cfg, champion, {}, {}, metrics)
    core.load()
    kinds, pos = merged_order(rows.event_ms, labels.label_ms)
    times = np.empty(pos.size, dtype=np.int64)
    is_score = kinds == 0
    times[is_score] = rows.event_ms[pos[is_score]]
    times[~is_score] = labels.label_ms[pos[~is_score]]
    events: list[dict[str, Any]] = []
    offsets = {0: 0, 1: 0}
    # Cohorts are reported as of the last recall evaluation once the last score is in:
    # old cohorts mature, young ones still provisional. The clock is the scores' time, so
    # labels after the last score wait in the monitor's buffer.
    last_score = int(np.flatnonzero(is_score)[-1]) if is_score.any() else -1
    cohorts: list[CohortFigures] = []
    now: int | None = None
    for lo, hi in batches(kinds, times, cfg):
        kind, idx = int(kinds[lo]), pos[lo:hi]
        if kind == 0:
            emitted = core.on_scores(score_rows(rows, idx, offsets[0], champion.version))
            emitted += core.labels_complete(int(times[hi - 1]))
        else:
            emitted = core.on_labels(label_rows(labels, idx, offsets[1]))
        offsets[kind] += hi - lo
        for event in emitted:
            core.emitted(event)  # as the agent does once the event is delivered
            events.append(event)
        if lo <= last_score < hi:
            now = core.now_ms()
            cohorts = core.recall.figures(now, cfg.min_maturity) if now is not None else []
    return MonitorOutcome(metrics.closed, events, cohorts, now)
