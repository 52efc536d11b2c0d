"""The Kafka side of the stack: plan nodes, write configs, format storage, probe readiness."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from services.stack import config
from services.stack.config import KafkaNode
from services.stack.procs import free_ports, log_tail, port_is_listening
from services.stack.state import Layout, read_json, write_json

log = logging.getLogger(__name__)

FORMAT_TIMEOUT_S = 120.0


class KafkaSetupError(Exception):
    """Formatting storage failed or the on-disk cluster doesn't fit the request."""


def plan_nodes(brokers: int, first_port: int) -> list[KafkaNode]:
    """Node ids 1..n; broker ports first_port.. (or free ones for 0); free controller ports."""
    if first_port == 0:
        ports = free_ports(2 * brokers)
        broker_ports, controller_ports = ports[:brokers], ports[brokers:]
    else:
        broker_ports = [first_port + i for i in range(brokers)]
        controller_ports = free_ports(brokers)
    return [
        KafkaNode(node_id=i + 1, port=broker_ports[i], controller_port=controller_ports[i])
        for i in range(brokers)
    ]


def cluster_id_for(layout: Layout, brokers: int) -> str:
    """The cluster id of the data in ``layout`` (made up the first time).

    Data formatted for another cluster size can't be reused: its quorum has other voters.
    """
    existing = read_json(layout.cluster_file)
    if existing is None:
        cluster_id = config.new_cluster_id()
        write_json(layout.cluster_file, {"cluster_id": cluster_id, "brokers": brokers})
        return cluster_id
    if existing.get("brokers") != brokers:
        raise KafkaSetupError(
            f"{layout.root} holds data of a {existing.get('brokers')}-broker cluster, not "
            f"{brokers}; run `fraudstream stack down --wipe --stack-dir {layout.root}` "
            "or use another --stack-dir"
        )
    return str(existing["cluster_id"])


def write_configs(layout: Layout, nodes: Sequence[KafkaNode], log_level: str) -> None:
    layout.log4j_file.parent.mkdir(parents=True, exist_ok=True)
    layout.log4j_file.write_text(config.render_log4j_properties(log_level))
    for node in nodes:
        layout.node_data(node.node_id).mkdir(parents=True, exist_ok=True)
        text = config.render_server_properties(node, nodes, layout.node_data(node.node_id))
        layout.server_properties(node.node_id).write_text(text)


def classpath(libs: Path) -> str:
    # java expands a trailing '*' itself; no shell is involved.
    return f"{libs}/*"


def format_storage(
    java: str, libs: Path, layout: Layout, nodes: Sequence[KafkaNode], cluster_id: str
) -> None:
    """Format the KRaft storage of every node that has none yet (in parallel: each
    StorageTool run is mostly JVM start-up)."""
    todo = [n for n in nodes if not (layout.node_data(n.node_id) / "meta.properties").exists()]
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        results = list(pool.map(lambda n: _format_one(java, libs, layout, n, cluster_id), todo))
    failed = [msg for msg in results if msg]
    if failed:
        raise KafkaSetupError(failed[0])


def _format_one(java: str, libs: Path, layout: Layout, node: KafkaNode, cluster_id: str) -> str:
    argv = [
        java, "-Xmx256m", "-cp", classpath(libs),
        f"-Dlog4j.configuration=file:{layout.log4j_file}",
        "kafka.tools.StorageTool", "format", "--ignore-formatted",
        "-t", cluster_id, "-c", str(layout.server_properties(node.node_id)),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, check=False)
    if done.returncode == 0:
        return ""
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
    return f"formatting the storage of {node.name} failed (exit {done.returncode}):\n{tail}"


def broker_argv(java: str, libs: Path, heap: str, layout: Layout, node: KafkaNode) -> list[str]:
    return [
        java,
        *config.jvm_args(heap, layout.log4j_file, layout.node_dir(node.node_id)),
        "-cp",
        classpath(libs),
        "kafka.Kafka",
        str(layout.server_properties(node.node_id)),
    ]


class MetadataProbe:
    """Answers "has every broker answered a metadata request that lists all brokers?".

    Each broker's metadata cache follows the controller's log on its own, so one broker
    seeing the whole cluster doesn't mean the next client's first broker does. A fresh
    client bootstrapped on one node sends its first request to that node, and
    ``orig_broker_name`` tells who answered. Clients are made only once the broker ports
    accept connections, so that librdkafka doesn't log "connection refused" meanwhile.
    """

    def __init__(self, nodes: Sequence[KafkaNode]) -> None:
        self._nodes = list(nodes)
        self._pending = list(nodes)
        self.last_error = ""

    def __call__(self) -> bool:
        if not all(port_is_listening(n.port) for n in self._pending):
            self.last_error = "broker ports not listening yet"
            return False
        self._pending = [n for n in self._pending if not self._knows_everyone(n)]
        return not self._pending

    def _knows_everyone(self, node: KafkaNode) -> bool:
        # log_level 2: the probe expects failures while the brokers start.
        admin = AdminClient({"bootstrap.servers": node.bootstrap, "log_level": 2})
        try:
            metadata = admin.list_topics(timeout=2.0)
        except KafkaException as exc:
            self.last_error = f"{node.name}: {exc}"
            return False
        if not str(metadata.orig_broker_name).startswith(f"{node.bootstrap}/"):
            return False  # another broker answered; ask again
        seen = set(metadata.brokers)
        self.last_error = f"{node.name} sees brokers {sorted(seen)}"
        return {n.node_id for n in self._nodes} <= seen


def describe_failure(node_log: Path) -> str:
    return f"last lines of {node_log}:\n{log_tail(node_log)}"
