"""Rendering of the stack's config files: Kafka server.properties, log4j, redis.conf."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.stack import config
from services.stack.config import KafkaNode, Replication


def props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def three_nodes() -> list[KafkaNode]:
    return [KafkaNode(1, 19092, 29092), KafkaNode(2, 19093, 29093), KafkaNode(3, 19094, 29094)]


def test_single_node_is_combined_broker_and_controller_on_localhost() -> None:
    node = KafkaNode(node_id=1, port=19092, controller_port=29092)
    p = props(config.render_server_properties(node, [node], Path("/s/kafka/node-1/data")))
    assert p["process.roles"] == "broker,controller"
    assert p["node.id"] == "1"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:29092"
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:29092"
    assert p["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert p["controller.listener.names"] == "CONTROLLER"
    assert p["log.dirs"] == "/s/kafka/node-1/data"
    assert p["auto.create.topics.enable"] == "false"


def test_single_node_internal_topics_fit_one_broker() -> None:
    node = KafkaNode(1, 19092, 29092)
    p = props(config.render_server_properties(node, [node], Path("/d")))
    assert p["offsets.topic.replication.factor"] == "1"
    assert p["transaction.state.log.replication.factor"] == "1"
    assert p["transaction.state.log.min.isr"] == "1"
    assert p["default.replication.factor"] == "1"
    assert p["min.insync.replicas"] == "1"
    assert p["group.initial.rebalance.delay.ms"] == "0"


def test_three_nodes_replicate_three_ways_with_min_isr_two() -> None:
    nodes = three_nodes()
    p = props(config.render_server_properties(nodes[1], nodes, Path("/d2")))
    assert p["node.id"] == "2"
    assert p["controller.quorum.voters"] == ("1@127.0.0.1:29092,2@127.0.0.1:29093,3@127.0.0.1:29094")
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:29093"
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert p[key] == "3", key
    assert p["min.insync.replicas"] == "2"
    assert p["transaction.state.log.min.isr"] == "2"


@pytest.mark.parametrize(("brokers", "factor", "min_isr"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)])
def test_replication_for_cluster_size(brokers: int, factor: int, min_isr: int) -> None:
    assert Replication.for_brokers(brokers) == Replication(factor=factor, min_isr=min_isr)


def test_cleaner_buffer_is_small_but_valid_for_kafka() -> None:
    # Kafka requires dedupe.buffer.size / cleaner.threads > 1 MiB (strictly).
    node = KafkaNode(1, 1, 2)
    p = props(config.render_server_properties(node, [node], Path("/d")))
    per_thread = int(p["log.cleaner.dedupe.buffer.size"]) / int(p["log.cleaner.threads"])
    assert 1024 * 1024 < per_thread <= 16 * 1024 * 1024


def test_rendering_refuses_a_node_outside_the_cluster_or_duplicate_ids() -> None:
    nodes = three_nodes()
    with pytest.raises(ValueError, match="not part"):
        config.render_server_properties(KafkaNode(9, 1, 2), nodes, Path("/d"))
    with pytest.raises(ValueError, match="duplicate"):
        config.render_server_properties(nodes[0], [nodes[0], nodes[0]], Path("/d"))


def test_bootstrap_lists_every_broker() -> None:
    assert config.bootstrap_servers(three_nodes()) == ("127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094")


def test_cluster_ids_are_22_char_base64url_uuids_and_distinct() -> None:
    # 2000 draws: about 30 of them would start with '-' if that weren't avoided.
    ids = {config.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cid in ids:
        assert len(cid) == 22
        assert config.is_cluster_id(cid)
        assert not cid.startswith("-")  # kafka-storage would read it as an option
    assert not config.is_cluster_id("too-short")
    assert not config.is_cluster_id("-" + "A" * 21)


def test_log4j_maps_python_levels() -> None:
    assert config.render_log4j_properties("WARNING").startswith("log4j.rootLogger=WARN, stdout")
    assert config.render_log4j_properties("INFO").startswith("log4j.rootLogger=INFO, stdout")


def test_redis_conf_binds_localhost_with_aof_in_foreground() -> None:
    text = config.render_redis_conf(16379, Path("/s/redis/da ta"), Path("/s/redis/redis.conf"))
    lines = text.splitlines()
    for expected in (
        "bind 127.0.0.1",
        "port 16379",
        "daemonize no",
        "appendonly yes",
        'dir "/s/redis/da ta"',
    ):
        assert expected in lines
    # The process title carries the config path so `stack down` can recognise the process.
    assert any(line.startswith("proc-title-template") and "{config-file}" in line for line in lines)


@pytest.mark.parametrize(("heap", "xms"), [("512m", "-Xms64m"), ("32m", "-Xms32m"), ("1g", "-Xms64m")])
def test_jvm_heap_flags(heap: str, xms: str) -> None:
    args = config.jvm_args(heap, Path("/s/log4j.properties"), Path("/s/node-1"))
    assert f"-Xmx{heap}" in args
    assert xms in args
    assert "-Dlog4j.configuration=file:/s/log4j.properties" in args


def test_heap_size_parsing() -> None:
    assert config.heap_megabytes("2g") == 2048
    with pytest.raises(ValueError):
        config.heap_megabytes("12k")
