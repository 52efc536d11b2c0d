"""The monitor's Prometheus metrics, built on an injectable registry.

Names carry the ``fraudstream_monitor_`` prefix; values are in base units (seconds,
ratios 0..1); counters end in ``_total``. Labels stay bounded: a feature name from the
champion's manifest (plus ``score``), a cohort age bucket (4 values), a maturity state
(``mature``/``provisional``), an agent name, a reason slug. Never a card or transaction id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from services.core.drift import WindowEvaluation
from services.core.recall import AGE_BUCKETS, Pooled

log = logging.getLogger(__name__)

PREFIX = "fraudstream_monitor_"
MATURITY_STATES = ("mature", "provisional")
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class MonitorMetrics:
    """Every metric the monitor exports, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Drift
        self.psi = Gauge(
            PREFIX + "psi",
            "PSI of the last evaluated window, per feature and for the score",
            ["feature"],
            registry=r,
        )
        self.psi_threshold = Gauge(
            PREFIX + "psi_threshold",
            "Size-aware PSI threshold of the last evaluated window",
            ["feature"],
            registry=r,
        )
        self.feature_drifting = Gauge(
            PREFIX + "feature_drifting",
            "1 if the feature drifted in the last evaluated window",
            ["feature"],
            registry=r,
        )
        self.drift_run = Gauge(
            PREFIX + "drift_run_windows",
            "Evaluated windows in a row with drift (the current run)",
            registry=r,
        )
        self.drift_active = Gauge(
            PREFIX + "drift_active",
            "1 while the current run has reached drift_consecutive windows",
            registry=r,
        )
        self.windows_closed = Counter(
            PREFIX + "windows_closed_total",
            "Windows closed by the watermark, by result (evaluated, too_small)",
            ["result"],
            registry=r,
        )
        self.window_records = Gauge(
            PREFIX + "window_records", "Records in the last closed window", registry=r
        )
        self.late_records = Counter(
            PREFIX + "late_records_total",
            "Scores that arrived for an already closed window (counted, not used)",
            registry=r,
        )
        self.watermark = Gauge(
            PREFIX + "watermark_seconds",
            "Event-time watermark of the scores (max event time - allowed lateness)",
            registry=r,
        )
        self.decision_clock = Gauge(
            PREFIX + "decision_clock_seconds",
            "Event time retrain decisions have reached: min(score watermark, "
            "label frontier); behind the watermark while waiting for labels",
            registry=r,
        )
        self.buffered_labels = Gauge(
            PREFIX + "buffered_labels",
            "Labels held until the decision clock passes their label time",
            registry=r,
        )
        # Records
        self.records = Counter(
            PREFIX + "records_total", "Records read, by topic and outcome", ["topic", "outcome"], registry=r
        )
        self.dead_lettered = Counter(
            PREFIX + "dead_lettered_total",
            "Records sent to the monitor's dead-letter topic, by topic and reason",
            ["topic", "reason"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            PREFIX + "batch_duration_seconds",
            "Time to process one batch",
            ["agent"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        # Recall
        self.recall = Gauge(
            PREFIX + "recall",
            "Recall of the cohorts in an age bucket: kind=flagged (decision != ALLOW) "
            "or top_decile; maturity=mature|provisional",
            ["kind", "age_bucket", "maturity"],
            registry=r,
        )
        self.label_maturity = Gauge(
            PREFIX + "label_maturity",
            "Expected share of the eventual fraud labels already arrived",
            ["age_bucket", "maturity"],
            registry=r,
        )
        self.cohort_frauds = Gauge(
            PREFIX + "cohort_frauds",
            "Labelled frauds behind the recall figure",
            ["age_bucket", "maturity"],
            registry=r,
        )
        self.recall_baseline = Gauge(
            PREFIX + "recall_baseline",
            "The champion's test-set recall the mature recall is compared with",
            ["kind"],
            registry=r,
        )
        self.recall_alert_threshold = Gauge(
            PREFIX + "recall_alert_threshold",
            "Baseline minus recall_margin: mature recall below it requests a retrain",
            ["kind"],
            registry=r,
        )
        self.tracked = Gauge(
            PREFIX + "tracked_transactions", "Scored transactions kept for the label join", registry=r
        )
        self.pending_labels = Gauge(PREFIX + "pending_labels", "Labels waiting for their score", registry=r)
        # Retrain
        self.retrain_events = Counter(
            PREFIX + "retrain_events_total", "Retrain events emitted, by reason", ["reason"], registry=r
        )
        self.retrain_suppressed = Counter(
            PREFIX + "retrain_suppressed_total",
            "Retrain candidates held back by the cooldown, by reason",
            ["reason"],
            registry=r,
        )
        # Health
        self.agent_alive = Gauge(
            PREFIX + "agent_alive", "1 while the agent runs (heartbeat)", ["agent"], registry=r
        )
        self.agent_heartbeat = Gauge(
            PREFIX + "agent_heartbeat_timestamp_seconds",
            "Wall-clock time of the agent's last heartbeat",
            ["agent"],
            registry=r,
        )
        self.partitions_owned = Gauge(
            PREFIX + "partitions_owned_ratio",
            "Share of the topic's partitions this worker owns (must be 1)",
            ["topic"],
            registry=r,
        )
        self.champion = Gauge(
            PREFIX + "champion_info",
            "The monitored champion (value 1)",
            ["model_name", "model_version"],
            registry=r,
        )

    # ------------------------------------------------------------------ updates

    def window_closed(self, ev: WindowEvaluation, run: int, active: bool) -> None:
        self.windows_closed.labels("evaluated" if ev.evaluated else "too_small").inc()
        self.window_records.set(ev.n)
        if ev.evaluated:
            for name, value in ev.psi.items():
                self.psi.labels(name).set(value)
                self.psi_threshold.labels(name).set(ev.threshold[name])
                self.feature_drifting.labels(name).set(1 if name in ev.drifted else 0)
        self.drift_run.set(run)
        self.drift_active.set(1 if active else 0)

    def recall_figures(self, groups: Mapping[tuple[str, str], Pooled]) -> None:
        """Set every (age bucket, maturity) series; groups without cohorts get NaN."""
        for bucket, _ in AGE_BUCKETS:
            for state in MATURITY_STATES:
                pooled = groups.get((bucket, state))
                recall = pooled.recall if pooled else math.nan
                top = pooled.top_decile_recall if pooled else math.nan
                self.recall.labels("flagged", bucket, state).set(recall)
                self.recall.labels("top_decile", bucket, state).set(top)
                self.label_maturity.labels(bucket, state).set(pooled.maturity if pooled else math.nan)
                self.cohort_frauds.labels(bucket, state).set(pooled.frauds if pooled else 0)

    def set_baseline(self, kind: str, value: float, margin: float) -> None:
        self.recall_baseline.labels(kind).set(value)
        self.recall_alert_threshold.labels(kind).set(value - margin)


def serve(port: int, registry: CollectorRegistry) -> None:
    """Serve ``/metrics`` on all interfaces (the scrape target in a container); 0 = off."""
    if port <= 0:
        return
    start_http_server(port, addr="0.0.0.0", registry=registry)
    log.info("serving Prometheus metrics on port %d", port)
