"""Fixtures for the trainer service's integration tests (real Kafka, real Redis).

Each test gets private topics under a unique prefix, a registry folder and consumer
group ids; ``fraudstream trainer`` (and the monitor) run as real subprocesses, so they
can be killed with SIGKILL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.core import topics
from services.core.codec import Codec
from services.kafka.admin import TopicSpec, ensure_topics
from services.replay import cli as replay_cli
from tests.helpers import stop_process, wait_until

ROOT = Path(__file__).resolve().parents[3]
DAY_MS = 86_400_000
# Partitions per topic: several where the trainer reads by time range, one elsewhere.
PARTITIONS = {
    topics.TRANSACTIONS: 3, topics.LABELS: 2, topics.RETRAIN: 1, topics.MODEL_UPDATES: 1,
    topics.SCORES: 3, topics.TRANSACTIONS_DLQ: 1, topics.MONITOR_DLQ: 1,
}  # fmt: skip
COORDINATOR_NOT_READY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def clean_env() -> dict[str, str]:
    """The environment without FRAUDSTREAM_* settings: subprocesses get flags only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class LoopEnv:
    bootstrap: str
    prefix: str
    registry: Path
    tmp: Path
    codec: Codec = field(default_factory=Codec.load)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def kafka_flags(self) -> list[str]:
        return ["--kafka-bootstrap", self.bootstrap, "--topic-prefix", self.prefix]

    def replay(self, data: Path, *, start: str | None = None, end: str | None = None) -> None:
        argv = [str(data), *self.kafka_flags(), "--log-level", "WARNING"]
        argv += ["--start", start] if start else []
        argv += ["--end", end] if end else []
        assert replay_cli.main(argv) == 0

    def produce(self, name: str, schema: str, records: Sequence[dict[str, Any]], key: str) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        for record in records:
            producer.produce(
                self.topic(name), key=str(record[key]).encode(), value=self.codec.encode(schema, record)
            )
            producer.poll(0)
        assert producer.flush(30) == 0

    def read(self, name: str, schema: str) -> list[dict[str, Any]]:
        """Every committed record of a topic, decoded, in partition then offset order."""
        topic = self.topic(name)
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "enable.partition.eof": True})  # fmt: skip
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            wanted = []
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    wanted.append(TopicPartition(topic, p, low))
            consumer.assign(wanted)
            pending, out = {tp.partition for tp in wanted}, []
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(1000, 0.5):
                    err = msg.error()
                    if err is None:
                        out.append(self.codec.decode(schema, msg.value()))
                    elif err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
            assert not pending, f"could not read {topic} to its end"
            return out
        finally:
            consumer.close()

    def updates(self) -> list[dict[str, Any]]:
        return self.read(topics.MODEL_UPDATES, "ModelUpdate")

    def committed(self, group: str, name: str) -> int:
        """Sum of ``group``'s committed offsets on a topic (0 where nothing is committed)."""
        topic = self.topic(name)
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS[name])]
            try:
                return sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
            except KafkaException:
                return 0
        finally:
            consumer.close()

    def commit_to_end(self, group: str, name: str) -> None:
        """Make ``group`` start after everything on the topic now (it has no members yet)."""
        topic = self.topic(name)
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        try:
            ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1])
                    for p in range(PARTITIONS[name])]  # fmt: skip

            def committed() -> bool:
                try:
                    consumer.commit(offsets=ends, asynchronous=False)
                except KafkaException as exc:  # a fresh broker's group coordinator may still load
                    err = exc.args[0]
                    if not (err.retriable() or err.code() in COORDINATOR_NOT_READY):
                        raise
                    return False
                return True

            wait_until(committed, timeout=60, interval=0.5, message=f"offsets of {group} committed")
        finally:
            consumer.close()


class Process:
    """A ``fraudstream`` command as a subprocess, logging to a file."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", *argv], cwd=ROOT,
                                         env=clean_env(), stdout=out, stderr=subprocess.STDOUT)  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_log(self, pattern: str, timeout: float = 60.0, after: int = 0) -> None:
        """Until ``pattern`` (a regex) appears in the log after character ``after``."""

        def seen() -> bool:
            assert self.alive(), f"process exited with {self.proc.returncode}:\n{self.tail()}"
            return re.search(pattern, self.text()[after:]) is not None

        wait_until(seen, timeout=timeout, interval=0.02, message=f"{pattern!r} in {self.log}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int:
        return stop_process(self.proc, self.tail, timeout)


@pytest.fixture
def loop_env(kafka_bootstrap: str, kafka_admin: AdminClient, unique: Callable[[str], str],
             tmp_path: Path) -> Iterator[LoopEnv]:  # fmt: skip
    """Private topics (and a registry folder); every topic under the prefix is deleted at
    teardown, the monitor's changelogs included."""
    prefix = unique("tr") + "."
    ensure_topics(kafka_admin, [TopicSpec(prefix + n, p, 1) for n, p in PARTITIONS.items()], 30)
    yield LoopEnv(kafka_bootstrap, prefix, tmp_path / "models", tmp_path)
    made = sorted(t for t in kafka_admin.list_topics(timeout=10).topics if t.startswith(prefix))
    for future in kafka_admin.delete_topics(made, operation_timeout=30).values():
        try:
            future.result(timeout=60)
        except KafkaException:
            pass  # already gone


@pytest.fixture
def start() -> Iterator[Callable[[list[str], Path], Process]]:
    """``start(argv, log)``: a ``fraudstream`` subprocess, stopped (or killed) at teardown."""
    started: list[Process] = []

    def make(argv: list[str], log: Path) -> Process:
        proc = Process(argv, log)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.alive():
            proc.proc.kill()
            proc.proc.wait(10)


def trainer_argv(env: LoopEnv, group: str, **flags: Any) -> list[str]:
    argv = ["trainer", *env.kafka_flags(), "--registry", str(env.registry), "--group-id", group]
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv
