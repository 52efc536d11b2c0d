"""``fraudstream replay`` against the real broker: everything arrives, keyed by card, in
event-time order per key and across the two topics; slices; a clean stop on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from services import dataset
from services.core import topics
from services.core.codec import Codec
from services.core.replay_plan import merge_events, parse_instant, select
from services.kafka.admin import TopicSpec, ensure_topics
from services.replay import cli as replay_cli
from tests.helpers import wait_until
from tests.unit.backtest.bt_helpers import make_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(
        tmp_path_factory.mktemp("replay") / "data", days=7, cards=300, merchants=40, seed=11, drift=None
    )


@pytest.fixture
def prefix(kafka_admin: AdminClient, unique: Callable[[str], str]) -> Any:
    name = unique("rp") + "."
    names = [name + topics.TRANSACTIONS, name + topics.LABELS]
    ensure_topics(kafka_admin, [TopicSpec(n, 3, 1) for n in names], 30)
    yield name
    for future in kafka_admin.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=60)


def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 60.0) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out: list[Message] = []

        def enough() -> bool:
            out.extend(m for m in consumer.consume(500, 0.2) if m.error() is None)
            return len(out) >= expect

        wait_until(
            enough, timeout=timeout, interval=0, message=f"{expect} records on {topic} (got {len(out)})"
        )
        out.extend(m for m in consumer.consume(500, 1.0) if m.error() is None)  # would show extras
        return out
    finally:
        consumer.close()


def test_replay_publishes_everything_in_event_time_order(
    data_dir: Path, prefix: str, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = replay_cli.main([str(data_dir), "--topic-prefix", prefix, "--kafka-bootstrap", kafka_bootstrap])
    out, err = capsys.readouterr()
    assert code == 0, err
    txns, labels = dataset.read_transactions(data_dir), dataset.read_labels(data_dir)
    assert re.search(rf"transactions\s+{len(txns):,}", out) and re.search(rf"labels\s+{len(labels):,}", out)
    codec = Codec.load()
    got_t = read_all(kafka_bootstrap, prefix + topics.TRANSACTIONS, len(txns))
    got_l = read_all(kafka_bootstrap, prefix + topics.LABELS, len(labels))
    assert len(got_t) == len(txns) and len(got_l) == len(labels)
    assert {codec.decode("Transaction", m.value())["txn_id"] for m in got_t} == {t["txn_id"] for t in txns}
    for m in got_t:
        assert m.key() == codec.decode("Transaction", m.value())["card_id"].encode()
    for m in got_l:
        assert m.key() == codec.decode("Label", m.value())["card_id"].encode()
    # Kafka's producer timestamps follow produce order: laid out in the merged event-time
    # order, they never go backwards, across both topics.
    stamp_t = {codec.decode("Transaction", m.value())["txn_id"]: m.timestamp()[1] for m in got_t}
    stamp_l = sorted((codec.decode("Label", m.value())["label_time"], m.timestamp()[1]) for m in got_l)
    label_stamps = iter(s for _, s in stamp_l)
    in_order = [
        stamp_t[e.record["txn_id"]] if e.kind == "txn" else next(label_stamps)
        for e in merge_events(txns, labels)
    ]
    assert in_order == sorted(in_order)
    # Per partition, event time never goes backwards.
    by_partition: dict[int | None, list[int]] = {}
    for m in got_t:
        by_partition.setdefault(m.partition(), []).append(
            codec.decode("Transaction", m.value())["event_time"]
        )
    assert all(times == sorted(times) for times in by_partition.values())


def test_start_and_end_select_a_slice(
    data_dir: Path, prefix: str, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    start, end = "2026-01-03", "2026-01-05T12:00:00Z"
    code = replay_cli.main(
        [
            str(data_dir),
            "--topic-prefix",
            prefix,
            "--kafka-bootstrap",
            kafka_bootstrap,
            "--start",
            start,
            "--end",
            end,
            "--no-labels",
        ]
    )
    capsys.readouterr()
    assert code == 0
    expected = [
        e.record["txn_id"]
        for e in select(
            merge_events(dataset.read_transactions(data_dir)), parse_instant(start), parse_instant(end)
        )
    ]
    got = read_all(kafka_bootstrap, prefix + topics.TRANSACTIONS, len(expected))
    codec = Codec.load()
    assert sorted(codec.decode("Transaction", m.value())["txn_id"] for m in got) == sorted(expected)


def test_sigterm_stops_cleanly_and_flushes(
    data_dir: Path, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    # x3600: an hour of event time per second; the data set lasts a week, so it is mid-way
    # when the signal comes.
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "replay", str(data_dir), "--topic-prefix", prefix,
         "--kafka-bootstrap", kafka_bootstrap, "--speed", "3600"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        read_all(kafka_bootstrap, prefix + topics.TRANSACTIONS, 20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    published = int(re.search(r"transactions\s+([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 20 <= published < len(dataset.read_transactions(data_dir))
    assert len(read_all(kafka_bootstrap, prefix + topics.TRANSACTIONS, published)) == published


def test_missing_topics_are_one_line(
    data_dir: Path, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = replay_cli.main(
        [
            str(data_dir),
            "--topic-prefix",
            f"nothing-{uuid.uuid4().hex[:8]}.",
            "--kafka-bootstrap",
            kafka_bootstrap,
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
