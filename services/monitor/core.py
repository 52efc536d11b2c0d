"""The monitor's logic between decoded batches and outputs; no Kafka or faust here.

:class:`MonitorCore` takes decoded score and label batches, keeps drift windows and the
recall records in two key-value tables, updates the metrics and returns the retrain
events to publish. Time is event time from the data, never the wall clock, so a replay
gives the same figures and the same event ids.

The decision clock. Scores and labels come from two topics, read by two agents that run
ahead of each other as they please; decisions must not depend on that. So every retrain
decision is made in event-time order on one clock, ``clock = min(score watermark,
label frontier)``:

* the score watermark is the newest champion score's event time minus the allowed
  lateness (the drift windows' watermark); time is the transactions' time, so labels
  never move it, whatever runs ahead;
* the label frontier is a time before which every label is known to be in: the newest
  label time minus the allowed lateness, or later when the reader says so
  (:meth:`MonitorCore.labels_complete`: the live monitor has read the labels topic to
  its end, the backtest is past that point of its merged stream), or, only if
  ``label_wait_max_ms`` is set, the score watermark minus that bound.

Labels wait in a buffer until the clock passes them. Recall is evaluated at every
window boundary ``T`` the clock passes, in order, as of ``T``: the labels with
``label_time < T`` are applied first, and only cohorts whose day ended by ``T`` can
decide, so scores already read past ``T`` change nothing. A drift alarm is computed when
its window closes but decided (cooldown, emission) when the clock passes the window's
end, before a recall evaluation at the same time. The live monitor may therefore decide
later than a backtest of the same data, but never differently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
from services.settings import MonitorPolicySettings

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
    # None: decisions wait for the labels as long as it takes (deterministic); a bound
    # lets them go on without labels that are that late (which then count as late).
    label_wait_max_ms: int | None = None

    @classmethod
    def from_settings(cls, s: MonitorPolicySettings) -> MonitorConfig:
        return cls(
            window=WindowConfig(s.window_s * 1000, s.allowed_lateness_s * 1000, s.window_min_records),
            drift=DriftConfig(
                alpha=s.drift_alpha,
                min_psi=s.drift_min_psi,
                consecutive=s.drift_consecutive,
                warmup_ms=s.drift_warmup_s * 1000,
            ),
            horizon_days=s.label_horizon_days,
            min_maturity=s.recall_min_maturity,
            recall_margin=s.recall_margin,
            cooldown_ms=s.retrain_cooldown_s * 1000,
            label_wait_max_ms=None if s.label_wait_max_s is None else s.label_wait_max_s * 1000,
        )


def monitor_key(model_name: str) -> str:
    return f"r|{model_name}"


class MonitorCore:
    def __init__(
        self, cfg: MonitorConfig, champion: Champion, state: KV, txns: KV, metrics: MonitorMetrics
    ) -> None:
        self.cfg, self.champion, self.state, self.metrics = cfg, champion, state, metrics
        self.drift = DriftBook(state, champion, cfg.window, cfg.drift)
        self.recall = RecallKeeper(txns, cfg.horizon_days, champion.prior)
        self.retrain = RetrainState()  # decides; ahead of the stored one until delivery
        self._retrain_saved = RetrainState()
        self.recall_next: int | None = None  # the next recall evaluation (a window boundary)
        self.released_ms: int | None = None  # the last one: labels before it are applied
        self.expiry_day: int | None = None
        self.queue: list[tuple[int, dict[str, Any]]] = []  # drift candidates, by decision time
        self.labels_complete_ms: int | None = None  # not stored: re-established after a restart
        self.undelivered = 0  # events handed out and not yet delivered: the stored state waits
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
        self.recall_next = meta.get("recall_next")
        self.released_ms = meta.get("released_ms")
        self.expiry_day = meta.get("expiry_day")
        self.queue = [(int(t), c) for t, c in meta.get("queue", [])]
        self.undelivered = 0
        # The warm-up starts with the model's first score, also for a later champion:
        # the features' history does not start again with a new model.
        if meta.get("origin_ms") is not None:
            self.drift.tracker.origin_ms = int(meta["origin_ms"])
        if self.released_ms is not None:  # released before a crash, buffer not yet trimmed
            self.recall.release(self.released_ms)
        self._set_gauges()

    def _save_meta(self, new_candidates: Sequence[tuple[int, dict[str, Any]]] = ()) -> None:
        key = monitor_key(self.champion.name)
        if self.undelivered:
            # The stored state stays the last one with every event delivered: a crash
            # decides again from it. Candidates queued since then join its queue, as
            # their windows are already stored closed: else a crash would lose them.
            if new_candidates:
                stored = dict(self.state.get(key) or {})
                queue = [*stored.get("queue", []), *([t, c] for t, c in new_candidates)]
                stored["queue"] = sorted(queue, key=lambda c: int(c[0]))
                self.state[key] = stored
            return
        self.state[key] = {
            "retrain": self._retrain_saved.to_dict(),
            "recall_next": self.recall_next,
            "released_ms": self.released_ms,
            "expiry_day": self.expiry_day,
            "queue": [[t, c] for t, c in self.queue],
            "origin_ms": self.drift.tracker.origin_ms,
        }

    @property
    def score_watermark_ms(self) -> int | None:
        return self.drift.watermark_ms

    def label_frontier_ms(self) -> int | None:
        """Every label with an earlier label time is in (or, with ``label_wait_max_ms``,
        no longer waited for)."""
        newest = self.recall.label_max_ms
        wm = self.score_watermark_ms
        wait = self.cfg.label_wait_max_ms
        bounds = [
            None if newest is None else newest - self.cfg.window.allowed_lateness_ms,
            self.labels_complete_ms,
            None if wm is None or wait is None else wm - wait,
        ]
        known = [b for b in bounds if b is not None]
        return max(known) if known else None

    def clock_ms(self) -> int | None:
        """The decision clock: min(score watermark, label frontier)."""
        wm, frontier = self.score_watermark_ms, self.label_frontier_ms()
        return None if wm is None or frontier is None else min(wm, frontier)

    def now_ms(self) -> int | None:
        """As of when the recall figures are: the last recall evaluation."""
        return self.released_ms

    def waiting_on_labels(self) -> bool:
        """A decision is due by the score watermark but held back by the labels."""
        wm, clock = self.score_watermark_ms, self.clock_ms()
        if wm is None:
            return False
        first = self.queue[0][0] if self.queue else None
        due = [t for t in (first, self.recall_next) if t is not None and t <= wm]
        return bool(due) and (clock is None or clock < min(due))

    # ------------------------------------------------------------------ input

    def on_scores(self, rows: ScoreRows) -> list[dict[str, Any]]:
        """Count a batch of decoded scores; returns the retrain events to publish."""
        m = self.metrics
        for outcome, n in rows.outcomes.items():
            m.records.labels("scores", outcome).inc(n)
        self.recall.on_scores(rows)
        self._figures_stale = True
        ingested = self.drift.ingest(rows)
        m.late_records.inc(ingested.late)
        if ingested.duplicates:
            m.records.labels("scores", "redelivered").inc(ingested.duplicates)
        origin = self.drift.tracker.origin_ms
        if self.recall_next is None and origin is not None:
            w = self.cfg.window
            self.recall_next = w.start_of(origin) + w.window_ms
        new_candidates = self._close_windows()
        self.drift.save_meta()
        self._save_meta(new_candidates)  # the new drift candidates, before any is decided
        events = self.advance()
        self._set_gauges()
        return events

    def on_labels(self, rows: LabelRows) -> list[dict[str, Any]]:
        outcomes = self.recall.on_labels(rows, self.released_ms)
        for outcome, n in outcomes.items():
            self.metrics.records.labels("labels", outcome).inc(n)
        events = self.advance()
        self._set_gauges()
        return events

    def labels_complete(self, before_ms: int) -> list[dict[str, Any]]:
        """Every label with ``label_time < before_ms`` has been given to :meth:`on_labels`."""
        if self.labels_complete_ms is None or before_ms > self.labels_complete_ms:
            self.labels_complete_ms = before_ms
        events = self.advance()
        self._set_gauges()
        return events

    def advance(self) -> list[dict[str, Any]]:
        """Make every decision the clock has passed, in time order (at the same time, a
        drift alarm before a recall evaluation); returns the events to publish."""
        clock = self.clock_ms()
        if clock is None:
            return []
        events: list[dict[str, Any]] = []
        decided = False
        while True:
            drift_at = self.queue[0][0] if self.queue and self.queue[0][0] <= clock else None
            nxt = self.recall_next
            recall_at = nxt if nxt is not None and nxt <= clock else None
            if drift_at is not None and (recall_at is None or drift_at <= recall_at):
                _, candidate = self.queue.pop(0)
                events += self._decide(candidate, drift_at)
            elif recall_at is not None:
                events += self._evaluate_recall(recall_at)
                self.recall_next = recall_at + self.cfg.window.window_ms
            else:
                break
            decided = True
        if decided:
            self.undelivered += len(events)
            self._save_meta()
        return events

    def emitted(self, event: dict[str, Any]) -> None:
        """Call once ``event`` is delivered: only then is the cooldown persisted."""
        self.metrics.retrain_events.labels(str(event["reason"])).inc()
        self._retrain_saved = RetrainState(int(event["emitted_at"]), str(event["event_id"]))
        self.undelivered = max(0, self.undelivered - 1)
        self._save_meta()
        log.warning(
            "retrain requested: %s %s (event %s…): %s",
            event["reason"],
            f"{event['model_name']}@{event['model_version']}",
            str(event["event_id"])[:12],
            event["details"],
        )

    # ------------------------------------------------------------------ drift

    def _close_windows(self) -> list[tuple[int, dict[str, Any]]]:
        """Close the windows that are due; queue and return their drift candidates."""
        new: list[tuple[int, dict[str, Any]]] = []
        for ev, alarm in self.drift.close_due():
            self.metrics.window_closed(ev, self.drift.run_length, self.drift.active)
            if alarm is None:
                continue
            # The decision's time is the end of the window that completed the run: the
            # watermark reached it there, whatever the batching (replays match).
            candidate = drift.drift_event(alarm, self.champion.name, self.champion.version, ev.end)
            new.append((ev.end, candidate))
        self.queue += new
        self.queue.sort(key=lambda c: c[0])
        self.drift.expire()
        return new

    def _decide(self, candidate: dict[str, Any], now_ms: int) -> list[dict[str, Any]]:
        self.retrain, event = drift.decide(self.retrain, candidate, now_ms, self.cfg.cooldown_ms)
        if event is None:
            self.metrics.retrain_suppressed.labels(str(candidate["reason"])).inc()
            log.info("%s retrain candidate within the cooldown, not emitted", candidate["reason"])
            return []
        return [event]

    # ------------------------------------------------------------------ recall

    def _evaluate_recall(self, now: int) -> list[dict[str, Any]]:
        """Recall as of ``now`` (a window boundary the clock has passed)."""
        self.recall.release(now)
        self.released_ms = now
        day = now - now % DAY_MS
        if self.expiry_day is None or day > self.expiry_day:
            self.expiry_day = day
            dropped = self.recall.expire(now)
            if dropped:
                log.info("dropped %d transactions older than the label horizon", dropped)
        figs = self._publish_figures(now)
        return self._recall_decay(figs, now)

    def refresh_figures(self) -> None:
        """Re-publish the recall metrics if records changed since (a timer calls this, so
        the gauges follow late records between evaluations; decisions stay on the clock)."""
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
        pooled = recall.recent_mature(figs, self.cfg.pool_days, now)
        baseline = self.champion.baseline
        if baseline is None or not recall.decay_candidate(
            pooled, baseline, self.cfg.recall_margin, self.cfg.min_frauds
        ):
            return []
        # The PSI of the last window closed by ``now``, not by whenever this runs.
        evals = [e for e in self.drift.evaluations() if e.evaluated and e.end <= now]
        last_psi = evals[-1].psi if evals else {}
        candidate = recall.recall_decay_event(
            pooled, baseline, self.cfg.recall_margin, self.champion.name, self.champion.version, now, last_psi
        )
        return self._decide(candidate, now)

    def _set_gauges(self) -> None:
        m = self.metrics
        m.tracked.set(self.recall.tracked)
        m.pending_labels.set(self.recall.pending)
        m.buffered_labels.set(len(self.recall.buffer))
        clock = self.clock_ms()
        if clock is not None:
            m.decision_clock.set(clock / 1000.0)
        wm = self.drift.watermark_ms
        if wm is not None:
            m.watermark.set(wm / 1000.0)
