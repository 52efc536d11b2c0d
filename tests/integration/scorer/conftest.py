"""Fixtures and helpers for the scorer's integration tests (real Kafka, real Redis).

Each test gets its own topic prefix (so ``settings.topic(name)`` gives it private
``transactions``, ``scores`` and ``transactions.dlq`` topics), consumer group, Redis
namespace and model registry.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from services.core import topics
from services.core.codec import Codec
from services.kafka.admin import TopicSpec, ensure_topics
from services.runtime import StopFlag
from services.scorer import cli as scorer_cli
from services.settings import ScorerSettings
from tests.helpers import wait_until
from tests.helpers_models import FRAUD_AMOUNT, register_model

ROOT = Path(__file__).resolve().parents[3]
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z: inside the default 400-day age limit
STEP_MS = 1_000

__all__ = ["FRAUD_AMOUNT", "START_MS", "ScorerEnv", "make_transactions", "wait_until"]


@pytest.fixture(scope="session")
def codec() -> Codec:
    return Codec.load()


def make_transactions(
    n: int,
    *,
    seed: int = 1,
    cards: int = 200,
    merchants: int = 40,
    start_ms: int = START_MS,
    prefix: str = "t",
) -> list[dict[str, Any]]:
    """``n`` valid transactions, event time ascending one second apart, seeded."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(
            {
                "txn_id": f"{prefix}{seed}-{i:07d}",
                "card_id": f"card-{rng.randrange(cards):05d}",
                "merchant_id": f"m-{rng.randrange(merchants):04d}",
                "mcc": rng.choice([5411, 5812, 5999, 4829, 6011]),
                "amount": round(rng.uniform(1.0, 1000.0), 2),
                "currency": "EUR",
                "country": rng.choice(["DE", "FR", "NL", "US"]),
                "channel": rng.choice(["POS", "ECOM", "ATM", "MOTO"]),
                "device_id": rng.choice([None, f"dev-{rng.randrange(50)}"]),
                "event_time": start_ms + i * STEP_MS,
            }
        )
    return out


