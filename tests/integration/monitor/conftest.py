"""Fixtures for the monitor's integration tests: a hand-built champion in a registry,
seeded Score streams, the monitor as a real subprocess, and readers for its outputs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from services.core import features, psi, topics
from services.core.codec import Codec
from services.core.drift import FEATURE_HISTORY_MS
from services.registry import Registry
from tests.helpers import stop_process, wait_until

ROOT = Path(__file__).resolve().parents[3]
NAMES = list(features.FEATURE_NAMES)
N_FEATURES = len(NAMES)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN_MS = 60_000
ORIGIN = T0 - FEATURE_HISTORY_MS  # see MonitorEnv.produce_origin
MODEL = "fraud"
BASELINE_RECALL = 0.8
TOPICS = (topics.SCORES, topics.LABELS, topics.RETRAIN, topics.MONITOR_DLQ)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def champion_manifest(seed: int = 0, n_ref: int = 20_000) -> dict[str, Any]:
    """Reference bins from seeded N(0, 1) features; the score is sigmoid(f0)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_ref, N_FEATURES))
    return {
        "feature_names": NAMES,
        "feature_set_fingerprint": features.FEATURE_SET_FINGERPRINT,
        "thresholds": {"review": 0.8, "block": 0.95, "review_rate": 0.02, "block_rate": 0.005},
        "psi_reference": psi.build_references(X, NAMES, sigmoid(X[:, 0])),
        "metrics": {"test": {"label_based": {"recall_at_review_threshold": BASELINE_RECALL}}},
        "params": {},
        "lightgbm_version": "n/a",
    }


@dataclass(frozen=True)
class Stream:
    t: np.ndarray
    X: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.t.size)


def score_stream(
    seed: int,
    windows: int,
    per_window: int,
    shift_from: int | None = None,
    shift: float = 1.5,
    t0: int = T0,
    window_ms: int = MIN_MS,
) -> Stream:
    """``per_window`` seeded records per window, in event-time order; from window
    ``shift_from`` on, feature 0 (and so the score) moves by ``shift`` sd."""
    rng = np.random.default_rng(seed)
    n = windows * per_window
    t = np.sort(
        t0 + np.repeat(np.arange(windows) * window_ms, per_window) + rng.integers(0, window_ms, size=n)
    )
    X = rng.normal(size=(n, N_FEATURES))
    if shift_from is not None:
        X[t >= t0 + shift_from * window_ms, 0] += shift
    return Stream(t, X, sigmoid(X[:, 0]))


