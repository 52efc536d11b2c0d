"""Live vs backtest: replaying a file through the scorer and the monitor gives the same
score for every txn_id (float equality) and the same retrain decisions as
``fraudstream backtest`` on the same file with the same model.

Both kinds of retrain decision are compared: DRIFT and RECALL_DECAY. The live monitor's
two agents run ahead of each other as they please (the labels go straight from the
replay to the monitor, the scores through the scorer); the monitor decides on an
event-time clock that waits for both streams (:mod:`services.monitor.core`), so the
decisions equal the backtest's merged-order pass however far either agent runs ahead.

The topics have one partition each, so the live services see the stream in the order
the replay wrote it. (With several partitions each card keeps its order, but
transactions of different cards in the same hour may reach the scorer in another order,
and the merchant-window features read the current hour's buckets; see the report.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services import dataset, settings
from services.backtest import data as bt_data
from services.backtest.cli import load_models, policy
from services.backtest.engine import ThresholdPlan, predict, run_backtest
from services.core import topics
from services.core.codec import Codec
from services.kafka.admin import TopicSpec, ensure_topics
from services.replay import cli as replay_cli
from services.runtime import StopFlag
from services.scorer import cli as scorer_cli
from services.settings import BacktestSettings, ScorerSettings
from tests.helpers import wait_until
from tests.unit.backtest.bt_helpers import make_dataset, register_model

ROOT = Path(__file__).resolve().parents[2]
# The monitor policy both sides use: daily windows (the small data set has ~350
# transactions a day), drift after two drifting windows in a row.
POLICY = {"window_s": 86400, "window_min_records": 100, "drift_consecutive": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Scorer:
    """``fraudstream scorer`` in a thread (``serve`` with its own stop flag)."""

    settings: ScorerSettings
    stop: StopFlag = field(default_factory=StopFlag)
    result: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="scorer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result["code"] = scorer_cli.serve(self.settings, self.stop, CollectorRegistry())
        except BaseException as exc:  # surfaced by close()
            self.result["error"] = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "scorer did not stop"
        if "error" in self.result:
            raise self.result["error"]
        assert self.result["code"] == 0


class Monitor:
    """``fraudstream monitor`` as a subprocess (faust runs its own event loop)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "monitor", *argv, "--metrics-port", str(self.port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def records(self, topic: str) -> float:
        assert self.proc.poll() is None, f"monitor exited:\n{self.log.read_text()[-3000:]}"
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        except OSError:
            return -1
        return sum(
            s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name == "fraudstream_monitor_records_total" and s.labels.get("topic") == topic
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _consumer(bootstrap: str, group: str | None = None) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 120.0) -> list[Message]:
    """At least ``expect`` committed records of a one-partition topic, then the rest."""
    consumer = _consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        out: list[Message] = []

        def enough() -> bool:
            out.extend(m for m in consumer.consume(1000, 0.2) if m.error() is None)
            return len(out) >= expect

        wait_until(enough, timeout=timeout, interval=0, message=f"{expect} records on {topic}")
        out.extend(m for m in consumer.consume(1000, 1.0) if m.error() is None)
        return out
    finally:
        consumer.close()


def group_is_past(bootstrap: str, group: str, ends: dict[str, int]) -> bool:
    """The group committed past the last record of each topic: every batch was handled
    and acked, and the monitor acks a batch only once its retrain events are delivered.
    (The end is the last record's offset + 1, not the high watermark: the scorer's
    transaction markers take offsets too.)"""
    consumer = _consumer(bootstrap, group)
    try:
        committed = consumer.committed([TopicPartition(t, 0) for t in ends], timeout=10)
        return all(c.offset >= ends[c.topic] for c in committed)
    finally:
        consumer.close()


@pytest.fixture
def world(tmp_path: Path, kafka_admin: AdminClient, unique: Callable[[str], str]) -> Iterator[dict[str, Any]]:
    # 60 days: time is the transactions' time, and cohorts mature (most of their
    # chargebacks in) about 40 days after their day, so recall can only decay in a long
    # enough stream. The drift starts after the monitor's 7-day warm-up.
    data = make_dataset(
        tmp_path / "data", days=60, cards=600, merchants=100, seed=3, drift="amount_inflation@40"
    )
    registry = tmp_path / "models"
    # A tight alert budget and a high recall baseline: recall "decays", so both kinds of
    # retrain decision (drift and recall) are compared.
    register_model(data, registry, baseline=0.99, review_rate=0.004)
    prefix = unique("parity") + "."
    names = [prefix + t for t in topics.ALL_TOPICS]
    ensure_topics(kafka_admin, [TopicSpec(n, 1, 1) for n in names], 30)
    yield {"data": data, "registry": registry, "prefix": prefix, "tmp": tmp_path}
    # Ours and the monitor's changelogs (its app id starts with the prefix); each name once:
    # librdkafka's admin thread crashes on a request that names a topic twice.
    made = {t for t in kafka_admin.list_topics(timeout=10).topics if t.startswith(prefix)} | set(names)
    for future in kafka_admin.delete_topics(sorted(made), operation_timeout=30).values():
        try:
            future.result(timeout=60)
        except Exception:  # already gone
            pass


def test_live_scores_and_retrain_decisions_equal_the_backtest(
    world: dict[str, Any],
    kafka_bootstrap: str,
    redis_url: str,
    redis_namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, registry, prefix, tmp = world["data"], world["registry"], world["prefix"], world["tmp"]
    codec = Codec.load()
    txns, labels = dataset.read_transactions(data), dataset.read_labels(data)

    # The backtest first: its expectations bound the waiting below.
    cfg = settings.load(BacktestSettings, {"data": data, **POLICY}, environ={})
    models = load_models(registry, ["fraud@champion"])
    loaded = bt_data.load(data, use_cache=False)
    result, _ = run_backtest(loaded, models, [ThresholdPlan()], policy(cfg))
    expected_scores = dict(
        zip(loaded.frame.txn_ids, predict(models[0].serving, loaded.frame.X).tolist(), strict=True)
    )
    expected_events = result["scenarios"][0]["retrain_events"]
    assert {e["reason"] for e in expected_events} == {"DRIFT", "RECALL_DECAY"}, expected_events

    app_id = prefix + "monitor"
    monitor = Monitor(
        ["--kafka-bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--registry", str(registry),
         "--app-id", app_id, "--data-dir", str(tmp / "monitor"), "--model-name", "fraud",
         "--window-s", str(POLICY["window_s"]), "--window-min-records", str(POLICY["window_min_records"]),
         "--drift-consecutive", str(POLICY["drift_consecutive"])],
        tmp / "monitor.log",
    )  # fmt: skip
    scorer = Scorer(ScorerSettings.model_validate({
        "kafka_bootstrap": kafka_bootstrap, "redis_url": redis_url, "redis_namespace": redis_namespace,
        "topic_prefix": prefix, "group_id": prefix + "scorer", "registry": registry,
        "transactional_id_prefix": prefix + "scorer", "batch_max_ms": 20, "shadow": False,
        "max_event_age_days": 3650, "max_poll_interval_ms": 10_000,
    }))  # fmt: skip
    try:
        code = replay_cli.main([str(data), "--topic-prefix", prefix, "--kafka-bootstrap", kafka_bootstrap])
        assert code == 0, capsys.readouterr().err

        score_msgs = read_topic(kafka_bootstrap, prefix + topics.SCORES, len(txns))
        label_msgs = read_topic(kafka_bootstrap, prefix + topics.LABELS, len(labels))
        scores = [codec.decode("Score", m.value()) for m in score_msgs]
        live_scores = {s["txn_id"]: s["score"] for s in scores}
        assert len(scores) == len(txns) == len(live_scores)
        mismatched = [t for t, s in expected_scores.items() if live_scores.get(t) != s]
        assert not mismatched, f"{len(mismatched)} scores differ, e.g. {mismatched[:3]}"
        decisions = {s["txn_id"]: s["decision"] for s in scores}
        assert all(d in ("ALLOW", "REVIEW", "BLOCK") for d in decisions.values())

        ends = {str(msgs[-1].topic()): (msgs[-1].offset() or 0) + 1 for msgs in (score_msgs, label_msgs)}

        def monitor_done() -> bool:
            return monitor.records("labels") >= len(labels) and group_is_past(kafka_bootstrap, app_id, ends)

        wait_until(
            monitor_done, timeout=180, interval=0.5, message=f"the monitor is done (log {monitor.log})"
        )

        def decided() -> tuple[list[dict[str, Any]]] | None:
            # The last decisions follow the labels check that moves the decision clock
            # (every second, apart from the batches): wait for as many as expected.
            retrain = read_topic(kafka_bootstrap, prefix + topics.RETRAIN, 0)
            events = [codec.decode("RetrainEvent", m.value()) for m in retrain]
            return (events,) if len(events) >= len(expected_events) else None

        found = wait_until(
            decided, timeout=60, interval=0.5, message=f"the monitor's retrain events (log {monitor.log})"
        )
        assert found is not None
        (live,) = found
    finally:
        scorer.close()
        monitor.stop()
    assert_same_events(live, expected_events)


def assert_same_events(live: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    key = (
        "event_id",
        "reason",
        "model_version",
        "window_start",
        "window_end",
        "drifted_features",
        "emitted_at",
        "recall",
        "recall_baseline",
        "maturity",
    )
    assert [{k: e[k] for k in key} for e in live] == [{k: e[k] for k in key} for e in expected]
