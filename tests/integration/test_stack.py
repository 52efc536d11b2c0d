"""`fraudstream stack up | status | down` against real Kafka and Redis processes.

Each test uses its own stack folder and free ports, so it never touches the session stack.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic

from services import settings
from services.settings import StackSettings
from services.stack import Stack
from services.stack.procs import read_stat
from tests.helpers import wait_until

CLI_TIMEOUT_S = 240


def stack_cli(stack_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process, as a user would (the servers outlive it)."""
    argv = [sys.executable, "-m", "services.cli", "stack", *args, "--stack-dir", str(stack_dir)]
    if args[0] == "up":
        argv += ["--kafka-port", "0", "--redis-port", "0"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def status_json(stack_dir: Path) -> tuple[int, dict[str, Any]]:
    done = stack_cli(stack_dir, "status", "--json")
    return done.returncode, json.loads(done.stdout)


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its (new) parent to reap it."""
    stat = read_stat(pid)
    return stat is None or stat[0] == "Z"


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    """A private stack folder, always stopped and wiped afterwards, even on failure."""
    path = tmp_path / "stack"
    yield path
    Stack(settings.load(StackSettings, {"stack_dir": path})).down(wipe=True)


def test_up_twice_then_status_then_down_leaves_nothing(stack_dir: Path) -> None:
    first = stack_cli(stack_dir, "up")
    assert first.returncode == 0, first.stderr
    assert "stack up in" in first.stdout

    code, running = status_json(stack_dir)
    assert code == 0
    assert running["state"] == "running"
    assert sorted(c["name"] for c in running["components"]) == ["kafka-1", "redis"]
    assert all(c["running"] and c["listening"] for c in running["components"])
    pids = [c["pid"] for c in running["components"]]

    again = stack_cli(stack_dir, "up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert status_json(stack_dir)[1]["components"] == running["components"]  # same pids

    human = stack_cli(stack_dir, "status")
    assert human.returncode == 0
    assert "running" in human.stdout.splitlines()[0]
    assert running["kafka_bootstrap"] in human.stdout
    assert running["redis_url"] in human.stdout

    client = redis.Redis.from_url(running["redis_url"])
    try:
        assert client.ping()
    finally:
        client.close()
    admin = AdminClient({"bootstrap.servers": running["kafka_bootstrap"]})
    assert list(admin.list_topics(timeout=10).brokers) == [1]
    del admin  # no reconnect noise from librdkafka while the broker stops

    down = stack_cli(stack_dir, "down")
    assert down.returncode == 0, down.stderr
    assert "stopped kafka-1, redis" in down.stdout
    wait_until(lambda: all(gone(pid) for pid in pids), timeout=10, message=f"pids {pids} gone")

    code, stopped = status_json(stack_dir)
    assert code == 3
    assert stopped["state"] == "stopped"
    assert stopped["components"] == []
    human = stack_cli(stack_dir, "status")
    assert human.returncode == 3
    assert "stopped" in human.stdout

    assert "nothing running" in stack_cli(stack_dir, "down").stdout


@pytest.mark.slow  # ~15-35 s on 2 busy cores; CI runs it too
def test_three_brokers_replicate_and_survive_one_broker_down(stack_dir: Path) -> None:
    cfg = settings.load(
        StackSettings, {"stack_dir": stack_dir, "kafka_port": 0, "redis_port": 0, "brokers": 3}
    )
    stack = Stack(cfg)
    info = stack.up()
    assert info.brokers == 3
    admin = AdminClient({"bootstrap.servers": info.kafka_bootstrap})
    assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3]

    # The cluster default replicates three ways with min ISR 2.
    topic = f"rf-{os.getpid()}"
    admin.create_topics([NewTopic(topic, num_partitions=2)])[topic].result(timeout=60)

    def replicas() -> set[int]:
        meta = admin.list_topics(topic, timeout=5).topics[topic]
        return {len(p.isrs) for p in meta.partitions.values()} if meta.partitions else set()

    wait_until(lambda: replicas() == {3}, timeout=30, message="3 in-sync replicas")

    # A broker crash shows as degraded; starting it again brings back a full cluster.
    stack.stop_component("kafka-2", kill=True)
    status = stack.status()
    assert status.state == "degraded"
    assert [c.name for c in status.components if not c.running] == ["kafka-2"]
    stack.start_component("kafka-2")
    assert stack.status().state == "running"
    wait_until(lambda: replicas() == {3}, timeout=60, message="kafka-2 back in sync")

    pids = [c.pid for c in stack.status().components]
    assert sorted(stack.down()) == ["kafka-1", "kafka-2", "kafka-3", "redis"]
    assert all(gone(pid) for pid in pids)
    assert stack.status().state == "stopped"


def test_session_fixtures_give_a_working_kafka_and_redis(
    kafka_admin: AdminClient,
    make_topic: Callable[..., str],
    redis_client: redis.Redis,
    redis_namespace: str,
    unique: Callable[[str], str],
) -> None:
    topic = make_topic(partitions=4, config={"cleanup.policy": "compact"})
    meta = kafka_admin.list_topics(topic, timeout=10).topics[topic]
    assert sorted(meta.partitions) == [0, 1, 2, 3]
    assert unique("x") != unique("x")

    key = f"{redis_namespace}:probe"
    redis_client.set(key, b"1")
    assert redis_client.get(key) == b"1"


def test_a_free_port_taken_before_the_broker_binds_it_is_retried(
    stack_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.stack import kafka_cluster, procs

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_ports = procs.free_ports
        handed_out: list[list[int]] = []

        def first_pick_is_taken(count: int, host: str = "127.0.0.1") -> list[int]:
            ports = real_free_ports(count, host)
            if not handed_out:
                ports[0] = taken  # as if another process bound it after we picked it
            handed_out.append(ports)
            return ports

        monkeypatch.setattr(kafka_cluster, "free_ports", first_pick_is_taken)
        monkeypatch.setattr(procs, "port_is_free", lambda port, host="127.0.0.1": True)
        cfg = settings.load(StackSettings, {"stack_dir": stack_dir, "kafka_port": 0, "redis_port": 0})
        info = Stack(cfg).up()
        assert len(handed_out) == 2
        assert info.kafka_bootstrap == f"127.0.0.1:{handed_out[1][0]}"
        assert Stack(cfg).status().state == "running"