def score_record(
    txn_id: str,
    t: int,
    x: Sequence[float],
    score: float,
    *,
    decision: str | None = None,
    version: str = "1",
    shadow: bool = False,
) -> dict[str, Any]:
    decision = decision or ("BLOCK" if score >= 0.95 else "REVIEW" if score >= 0.8 else "ALLOW")
    return {
        "txn_id": txn_id,
        "card_id": f"card-{txn_id}",
        "event_time": int(t),
        "score": float(score),
        "decision": decision,
        "reason_codes": [],
        "model_name": MODEL,
        "model_version": version,
        "model_sha256": "0" * 64,
        "feature_set": features.FEATURE_SET_FINGERPRINT,
        "features": [float(v) for v in x],
        "shadow": shadow,
        "timings": {"consumed_at": int(t), "scored_at": int(t), "features_us": 0, "predict_us": 0},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MonitorEnv:
    bootstrap: str
    prefix: str
    app_id: str
    registry: Path
    tmp: Path
    codec: Codec = field(default_factory=Codec.load)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def produce(
        self, name: str, records: Sequence[tuple[bytes | None, bytes | None]], partition: int | None = None
    ) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20, "acks": "all"})
        for key, value in records:
            kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
            while True:
                try:
                    producer.produce(self.topic(name), key=key, value=value, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        assert producer.flush(30) == 0

    def produce_aborted(self, name: str, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        """Records written in a Kafka transaction that is then aborted."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": f"abort-{self.prefix}"})
        producer.init_transactions(30)
        producer.begin_transaction()
        for key, value in records:
            producer.produce(self.topic(name), key=key, value=value)
            producer.poll(0)
        producer.flush(30)
        producer.abort_transaction(30)

    def score_values(
        self, stream: Stream, ids: Sequence[str] | None = None, **kw: Any
    ) -> list[tuple[bytes | None, bytes | None]]:
        ids = ids or [f"t{i}" for i in range(len(stream))]
        return [
            (i.encode(), self.codec.encode("Score", score_record(i, t, x, s, **kw)))
            for i, t, x, s in zip(ids, stream.t.tolist(), stream.X, stream.scores.tolist(), strict=True)
        ]

    def produce_scores(self, stream: Stream, ids: Sequence[str] | None = None, **kw: Any) -> None:
        self.produce(topics.SCORES, self.score_values(stream, ids, **kw))

    def produce_origin(self) -> None:
        """One score a drift warm-up before T0. The warm-up (default: the features'
        7-day history) starts at the monitor's first score; this puts streams that start
        at T0 after it. (A ``--drift-warmup-s 0`` flag would say it directly.)"""
        origin = Stream(np.array([ORIGIN]), np.zeros((1, N_FEATURES)), np.array([0.5]))
        self.produce_scores(origin, ["origin"])

    def produce_labels(self, labels: Sequence[tuple[str, int, bool]]) -> None:
        self.produce(
            topics.LABELS,
            [
                (
                    i.encode(),
                    self.codec.encode(
                        "Label",
                        {
                            "txn_id": i,
                            "card_id": f"card-{i}",
                            "is_fraud": y,
                            "label_time": int(lt),
                            "source": "CHARGEBACK",
                        },
                    ),
                )
                for i, lt, y in labels
            ],
        )

    def read(self, name: str, *, full_name: bool = False) -> list[Any]:
        """Every record of a topic, read to its end (read_committed)."""
        topic = name if full_name else self.topic(name)
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"reader-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            out = []
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(topic, p, low)])
                while True:
                    msg = consumer.poll(5)
                    assert msg is not None, f"no message from {topic}[{p}]"
                    if msg.error() is None:
                        out.append(msg)
                    if (msg.offset() or 0) >= high - 1:
                        break
            return out
        finally:
            consumer.close()

    def retrain_events(self) -> list[dict[str, Any]]:
        return [self.codec.decode("RetrainEvent", m.value()) for m in self.read(topics.RETRAIN)]

    def table(self, name: str) -> dict[str, Any]:
        """A monitor table as its changelog says (last value per key; deletes removed)."""
        out: dict[str, Any] = {}
        for m in self.read(f"{self.app_id}-{name}-changelog", full_name=True):
            key = json.loads(m.key())
            if m.value() is None:
                out.pop(key, None)
            else:
                out[key] = json.loads(m.value())
        return out

    def windows(self, version: str = "1") -> dict[int, dict[str, Any]]:
        prefix = f"w|{version}|"
        return {int(k[len(prefix) :]): v for k, v in self.table("state").items() if k.startswith(prefix)}


class MonitorProcess:
    """``fraudstream monitor`` as a subprocess, stopped with SIGTERM; ``script``: a test
    harness that runs the monitor with a fault injected, instead of the CLI."""

    def __init__(self, env: MonitorEnv, flags: dict[str, Any], script: Path | None = None) -> None:
        self.env, self.port = env, free_port()
        self.log = env.tmp / f"monitor-{time.monotonic_ns()}.log"
        args = {
            "kafka-bootstrap": env.bootstrap,
            "topic-prefix": env.prefix,
            "app-id": env.app_id,
            "registry": env.registry,
            "data-dir": env.tmp / "data",
            "metrics-port": self.port,
            "model-name": MODEL,
            **flags,
        }
        argv = (
            [sys.executable, "-m", "services.cli", "monitor"]
            if script is None
            else [sys.executable, str(script)]
        )
        for key, value in args.items():
            argv += [f"--{key}", str(value)]
        clean_env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=clean_env, stdout=out, stderr=subprocess.STDOUT)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        except OSError:
            return {}
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def wait_for(self, name: str, expected: float, timeout: float = 90.0, **labels: str) -> None:
        self._wait(
            lambda: self.value(name, **labels),
            lambda v: v == expected,
            f"{name}{labels} == {expected}",
            timeout,
        )

    def wait_decided(self, upto_ms: int, timeout: float = 90.0) -> None:
        """Until the decision clock has reached ``upto_ms``: every retrain decision due by
        then is made (the labels check that moves the clock runs on its own, every second)."""
        self._wait(
            lambda: self.value("fraudstream_monitor_decision_clock_seconds"),
            lambda v: v is not None and v * 1000 >= upto_ms,
            f"the decision clock to reach {upto_ms / 1000:g} s",
            timeout,
        )

    def _wait(
        self,
        read: Callable[[], float | None],
        done: Callable[[float | None], bool],
        what: str,
        timeout: float,
    ) -> None:
        seen: list[float | None] = [None]

        def reached() -> bool:
            self.check_running()
            seen[0] = read()
            return done(seen[0])

        try:
            wait_until(reached, timeout=timeout, interval=0.25)
        except AssertionError:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}: it was {seen[0]}; {self.diagnosis()}"
            ) from None

    def diagnosis(self) -> str:
        """The monitor's record counters and the log's tail, after a dump of its asyncio
        tasks (mode's workers write one on SIGUSR1) into the log."""
        counters = {k: v for k, v in self.metrics().items() if k[0].endswith(("records_total", "_alive"))}
        size = self.log.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        try:
            wait_until(lambda: self.log.stat().st_size > size, timeout=5, interval=0.1)
        except AssertionError:
            pass  # no dump: the log has the rest
        return f"counters {counters}; log {self.log} (task dump at its end):\n{self.tail()}"

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"monitor exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> int:
        return stop_process(self.proc, self.tail, timeout)


@pytest.fixture
def make_env(
    kafka_bootstrap: str, kafka_admin: AdminClient, unique: Callable[[str], str], tmp_path: Path
) -> Iterator[Callable[[], MonitorEnv]]:
    """``make_env()``: fresh topics under a unique prefix (scores and labels with one
    partition, so arrival order is production order), a registry with the champion and
    an app id; everything is deleted at teardown."""
    made: list[MonitorEnv] = []

    def make() -> MonitorEnv:
        prefix = unique("mon") + "."
        tmp = tmp_path / prefix.rstrip(".")
        env = MonitorEnv(kafka_bootstrap, prefix, unique("monitor"), tmp / "models", tmp)
        Registry(env.registry).register(
            MODEL, "not a booster: the monitor never parses it\n", champion_manifest()
        )
        new = [NewTopic(env.topic(t), num_partitions=1, replication_factor=-1) for t in TOPICS]
        for f in kafka_admin.create_topics(new).values():
            f.result(timeout=60)
        made.append(env)
        return env

    yield make
    names = [env.topic(t) for env in made for t in TOPICS]
    names += [f"{env.app_id}-{t}-changelog" for env in made for t in ("state", "txns")]
    if names:
        for f in kafka_admin.delete_topics(names, operation_timeout=30).values():
            try:
                f.result(timeout=60)
            except KafkaException:
                pass  # a changelog the monitor never created


@pytest.fixture
def monitor_env(make_env: Callable[[], MonitorEnv]) -> MonitorEnv:
    return make_env()


@pytest.fixture
def start_monitor() -> Iterator[Callable[..., MonitorProcess]]:
    """``start_monitor(env, script=None, **flags)``: the monitor as a subprocess, stopped
    at teardown."""
    started: list[MonitorProcess] = []

    def start(env: MonitorEnv, script: Path | None = None, **flags: Any) -> MonitorProcess:
        proc = MonitorProcess(env, {k.replace("_", "-"): v for k, v in flags.items()}, script)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
