"""Pure rendering of the local stack's config files: Kafka (KRaft), log4j and redis.

Nothing here touches processes, sockets or the file system, so every rule about the
broker settings is unit-tested as plain text.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"

# Kafka refuses to start unless dedupe.buffer.size / cleaner.threads is *strictly greater*
# than 1 MiB (KafkaConfig.validateValues). The default 128 MiB is allocated on the heap
# as soon as a compacted topic (__consumer_offsets) exists, which a 512m heap can't spare.
CLEANER_THREADS = 1
CLEANER_DEDUPE_BUFFER_BYTES = 2 * 1024 * 1024

# Python's level names -> log4j's.
_LOG4J_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR"}


@dataclass(frozen=True)
class KafkaNode:
    """One combined broker + controller of the local cluster."""

    node_id: int
    port: int
    controller_port: int

    @property
    def name(self) -> str:
        return f"kafka-{self.node_id}"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class Replication:
    """Replication of internal (and, by default, all) topics for a cluster of ``brokers``."""

    factor: int
    min_isr: int

    @classmethod
    def for_brokers(cls, brokers: int) -> Replication:
        if brokers < 1:
            raise ValueError(f"a cluster needs at least one broker, got {brokers}")
        factor = min(3, brokers)
        # min ISR 2 of 3 survives one broker down while acks=all still means two copies.
        return cls(factor=factor, min_isr=max(1, factor - 1))


def new_cluster_id() -> str:
    """A KRaft cluster id: a random 16-byte uuid, base64url without padding (22 chars).

    Like Kafka's own ``Uuid.randomUuid()``, never one that starts with '-': command-line
    tools would take it for an option (``kafka-storage format -t -Xy...`` fails).
    """
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not value.startswith("-"):
            return value


def is_cluster_id(value: str) -> bool:
    if len(value) != 22 or value.startswith("-"):
        return False
    try:
        return len(base64.urlsafe_b64decode(value + "==")) == 16
    except ValueError:
        return False


def quorum_voters(nodes: Sequence[KafkaNode]) -> str:
    return ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)


def bootstrap_servers(nodes: Sequence[KafkaNode]) -> str:
    return ",".join(n.bootstrap for n in nodes)


def _escape_property(value: str) -> str:
    # java.util.Properties treats a backslash as an escape character.
    return value.replace("\\", "\\\\")


def render_server_properties(node: KafkaNode, nodes: Sequence[KafkaNode], data_dir: Path) -> str:
    """``server.properties`` of one node of a static-quorum KRaft cluster on 127.0.0.1."""
    if node not in nodes:
        raise ValueError(f"node {node.node_id} is not part of the cluster")
    ids = [n.node_id for n in nodes]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate node ids in {ids}")
    rep = Replication.for_brokers(len(nodes))
    props: list[tuple[str, str | int]] = [
        ("process.roles", "broker,controller"),
        ("node.id", node.node_id),
        ("controller.quorum.voters", quorum_voters(nodes)),
        ("listeners", f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}"),
        ("advertised.listeners", f"PLAINTEXT://{HOST}:{node.port}"),
        ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"),
        ("controller.listener.names", "CONTROLLER"),
        ("inter.broker.listener.name", "PLAINTEXT"),
        ("log.dirs", _escape_property(str(data_dir))),
        # Topics are created on purpose (`fraudstream topics create`), never by a typo.
        ("auto.create.topics.enable", "false"),
        ("num.partitions", 1),
        ("default.replication.factor", rep.factor),
        ("min.insync.replicas", rep.min_isr),
        # Internal topics must fit the cluster, or group joins and transactions hang.
        ("offsets.topic.replication.factor", rep.factor),
        ("transaction.state.log.replication.factor", rep.factor),
        ("transaction.state.log.min.isr", rep.min_isr),
        # No 3 s wait before the first rebalance: tests and the demo start groups often.
        ("group.initial.rebalance.delay.ms", 0),
        ("log.cleaner.threads", CLEANER_THREADS),
        ("log.cleaner.dedupe.buffer.size", CLEANER_DEDUPE_BUFFER_BYTES),
        # Sized for a laptop or a 2-core CI box, not for throughput records.
        ("num.network.threads", 2),
        ("num.io.threads", 4),
        ("num.recovery.threads.per.data.dir", 1),
    ]
    lines = [f"# node {node.node_id} of {len(nodes)}; written by `fraudstream stack up`"]
    lines += [f"{key}={value}" for key, value in props]
    return "\n".join(lines) + "\n"


def render_log4j_properties(log_level: str) -> str:
    """log4j 1.x config: everything to stdout, which the stack redirects to the node's log."""
    level = _LOG4J_LEVELS.get(log_level, "INFO")
    return "\n".join(
        [
            f"log4j.rootLogger={level}, stdout",
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender",
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n",
            # Per-request and per-partition chatter drowns what matters in the log tail.
            "log4j.logger.kafka.request.logger=WARN",
            "log4j.logger.state.change.logger=WARN",
            "log4j.logger.org.apache.kafka.clients=WARN",
            "",
        ]
    )


def _quote_redis(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_redis_conf(port: int, data_dir: Path, config_path: Path) -> str:
    """redis.conf for a foreground redis-server on 127.0.0.1 with the AOF on.

    ``config_path`` goes into the process title so that ``stack down`` can tell our
    redis-server from anybody else's before it sends a signal.
    """
    return "\n".join(
        [
            "# written by `fraudstream stack up`",
            f"bind {HOST}",
            f"port {port}",
            "protected-mode yes",
            "daemonize no",
            "supervised no",
            f"dir {_quote_redis(str(data_dir))}",
            'logfile ""',
            "loglevel notice",
            # Durability comes from the append-only file; no periodic RDB forks on top.
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            'proc-title-template "{title} {listen-addr} {server-mode} {config-file}"',
            f"# config: {config_path}",
            "",
        ]
    )


def heap_megabytes(heap: str) -> int:
    """``512m`` -> 512, ``1g`` -> 1024 (the ``kafka_heap`` setting's format)."""
    unit = heap[-1:].lower()
    if unit not in ("m", "g") or not heap[:-1].isdigit():
        raise ValueError(f"heap size must look like 512m or 1g, got {heap!r}")
    return int(heap[:-1]) * (1024 if unit == "g" else 1)


def jvm_args(heap: str, log4j_config: Path, log_dir: Path) -> list[str]:
    """JVM options of one broker: a small heap that grows on demand, crash-early on OOM."""
    initial = min(64, heap_megabytes(heap))
    return [
        f"-Xmx{heap}",
        f"-Xms{initial}m",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{log4j_config}",
        f"-Dkafka.logs.dir={log_dir}",
    ]
