"""Where the stack keeps its files, and the ``state.json`` that records what runs.

Everything lives under one ``stack_dir``::

    state.json                      what `up` started: pids, ports, config and log paths
    .lock                           serialises up/down on this folder
    kafka/cluster.json              cluster id and size; kept with the data
    kafka/log4j.properties
    kafka/node-<id>/server.properties, kafka.log, data/
    redis/redis.conf, redis.log, data/ (the append-only file)

``state.json`` exists while the stack is up (or crashed); ``down`` removes it and keeps
the data, ``down --wipe`` removes the data too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from services.stack.procs import ProcessRef

STATE_VERSION = 1
Kind = Literal["kafka", "redis"]


@dataclass(frozen=True)
class Layout:
    """Paths inside one stack folder (always absolute)."""

    root: Path

    @classmethod
    def at(cls, stack_dir: Path) -> Layout:
        return cls(stack_dir.expanduser().resolve())

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def cluster_file(self) -> Path:
        return self.kafka_dir / "cluster.json"

    @property
    def log4j_file(self) -> Path:
        return self.kafka_dir / "log4j.properties"

    def node_dir(self, node_id: int) -> Path:
        return self.kafka_dir / f"node-{node_id}"

    def server_properties(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "server.properties"

    def node_log(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "kafka.log"

    def node_data(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "data"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def redis_conf(self) -> Path:
        return self.redis_dir / "redis.conf"

    @property
    def redis_log(self) -> Path:
        return self.redis_dir / "redis.log"

    @property
    def redis_data(self) -> Path:
        return self.redis_dir / "data"


@dataclass(frozen=True)
class Component:
    """One process of the stack."""

    name: str  # kafka-1, kafka-2, ..., redis
    kind: Kind
    port: int
    process: ProcessRef
    argv: tuple[str, ...]  # to start it again (fault tests restart single brokers)
    config: Path
    log: Path
    controller_port: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "port": self.port,
            "controller_port": self.controller_port,
            "pid": self.process.pid,
            "starttime": self.process.starttime,
            "marker": self.process.marker,
            "argv": list(self.argv),
            "config": str(self.config),
            "log": str(self.log),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Component:
        return cls(
            name=str(raw["name"]),
            kind=raw["kind"],
            port=int(raw["port"]),
            controller_port=None if raw.get("controller_port") is None else int(raw["controller_port"]),
            process=ProcessRef(
                pid=int(raw["pid"]), starttime=int(raw["starttime"]), marker=str(raw["marker"])
            ),
            argv=tuple(str(a) for a in raw["argv"]),
            config=Path(raw["config"]),
            log=Path(raw["log"]),
        )


@dataclass(frozen=True)
class StackState:
    """What `up` started; written to ``state.json``."""

    cluster_id: str
    kafka_bootstrap: str
    redis_url: str
    started_at: str  # ISO-8601 UTC, for humans
    components: tuple[Component, ...]

    @property
    def kafka(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.kind == "kafka")

    def component(self, name: str) -> Component:
        for comp in self.components:
            if comp.name == name:
                return comp
        known = ", ".join(c.name for c in self.components)
        raise KeyError(f"no component {name!r} in the stack (have: {known})")

    def with_component(self, new: Component) -> StackState:
        comps = tuple(new if c.name == new.name else c for c in self.components)
        return StackState(self.cluster_id, self.kafka_bootstrap, self.redis_url, self.started_at, comps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "cluster_id": self.cluster_id,
            "kafka_bootstrap": self.kafka_bootstrap,
            "redis_url": self.redis_url,
            "started_at": self.started_at,
            "components": [c.to_dict() for c in self.components],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StackState:
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"state version {raw.get('version')!r}, expected {STATE_VERSION}")
        return cls(
            cluster_id=str(raw["cluster_id"]),
            kafka_bootstrap=str(raw["kafka_bootstrap"]),
            redis_url=str(raw["redis_url"]),
            started_at=str(raw["started_at"]),
            components=tuple(Component.from_dict(c) for c in raw["components"]),
        )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return raw


def load_state(layout: Layout) -> StackState | None:
    raw = read_json(layout.state_file)
    return None if raw is None else StackState.from_dict(raw)


def save_state(layout: Layout, state: StackState) -> None:
    write_json(layout.state_file, state.to_dict())


def clear_state(layout: Layout) -> None:
    layout.state_file.unlink(missing_ok=True)