@dataclass
class ScorerEnv:
    """One test's private world: topics, group, namespace, registry, and client helpers."""

    bootstrap: str
    redis_url: str
    prefix: str
    group: str
    namespace: str
    registry: Path
    codec: Codec
    partitions: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def transactions(self) -> str:
        return self.prefix + topics.TRANSACTIONS

    @property
    def scores(self) -> str:
        return self.prefix + topics.SCORES

    @property
    def dlq(self) -> str:
        return self.prefix + topics.TRANSACTIONS_DLQ

    def settings(self, **overrides: Any) -> ScorerSettings:
        values: dict[str, Any] = {
            "kafka_bootstrap": self.bootstrap,
            "redis_url": self.redis_url,
            "redis_namespace": self.namespace,
            "topic_prefix": self.prefix,
            "group_id": self.group,
            "registry": self.registry,
            "transactional_id_prefix": "test-scorer",
            "batch_max_ms": 20,
            "model_poll_s": 0.5,
            "log_level": "INFO",
            # Also the session timeout (capped at 45 s): a killed scorer's partitions
            # move after 10 s instead of 45 s.
            "max_poll_interval_ms": 10_000,
        }
        values.update(self.extra)
        values.update(overrides)
        return ScorerSettings.model_validate(values)

    def cli_args(self, **overrides: Any) -> list[str]:
        """The same settings as ``fraudstream scorer`` flags."""
        s = self.settings(**overrides)
        args = []
        for name in ("kafka_bootstrap", "redis_namespace", "topic_prefix", "group_id", "registry",
                     "transactional_id_prefix", "batch_max_ms", "batch_max_records", "model_poll_s",
                     "delivery", "log_level", "poison_max_share", "poison_max_consecutive",
                     "max_poll_interval_ms", "shadow"):  # fmt: skip
            flag, value = "--" + name.replace("_", "-"), getattr(s, name)
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(value)]
        return args + ["--redis-url", s.redis_url.get_secret_value()]

    # ------------------------------------------------------------------ kafka helpers

    def produce(self, txns: Sequence[dict[str, Any]]) -> None:
        self.produce_raw([(t["card_id"].encode(), self.codec.encode("Transaction", t)) for t in txns])

    def produce_raw(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "enable.idempotence": True})
        for key, value in records:
            while True:
                try:
                    producer.produce(self.transactions, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        assert producer.flush(30) == 0, "transactions not delivered"

    def read(self, topic: str, expect: int, timeout: float = 60.0) -> list[Message]:
        """At least ``expect`` records of ``topic`` (read_committed), then whatever else
        is committed up to the high watermark: so duplicates would be seen too."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"{self.group}-reader-{random.random()}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            tps = [TopicPartition(topic, p, 0) for p in meta.partitions]
            consumer.assign(tps)
            out: list[Message] = []

            def enough() -> bool:
                out.extend(m for m in consumer.consume(1000, 0.2) if m.error() is None)
                return len(out) >= expect

            wait_until(
                enough, timeout=timeout, interval=0, message=f"{expect} records on {topic} (got {len(out)})"
            )

            # Drain up to the last stable offset so that any duplicate shows up too.
            def drained() -> bool:
                batch = [m for m in consumer.consume(1000, 0.5) if m.error() is None]
                out.extend(batch)
                return not batch

            wait_until(drained, timeout=timeout, interval=0, message=f"drain {topic}")
            return out
        finally:
            consumer.close()

    def scores_by_txn(self, expect: int, timeout: float = 60.0) -> dict[str, list[dict[str, Any]]]:
        by_txn: dict[str, list[dict[str, Any]]] = {}
        for msg in self.read(self.scores, expect, timeout):
            score = self.codec.decode("Score", msg.value())
            if not score["shadow"]:
                assert msg.key() == score["card_id"].encode()
                by_txn.setdefault(score["txn_id"], []).append(score)
        return by_txn

    def committed(self) -> int:
        """Sum of the scorer group's committed offsets on the transactions topic."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            tps = [TopicPartition(self.transactions, p) for p in range(self.partitions)]
            try:
                got = consumer.committed(tps, timeout=10)
            except KafkaException:
                return -1
            return sum(max(tp.offset, 0) for tp in got)
        finally:
            consumer.close()

    def wait_committed(self, n: int, alive: Callable[[], bool], timeout: float = 90.0) -> None:
        """Wait until the group committed ``n`` offsets; fail at once if the scorer died."""

        def done() -> bool:
            assert alive(), "the scorer stopped"
            return self.committed() == n

        wait_until(done, timeout=timeout, message=f"{n} offsets committed (at {self.committed()})")

    # ------------------------------------------------------------------ running a scorer

    def start_thread(self, **overrides: Any) -> RunningScorer:
        settings = self.settings(**overrides)
        return RunningScorer.start(settings)

    def spawn(self, log_path: Path, **overrides: Any) -> subprocess.Popen[bytes]:
        """``fraudstream scorer`` as a real process (for kill -9), logging to ``log_path``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
        env["PYTHONPATH"] = str(ROOT)
        with log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "services.cli", "scorer", *self.cli_args(**overrides)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip


@dataclass
class RunningScorer:
    """``scorer_cli.serve`` in a thread, with its own stop flag and metrics registry."""

    thread: threading.Thread
    stop: StopFlag
    registry: CollectorRegistry
    result: dict[str, Any]

    @classmethod
    def start(cls, settings: ScorerSettings) -> RunningScorer:
        stop, registry = StopFlag(), CollectorRegistry()
        result: dict[str, Any] = {}

        def target() -> None:
            try:
                result["code"] = scorer_cli.serve(settings, stop, registry)
            except BaseException as exc:  # surfaced by .close() in the test thread
                result["error"] = exc

        thread = threading.Thread(target=target, name="scorer", daemon=True)
        thread.start()
        return cls(thread, stop, registry, result)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def close(self, timeout: float = 60.0) -> int:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "scorer did not stop"
        if "error" in self.result:
            raise self.result["error"]
        return int(self.result["code"])

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def lag_is_zero(self, partitions: int) -> bool:
        name = "fraudstream_scorer_consumer_lag_records"
        return all(
            self.registry.get_sample_value(name, {"partition": str(p)}) == 0 for p in range(partitions)
        )


@pytest.fixture
def scorer_env(
    kafka_bootstrap: str,
    redis_url: str,
    kafka_admin: AdminClient,
    redis_namespace: str,
    unique: Callable[[str], str],
    tmp_path: Path,
    codec: Codec,
) -> Iterator[ScorerEnv]:
    """Private topics (4 partitions) and a registry holding a tiny champion model."""
    prefix = unique("sc") + "."
    partitions = 4
    specs = [
        TopicSpec(prefix + topics.TRANSACTIONS, partitions, 1),
        TopicSpec(prefix + topics.SCORES, partitions, 1),
        TopicSpec(prefix + topics.TRANSACTIONS_DLQ, 1, 1),
    ]
    ensure_topics(kafka_admin, specs, 30)
    registry = tmp_path / "models"
    register_model(registry)
    env = ScorerEnv(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=prefix,
        group=unique("scorer"),
        namespace=redis_namespace,
        registry=registry,
        codec=codec,
        partitions=partitions,
    )
    yield env
    futures = kafka_admin.delete_topics([s.name for s in specs], operation_timeout=30)
    for future in futures.values():
        try:
            future.result(timeout=60)
        except KafkaException:
            pass


# --------------------------------------------------------------------------- feature checks

# Merchant traffic is global: with several partitions its features depend on the order in
# which batches of different partitions reach Redis, so per-score vectors are compared on
# the card's columns only. Final merchant *state* is order-free (sums of increments).
MERCHANT_COLUMNS = frozenset(
    {
        "merchant_txn_count_1h",
        "merchant_txn_count_24h",
        "merchant_new_card_count_24h",
        "merchant_mean_amount_7d",
        "amount_to_merchant_mean",
    }
)


def assert_features_match_offline(
    env: ScorerEnv,
    txns: Sequence[dict[str, Any]],
    scores: dict[str, list[dict[str, Any]]],
    redis_url: str | None = None,
) -> None:
    """Every score's card features, and the final Redis state of every card and merchant,
    equal an offline recomputation over the same transactions (nothing counted twice)."""
    import numpy as np
    import redis

    from services.core.features import FEATURE_NAMES
    from services.core.offline import OfflineFeatureStore
    from services.online.store import OnlineFeatureStore

    offline = OfflineFeatureStore()
    card_cols = [i for i, name in enumerate(FEATURE_NAMES) if name not in MERCHANT_COLUMNS]
    want = np.array([offline.process(t) for t in txns])[:, card_cols]
    got = np.array([scores[t["txn_id"]][0]["features"] for t in txns])[:, card_cols]
    diff = ~((got == want) | (np.isnan(got) & np.isnan(want)))
    assert not diff.any(), f"{int(diff.any(axis=1).sum())} score vectors differ from offline"
    client = redis.Redis.from_url(redis_url or env.redis_url)
    try:
        online = OnlineFeatureStore(client, env.namespace)
        for card_id, state in offline.cards.items():
            stored = online.read_card_state(card_id)
            assert stored is not None and stored.to_bytes() == state.to_bytes(), "card state differs"
        for merchant_id, mstate in offline.merchants.items():
            assert online.read_merchant_state(merchant_id) == mstate, "merchant state differs"
    finally:
        client.close()
