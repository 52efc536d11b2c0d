"""state.json round trip, node planning, cluster identity, tool detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.stack import fetch, kafka_cluster
from services.stack.procs import ProcessRef
from services.stack.state import Component, Layout, StackState, load_state, save_state


def sample_state(root: Path) -> StackState:
    layout = Layout.at(root)
    kafka = Component(
        name="kafka-1",
        kind="kafka",
        port=19092,
        controller_port=29092,
        process=ProcessRef(pid=123, starttime=456, marker=str(layout.server_properties(1))),
        argv=("/usr/bin/java", "kafka.Kafka", str(layout.server_properties(1))),
        config=layout.server_properties(1),
        log=layout.node_log(1),
    )
    redis = Component(
        name="redis",
        kind="redis",
        port=16379,
        process=ProcessRef(pid=124, starttime=457, marker=str(layout.redis_conf)),
        argv=("/usr/bin/redis-server", str(layout.redis_conf)),
        config=layout.redis_conf,
        log=layout.redis_log,
    )
    return StackState(
        cluster_id="hziX4fU8SvK7uiPvmkqvFw",
        kafka_bootstrap="127.0.0.1:19092",
        redis_url="redis://127.0.0.1:16379/0",
        started_at="2026-01-01T00:00:00+00:00",
        components=(redis, kafka),
    )


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    state = sample_state(tmp_path)
    save_state(layout, state)
    assert load_state(layout) == state
    assert [c.name for c in state.kafka] == ["kafka-1"]


def test_no_state_file_means_no_state(tmp_path: Path) -> None:
    assert load_state(Layout.at(tmp_path)) is None


def test_state_of_another_version_is_refused(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    layout.state_file.write_text('{"version": 99}')
    with pytest.raises(ValueError, match="version"):
        load_state(layout)


def test_with_component_replaces_by_name(tmp_path: Path) -> None:
    state = sample_state(tmp_path)
    old = state.component("kafka-1")
    new = Component(
        old.name, old.kind, old.port, ProcessRef(999, 1, old.process.marker), old.argv,
        old.config, old.log, old.controller_port,
    )  # fmt: skip
    assert state.with_component(new).component("kafka-1").process.pid == 999
    with pytest.raises(KeyError):
        state.component("kafka-7")


def test_layout_is_absolute_and_everything_sits_under_the_stack_dir(tmp_path: Path) -> None:
    layout = Layout.at(Path("relative/stack"))
    assert layout.root.is_absolute()
    for path in (layout.state_file, layout.server_properties(2), layout.redis_conf, layout.redis_data):
        assert layout.root in path.parents


def test_fixed_first_port_gives_consecutive_broker_ports() -> None:
    nodes = kafka_cluster.plan_nodes(3, 19092)
    assert [n.port for n in nodes] == [19092, 19093, 19094]
    assert [n.node_id for n in nodes] == [1, 2, 3]
    assert len({n.controller_port for n in nodes} | {19092, 19093, 19094}) == 6


def test_port_zero_gives_distinct_free_ports() -> None:
    nodes = kafka_cluster.plan_nodes(3, 0)
    ports = [n.port for n in nodes] + [n.controller_port for n in nodes]
    assert len(set(ports)) == 6
    assert all(p > 0 for p in ports)


def test_cluster_id_is_kept_and_size_changes_are_refused(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    first = kafka_cluster.cluster_id_for(layout, 1)
    assert kafka_cluster.cluster_id_for(layout, 1) == first
    with pytest.raises(kafka_cluster.KafkaSetupError, match="down --wipe"):
        kafka_cluster.cluster_id_for(layout, 3)


@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("garbage", None),
    ],
)
def test_java_major_version(banner: str, major: int | None) -> None:
    assert fetch.java_major_version(banner) == major


def test_missing_java_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    with pytest.raises(fetch.ToolMissing, match="apt-get install -y openjdk-17-jre-headless"):
        fetch.find_java({})
    with pytest.raises(fetch.ToolMissing, match="apt-get install -y redis-server"):
        fetch.find_redis_server()
    with pytest.raises(fetch.ToolMissing, match="apt-get install -y maven"):
        fetch.find_mvn()


def test_cache_without_marker_is_not_used(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "kafka_2.13-3.9.2.jar").write_bytes(b"")
    assert fetch.cached_libs(tmp_path) is None  # interrupted fetch: no marker
    (libs / fetch.MARKER).write_text("not-the-pom-digest\n")
    assert fetch.cached_libs(tmp_path) is None  # another pom
    (libs / fetch.MARKER).write_text(fetch.pom_digest() + "\n")
    assert fetch.cached_libs(tmp_path) == libs
