"""The scorer's Prometheus metrics, built on an injectable registry.

Names carry the ``fraudstream_scorer_`` prefix, values are in base units (seconds),
counters end in ``_total`` and labels stay low-cardinality: a decision, a dead-letter
reason slug, a partition number, a model version. Never a card or transaction id.

Tests build :class:`ScorerMetrics` on a fresh ``CollectorRegistry`` and read values
back with ``registry.get_sample_value``.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

PREFIX = "fraudstream_scorer_"

# Sub-millisecond to a few seconds: stage timings of one micro-batch.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Latency of one event: milliseconds when live, hours or days when history is replayed.
EVENT_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
    86_400.0,
)  # fmt: skip
CONSUME_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)
# How old the card's newest earlier event was when this one was scored (velocity context).
FEATURE_AGE_BUCKETS = (1.0, 10.0, 60.0, 600.0, 3600.0, 21_600.0, 86_400.0, 604_800.0, 2_592_000.0)


class ScorerMetrics:
    """Every metric the scorer exports, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            PREFIX + "records_consumed_total", "Records read from the transactions topic", registry=r
        )
        self.scored = Counter(
            PREFIX + "records_scored_total",
            "Scores committed to the scores topic, by decision (shadow scores excluded)",
            ["decision"],
            registry=r,
        )
        self.shadow_scored = Counter(
            PREFIX + "shadow_scores_total", "Shadow (challenger) scores committed", registry=r
        )
        self.dead_lettered = Counter(
            PREFIX + "records_dead_lettered_total",
            "Records committed to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.batches = Counter(PREFIX + "batches_total", "Micro-batches committed", registry=r)
        self.batch_retries = Counter(
            PREFIX + "batch_retries_total",
            "Micro-batches retried after a transient failure, by cause",
            ["cause"],
            registry=r,
        )
        self.producer_recreated = Counter(
            PREFIX + "producer_recreated_total",
            "Transactional producers replaced after a timeout or fatal error",
            registry=r,
        )
        self.batch_size = Histogram(
            PREFIX + "batch_size_records", "Records per committed micro-batch",
            buckets=BATCH_SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.event_to_score = Histogram(
            PREFIX + "event_to_score_latency_seconds",
            "From the transaction's event time to its score being produced",
            buckets=EVENT_LATENCY_BUCKETS,
            registry=r,
        )
        self.consume_to_score = Histogram(
            PREFIX + "consume_to_score_latency_seconds",
            "From reading the transaction to its score being committed",
            buckets=CONSUME_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            PREFIX + "stage_duration_seconds",
            "Time per micro-batch in each stage (decode, redis, predict, encode, produce, commit)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.feature_age = Histogram(
            PREFIX + "feature_age_seconds",
            "Age of the card's previous event (the newest state the features saw) at scoring",
            buckets=FEATURE_AGE_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            PREFIX + "model_info",
            "1 for the model version being served, by role (champion or shadow)",
            ["role", "name", "version", "sha256"],
            registry=r,
        )
        self.model_reloads = Counter(
            PREFIX + "model_reloads_total",
            "Attempts to hot-swap a model, by outcome (loaded, rejected)",
            ["outcome"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            PREFIX + "consumer_lag_records",
            "Records behind the partition's high watermark, per assigned partition",
            ["partition"],
            registry=r,
        )
        self.rebalances = Counter(
            PREFIX + "rebalance_events_total",
            "Partition assignment changes, by kind (assigned, revoked, lost)",
            ["kind"],
            registry=r,
        )
        self.redis_up = Gauge(PREFIX + "redis_up", "1 if the last Redis call succeeded", registry=r)
        self.kafka_up = Gauge(
            PREFIX + "kafka_up", "1 if the last Kafka transaction or flush succeeded", registry=r
        )
        self.poison_share = Gauge(
            PREFIX + "poison_share_ratio", "Share of bad records among the last 1000", registry=r
        )

    def record_batch(
        self,
        *,
        size: int,
        decisions: Sequence[str],
        dead_letter_reasons: Sequence[str],
        shadow_scores: int,
        event_times_ms: Sequence[int],
        scored_at_ms: int,
        consumed_at_ms: int,
        committed_at_ms: int,
        feature_ages_s: Sequence[float],
    ) -> None:
        """Everything about a batch once it is committed (never for one that is redone)."""
        self.batches.inc()
        self.batch_size.observe(size)
        for decision, count in Tally(decisions).items():
            self.scored.labels(decision).inc(count)
        if shadow_scores:
            self.shadow_scored.inc(shadow_scores)
        for reason, count in Tally(dead_letter_reasons).items():
            self.dead_lettered.labels(reason).inc(count)
        consume_to_score = max(0.0, (committed_at_ms - consumed_at_ms) / 1000.0)
        for event_time in event_times_ms:
            self.event_to_score.observe(max(0.0, (scored_at_ms - event_time) / 1000.0))
            self.consume_to_score.observe(consume_to_score)
        for age in feature_ages_s:
            self.feature_age.observe(age)

    def time_stage(self, stage: str, seconds: float) -> None:
        self.stage.labels(stage).observe(seconds)

    def set_model(self, role: str, name: str, version: str, sha256: str) -> None:
        """Show exactly one version per role: drop the old series, add the new one."""
        for labels in self._model_series(role):
            self.model_info.remove(*labels)
        self.model_info.labels(role, name, version, sha256).set(1)

    def clear_model(self, role: str) -> None:
        for labels in self._model_series(role):
            self.model_info.remove(*labels)

    def _model_series(self, role: str) -> list[tuple[str, ...]]:
        series: list[tuple[str, ...]] = []
        for metric in self.model_info.collect():
            for sample in metric.samples:
                if sample.labels.get("role") == role:
                    labels = sample.labels
                    series.append((labels["role"], labels["name"], labels["version"], labels["sha256"]))
        return series

    def set_lag(self, lags: dict[int, int]) -> None:
        for partition, lag in lags.items():
            self.consumer_lag.labels(str(partition)).set(lag)

    def forget_partitions(self, partitions: list[int]) -> None:
        for partition in partitions:
            try:
                self.consumer_lag.remove(str(partition))
            except KeyError:
                pass


def serve(port: int, registry: CollectorRegistry) -> None:
    """Serve ``/metrics`` on all interfaces (the scrape target in a container); 0 = off."""
    if port <= 0:
        return
    start_http_server(port, addr="0.0.0.0", registry=registry)
    log.info("serving Prometheus metrics on port %d", port)
