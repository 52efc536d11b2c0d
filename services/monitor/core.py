"""The monitor's logic between decoded batches and outputs; no Kafka or faust here.

:class:`MonitorCore` takes decoded score and label batches, keeps drift windows and the
recall records in two key-value tables, updates the metrics and returns the retrain
events to publish. "Now" is event time from the data: the later of the newest score
event time and the newest label time, minus the allowed lateness. Never the wall clock,
so a replay gives the same figures and the same event ids.

Decisions are timed by the data, not by batches: a drift event at the end of the window
that completed the run; recall is re-evaluated each time "now" enters a new window
(``window_s``), as of that window's start, right after the record that took "now"
there (batches are split there, so a batch spanning weeks evaluates every window in
between, as the backtest does): figures per cohort age bucket go to the
metrics, and pooled mature recall is checked against the champion's baseline. Expired
records (older than the label horizon) are dropped once per event day.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from services.core import drift, recall
from services.core.drift import DriftConfig, RetrainState, WindowConfig
from services.core.recall import DAY_MS
from services.monitor.champion import Champion
from services.monitor.drift_state import KV, DriftBook
from services.monitor.metrics import MonitorMetrics
from services.monitor.recall_state import RecallKeeper
from services.monitor.records import LabelRows, ScoreRows
from services.settings import MonitorSettings

log = logging.getLogger(__name__)

# Recall decay is judged on the mature cohorts of the last POOL_DAYS days, pooled, and
# only with at least MIN_FRAUDS labelled frauds: one day's handful of frauds is noise.
POOL_DAYS = 7
MIN_FRAUDS = 20


@dataclass(frozen=True)
class MonitorConfig:
    window: WindowConfig
    drift: DriftConfig
    horizon_days: int
    min_maturity: float
    recall_margin: float
    cooldown_ms: int
    pool_days: int = POOL_DAYS
    min_frauds: int = MIN_FRAUDS

    @classmethod
    def from_settings(cls, s: MonitorSettings) -> MonitorConfig:
        return cls(
            window=WindowConfig(s.window_s * 1000, s.allowed_lateness_s * 1000, s.window_min_records),
            drift=DriftConfig(alpha=s.drift_alpha, min_psi=s.drift_min_psi, consecutive=s.drift_consecutive),
            horizon_days=s.label_horizon_days,
            min_maturity=s.recall_min_maturity,
            recall_margin=s.recall_margin,
            cooldown_ms=s.retrain_cooldown_s * 1000,
        )


def monitor_key(model_name: str) -> str:
    return f"r|{model_name}"


class MonitorCore:
    def __init__(self, cfg: MonitorConfig, champion: Champion, state: KV, txns: KV,
                 metrics: MonitorMetrics) -> None:
        self.cfg, self.champion, self.state, self.metrics = cfg, champion, state, metrics
        self.drift = DriftBook(state, champion, cfg.window, cfg.drift)
        self.recall = RecallKeeper(txns, cfg.horizon_days, champion.prior)
        self.retrain = RetrainState()  # decides; ahead of the stored one until delivery
        self._retrain_saved = RetrainState()
        self.recall_slot: int | None = None
        self.expiry_day: int | None = None
        self.last_figures: list[recall.CohortFigures] = []
        self._figures_stale = False
        metrics.champion.labels(champion.name, champion.version).set(1)
        if champion.baseline is not None and champion.baseline_kind is not None:
            metrics.set_baseline(champion.baseline_kind, champion.baseline.value, cfg.recall_margin)

    # ------------------------------------------------------------------ state

    def load(self) -> None:
        """(Re)build the in-memory state from the tables."""
        self.drift.load()
        self.recall.load()
        meta = self.state.get(monitor_key(self.champion.name)) or {}
        self.retrain = self._retrain_saved = RetrainState.from_dict(meta.get("retrain") or {})
        self.recall_slot = meta.get("recall_slot")
        self.expiry_day = meta.get("expiry_day")
        self._set_gauges()

    def _save_meta(self) -> None:
        self.state[monitor_key(self.champion.name)] = {
            "retrain": self._retrain_saved.to_dict(), "recall_slot": self.recall_slot,
            "expiry_day": self.expiry_day,
        }

    def now_ms(self) -> int | None:
        latest = (self.drift.tracker.max_event_ms, self.recall.state.label_clock_ms)
        clocks = [c for c in latest if c is not None]
        return max(clocks) - self.cfg.window.allowed_lateness_ms if clocks else None

    # ------------------------------------------------------------------ input

    def on_scores(self, rows: ScoreRows) -> list[dict[str, Any]]:
        """Count a batch of decoded scores; returns the retrain events to publish."""
        m = self.metrics
        for outcome, n in rows.outcomes.items():
            m.records.labels("scores", outcome).inc(n)
        # Only the champion's rows move the drift clock (DriftBook.ingest counts those).
        times = [t if psi else None
                 for t, psi in zip(rows.event_ms.tolist(), rows.psi_rows.tolist(), strict=True)]
        events: list[dict[str, Any]] = []
        for lo, hi in self._pieces(times):
            events += self._score_piece(rows.take(lo, hi))
        self._set_gauges()
        return events

    def _score_piece(self, rows: ScoreRows) -> list[dict[str, Any]]:
        self.recall.on_scores(rows)
        self._figures_stale = True
        ingested = self.drift.ingest(rows)
        self.metrics.late_records.inc(ingested.late)
        if ingested.duplicates:
            self.metrics.records.labels("scores", "redelivered").inc(ingested.duplicates)
        events = self._close_windows()
        self.drift.save_meta()
        return events + self._evaluate_recall()

    def on_labels(self, rows: LabelRows) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        times: list[int | None] = list(rows.label_ms)
        for lo, hi in self._pieces(times):
            outcomes = self.recall.on_labels(rows.take(lo, hi))
            self._figures_stale = True
            for outcome, n in outcomes.items():
                self.metrics.records.labels("labels", outcome).inc(n)
            events += self._evaluate_recall()
        self._set_gauges()
        return events

    def _pieces(self, times: list[int | None]) -> Iterator[tuple[int, int]]:
        """``[lo, hi)`` slices of a batch, each ending with a record that takes the clock
        into a later window (or at the batch's end).

        Recall is evaluated after each slice, so it is evaluated once per window the
        clock enters, right after the record that entered it, whatever the batching: a
        batch of labels spanning weeks gets every evaluation in between, as the record
        stream one at a time would (and as the backtest does). Computed lazily from the
        clock after the previous slice; a record that does not move the clock (``None``:
        not the champion's) never ends a slice. An empty batch is one empty slice.
        """
        w, lateness = self.cfg.window.window_ms, self.cfg.window.allowed_lateness_ms
        lo, n = 0, len(times)
        while True:
            now = self.now_ms()
            slot = None if now is None else now // w
            hi = n
            for i in range(lo, n):
                t = times[i]
                if t is not None and (slot is None or (t - lateness) // w > slot):
                    hi = i + 1
                    break
            yield lo, hi
            lo = hi
            if lo >= n:
                return

    def emitted(self, event: dict[str, Any]) -> None:
        """Call once ``event`` is delivered: only then is the cooldown persisted."""
        self.metrics.retrain_events.labels(str(event["reason"])).inc()
        self._retrain_saved = RetrainState(int(event["emitted_at"]), str(event["event_id"]))
        self._save_meta()
        log.warning("retrain requested: %s %s (event %s…): %s", event["reason"],
                    f"{event['model_name']}@{event['model_version']}", str(event["event_id"])[:12],
                    event["details"])

    # ------------------------------------------------------------------ drift

    def _close_windows(self) -> list[dict[str, Any]]:
        events = []
        for ev, alarm in self.drift.close_due():
            self.metrics.window_closed(ev, self.drift.run_length, self.drift.active)
            if alarm is None:
                continue
            # The decision's time is the end of the window that completed the run: the
            # watermark reached it there, whatever the batching (replays match).
            candidate = drift.drift_event(alarm, self.champion.name, self.champion.version, ev.end)
            events += self._decide(candidate, ev.end)
        self.drift.expire()
        return events

    def _decide(self, candidate: dict[str, Any], now_ms: int) -> list[dict[str, Any]]:
        self.retrain, event = drift.decide(self.retrain, candidate, now_ms, self.cfg.cooldown_ms)
        if event is None:
            self.metrics.retrain_suppressed.labels(str(candidate["reason"])).inc()
            log.info("%s retrain candidate within the cooldown, not emitted", candidate["reason"])
            return []
        return [event]

    # ------------------------------------------------------------------ recall

    def _evaluate_recall(self) -> list[dict[str, Any]]:
        now = self.now_ms()
        if now is None:
            return []
        slot = now // self.cfg.window.window_ms
        if self.recall_slot is not None and slot <= self.recall_slot:
            return []
        self.recall_slot = slot
        now = slot * self.cfg.window.window_ms  # the slot's start: independent of batching
        day = now - now % DAY_MS
        if self.expiry_day is None or day > self.expiry_day:
            self.expiry_day = day
            dropped = self.recall.expire(now)
            if dropped:
                log.info("dropped %d transactions older than the label horizon", dropped)
        figs = self._publish_figures(now)
        events = self._recall_decay(figs, now)
        self._save_meta()
        return events

    def refresh_figures(self) -> None:
        """Re-publish the recall metrics if records changed since (a timer calls this, so
        the gauges follow labels between evaluations; decisions stay on the data clock)."""
        now = self.now_ms()
        if self._figures_stale and now is not None:
            self._publish_figures(now)

    def _publish_figures(self, now: int) -> list[recall.CohortFigures]:
        figs = self.recall.figures(now, self.cfg.min_maturity)
        self.last_figures = figs
        self.metrics.recall_figures(recall.by_age_bucket(figs))
        self._figures_stale = False
        return figs

    def _recall_decay(self, figs: list[recall.CohortFigures], now: int) -> list[dict[str, Any]]:
        pooled = recall.recent_mature(figs, self.cfg.pool_days)
        baseline = self.champion.baseline
        if baseline is None or not recall.decay_candidate(pooled, baseline, self.cfg.recall_margin,
                                                          self.cfg.min_frauds):
            return []
        evals = self.drift.evaluations()
        last_psi = next((e.psi for e in reversed(evals) if e.evaluated), {})
        candidate = recall.recall_decay_event(pooled, baseline, self.cfg.recall_margin,
                                              self.champion.name, self.champion.version, now, last_psi)
        return self._decide(candidate, now)

    def _set_gauges(self) -> None:
        m = self.metrics
        m.tracked.set(self.recall.tracked)
        m.pending_labels.set(self.recall.pending)
        wm = self.drift.watermark_ms
        if wm is not None:
            m.watermark.set(wm / 1000.0)
