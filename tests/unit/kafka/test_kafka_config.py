"""Client configuration and the `topics` command's behaviour without a broker."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from services import settings
from services.kafka import consumer_config, producer_config
from services.kafka import topics as topics_cli
from services.kafka.config import LIBRDKAFKA_LOGGER, admin_config
from services.settings import TopicsSettings

CFG = settings.load(
    TopicsSettings,
    {"kafka_bootstrap": "broker-1:9093,broker-2:9093", "topic_prefix": "bt."},
    environ={},
)


def test_producer_is_idempotent_and_takes_overrides() -> None:
    overrides: dict[str, Any] = {"linger.ms": 50}
    conf = producer_config(CFG, **overrides)
    assert conf["bootstrap.servers"] == "broker-1:9093,broker-2:9093"
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert conf["linger.ms"] == 50
    assert "transactional.id" not in conf
    assert producer_config(CFG, transactional_id="scorer-0")["transactional.id"] == "scorer-0"


def test_consumer_commits_manually_from_the_earliest_offset() -> None:
    conf = consumer_config(CFG, "scorer")
    assert conf["group.id"] == "scorer"
    assert conf["enable.auto.commit"] is False
    assert conf["auto.offset.reset"] == "earliest"
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["isolation.level"] == "read_committed"
    relaxed = consumer_config(CFG, "g", read_committed=False, **{"auto.offset.reset": "latest"})
    assert relaxed["isolation.level"] == "read_uncommitted"
    assert relaxed["auto.offset.reset"] == "latest"


def test_librdkafka_logs_go_through_python_logging() -> None:
    for conf in (producer_config(CFG), consumer_config(CFG, "g"), admin_config(CFG)):
        assert conf["logger"] is logging.getLogger(LIBRDKAFKA_LOGGER)


def test_topic_specs_follow_the_settings() -> None:
    cfg = settings.load(
        TopicsSettings,
        {"topic_prefix": "t1.", "partitions": 6, "aux_partitions": 2, "min_insync_replicas": 1},
        environ={},
    )
    specs = {s.name: s for s in topics_cli.topic_specs(cfg)}
    assert sorted(specs) == sorted(f"t1.{t}" for t in topics_cli.names.ALL_TOPICS)
    assert specs["t1.transactions"].partitions == 6 and specs["t1.scores"].partitions == 6
    assert specs["t1.labels"].partitions == 2 and specs["t1.transactions.dlq"].partitions == 2
    assert all(s.config["min.insync.replicas"] == "1" for s in specs.values())
    assert "retention.ms" in specs["t1.monitor.dlq"].config


def test_help_and_missing_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        topics_cli.main(["create", "--help"])
    assert info.value.code == 0
    assert "FRAUDSTREAM_PARTITIONS" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        topics_cli.main([])
    assert info.value.code == 2


def test_bad_settings_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert topics_cli.main(["create", "--partitions", "0"]) == 2
    assert topics_cli.main(["create", "--replication-factor", "1", "--min-insync-replicas", "2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("fraudstream topics: error:") for line in lines)


def test_unreachable_broker_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["create", "--kafka-bootstrap", f"127.0.0.1:{port}", "--kafka-timeout-s", "1"]
    assert topics_cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fraudstream topics: error: no answer from Kafka within 1 s")
    assert "\n" not in err and "Traceback" not in err
