"""The local stack as an object: ``Stack(settings).up() / .down() / .status()``.

Used by the ``fraudstream stack`` CLI, the pytest session fixtures and the demo. Every
call works from the files in ``stack_dir`` alone, so `up` in one process and `down` in
another see the same stack.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from services.settings import StackSettings
from services.stack import fetch, kafka_cluster, procs, redis_server
from services.stack.config import HOST, KafkaNode, bootstrap_servers
from services.stack.state import Component, Layout, StackState, load_state, save_state

log = logging.getLogger(__name__)

KAFKA_STOP_TIMEOUT_S = 30.0
REDIS_STOP_TIMEOUT_S = 10.0
POLL_S = 0.2
# Free ports are picked a few seconds before the servers bind them (storage formatting runs
# in between); if another process grabs one meanwhile, start again on new ports.
FREE_PORT_ATTEMPTS = 3

State = Literal["running", "degraded", "stopped"]


class StackError(Exception):
    """The stack can't do what was asked; the message is for humans (may end in a log tail)."""


class PortClash(StackError):
    """A server could not bind its port: something took it between our check and its start."""


@dataclass(frozen=True)
class StackInfo:
    """A running stack, as `up` leaves it."""

    stack_dir: Path
    kafka_bootstrap: str
    redis_url: str
    brokers: int
    cluster_id: str
    already_running: bool
    startup_s: float  # wall time of this `up` call, 0 when it was already running


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    kind: str
    pid: int
    port: int
    running: bool  # the very process `up` started is alive
    listening: bool  # its port accepts TCP connections
    log: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "pid": self.pid, "port": self.port,
            "running": self.running, "listening": self.listening, "log": str(self.log),
        }  # fmt: skip


@dataclass(frozen=True)
class StackStatus:
    stack_dir: Path
    state: State
    kafka_bootstrap: str | None
    redis_url: str | None
    components: tuple[ComponentStatus, ...]

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack_dir": str(self.stack_dir),
            "state": self.state,
            "running": self.running,
            "kafka_bootstrap": self.kafka_bootstrap,
            "redis_url": self.redis_url,
            "components": [c.to_dict() for c in self.components],
        }


class Stack:
    def __init__(self, settings: StackSettings, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.layout = Layout.at(settings.stack_dir)
        self._environ = dict(os.environ if environ is None else environ)

    # ------------------------------------------------------------------ public API

    def fetch(self) -> Path:
        """Make sure the Kafka jars are cached; returns their folder."""
        try:
            return fetch.ensure_kafka_libs(self.settings.kafka_cache)
        except (fetch.ToolMissing, fetch.FetchError) as exc:
            raise StackError(str(exc)) from None

    def up(self) -> StackInfo:
        """Start Kafka and Redis and wait until both answer; a running stack is left as is."""
        started = time.monotonic()
        with self._locked():
            state = self._load()
            if state is not None:
                alive = [c.name for c in state.components if procs.is_running(c.process)]
                if len(alive) == len(state.components):
                    self._warn_if_different(state)
                    return self._info(state, already_running=True, startup_s=0.0)
                if alive:
                    log.warning("stack in %s is partly down; restarting it", self.layout.root)
                self._stop(state.components)
            state = self._start_with_retries()
            return self._info(state, already_running=False, startup_s=time.monotonic() - started)

    def down(self, wipe: bool = False) -> list[str]:
        """Stop what `up` started (only those exact processes); returns their names.
        ``wipe`` also deletes the stack's data and config files."""
        with self._locked():
            state = self._load()
            stopped = [] if state is None else self._stop(state.components)
            if wipe:
                self._wipe()
        return stopped

    def status(self) -> StackStatus:
        state = self._load()
        if state is None:
            return StackStatus(self.layout.root, "stopped", None, None, ())
        comps = tuple(
            ComponentStatus(
                name=c.name,
                kind=c.kind,
                pid=c.process.pid,
                port=c.port,
                running=procs.is_running(c.process),
                listening=procs.port_is_listening(c.port),
                log=c.log,
            )
            for c in state.components
        )
        alive = sum(c.running for c in comps)
        overall: State = "running" if alive == len(comps) else "stopped" if alive == 0 else "degraded"
        return StackStatus(self.layout.root, overall, state.kafka_bootstrap, state.redis_url, comps)

    def stop_component(self, name: str, *, kill: bool = False) -> None:
        """Stop one process (``kafka-2``, ``redis``), e.g. to test a broker failure.
        ``kill`` sends SIGKILL at once: a crash rather than a clean shutdown."""
        with self._locked():
            comp = self._component(self._require_state(), name)
            try:
                if kill:
                    procs.kill(comp.process)
                else:
                    procs.stop([comp.process], timeout_s=KAFKA_STOP_TIMEOUT_S)
            except OSError as exc:
                raise StackError(f"could not stop {name}: {exc}") from None

    def start_component(self, name: str) -> None:
        """Start one stopped process again with its recorded command line and wait until
        its port listens (for a broker, rejoining the cluster takes a few seconds more)."""
        with self._locked():
            state = self._require_state()
            comp = self._component(state, name)
            if procs.is_running(comp.process):
                return
            ref = procs.spawn(comp.argv, comp.log, self._environ, comp.process.marker)
            comp = Component(
                comp.name, comp.kind, comp.port, ref, comp.argv, comp.config, comp.log,
                comp.controller_port,
            )  # fmt: skip
            save_state(self.layout, state.with_component(comp))
            self._wait_ready([comp], [(comp.name, lambda: procs.port_is_listening(comp.port))])

    # ------------------------------------------------------------------ start

    def _start_with_retries(self) -> StackState:
        auto_ports = self.settings.kafka_port == 0 or self.settings.redis_port == 0
        for attempt in range(1, FREE_PORT_ATTEMPTS + 1):
            try:
                return self._start()
            except PortClash as exc:
                if not auto_ports or attempt == FREE_PORT_ATTEMPTS:
                    raise
                lines = str(exc).splitlines()
                detail = next((line for line in lines if "in use" in line), lines[0])
                log.warning("a port was taken meanwhile (%s); retrying on others", detail.strip())
        raise AssertionError("unreachable")

    def _start(self) -> StackState:
        s = self.settings
        java = self._tool(lambda: fetch.find_java(self._environ))
        redis_bin = self._tool(fetch.find_redis_server)
        libs = self.fetch()
        nodes = kafka_cluster.plan_nodes(s.brokers, s.kafka_port)
        redis_port = s.redis_port or procs.free_ports(1)[0]
        self._check_ports_free([n.port for n in nodes] + [redis_port])
        try:
            cluster_id = kafka_cluster.cluster_id_for(self.layout, s.brokers)
            kafka_cluster.write_configs(self.layout, nodes, s.log_level)
            redis_server.write_config(self.layout, redis_port)
            kafka_cluster.format_storage(java, libs, self.layout, nodes, cluster_id)
        except kafka_cluster.KafkaSetupError as exc:
            raise StackError(str(exc)) from None
        comps: list[Component] = []
        try:
            comps.append(self._spawn_redis(redis_bin, redis_port))
            comps += [self._spawn_broker(java, libs, node) for node in nodes]
            state = StackState(
                cluster_id=cluster_id,
                kafka_bootstrap=bootstrap_servers(nodes),
                redis_url=redis_server.url(redis_port),
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                components=tuple(comps),
            )
            # Recorded before waiting, so that `down` can clean up even if we die meanwhile.
            save_state(self.layout, state)
            self._wait_ready(comps, self._probes(nodes, redis_port))
        except BaseException:
            self._stop(comps)  # whatever failed, leave no process behind
            raise
        return state

    def _spawn_redis(self, redis_bin: str, port: int) -> Component:
        conf = self.layout.redis_conf
        argv = redis_server.server_argv(redis_bin, self.layout)
        ref = procs.spawn(argv, self.layout.redis_log, self._environ, marker=str(conf))
        return Component("redis", "redis", port, ref, tuple(argv), conf, self.layout.redis_log)

    def _spawn_broker(self, java: str, libs: Path, node: KafkaNode) -> Component:
        conf = self.layout.server_properties(node.node_id)
        argv = kafka_cluster.broker_argv(java, libs, self.settings.kafka_heap, self.layout, node)
        node_log = self.layout.node_log(node.node_id)
        ref = procs.spawn(argv, node_log, self._environ, marker=str(conf))
        return Component(
            node.name, "kafka", node.port, ref, tuple(argv), conf, node_log, node.controller_port
        )

    def _probes(self, nodes: Sequence[KafkaNode], redis_port: int) -> list[tuple[str, Callable[[], bool]]]:
        return [
            ("redis", redis_server.PingProbe(redis_port)),
            ("kafka", kafka_cluster.MetadataProbe(nodes)),
        ]

    def _wait_ready(
        self, comps: Sequence[Component], probes: Sequence[tuple[str, Callable[[], bool]]]
    ) -> None:
        """Poll every probe until it passes; fail at once if a process dies."""
        deadline = time.monotonic() + self.settings.ready_timeout_s
        pending = list(probes)
        while True:
            for comp in comps:
                if procs.exited(comp.process):
                    raise self._died(comp)
            pending = [(name, probe) for name, probe in pending if not probe()]
            if not pending:
                return
            if time.monotonic() >= deadline:
                name, probe = pending[0]
                detail = getattr(probe, "last_error", "")
                logs = "\n".join(f"  {c.name}: {c.log}" for c in comps)
                raise StackError(
                    f"{name} not ready after {self.settings.ready_timeout_s:.0f} s ({detail}); logs:\n{logs}"
                )
            time.sleep(POLL_S)

    @staticmethod
    def _died(comp: Component) -> StackError:
        errors = procs.log_errors(comp.log)
        tail = procs.log_tail(comp.log, lines=10)
        error = PortClash if any("Address already in use" in e for e in errors + [tail]) else StackError
        shown = "\n".join([*errors, "...", tail] if errors else [tail])
        return error(f"{comp.name} exited during start-up; from {comp.log}:\n{shown}")

    def _check_ports_free(self, ports: Sequence[int]) -> None:
        if len(set(ports)) != len(ports):
            raise StackError(f"ports overlap: {sorted(ports)}; choose other --kafka-port/--redis-port")
        for port in ports:
            if not procs.port_is_free(port):
                raise PortClash(
                    f"port {port} on {HOST} is in use (another Kafka or Redis?); stop it, "
                    "or pass --kafka-port 0 --redis-port 0 for free ports"
                )

    def _warn_if_different(self, state: StackState) -> None:
        if len(state.kafka) != self.settings.brokers:
            log.warning(
                "the running stack has %d broker(s), not %d; `stack down` first to change it",
                len(state.kafka), self.settings.brokers,
            )  # fmt: skip

    @staticmethod
    def _tool(find: Callable[[], str]) -> str:
        try:
            return find()
        except fetch.ToolMissing as exc:
            raise StackError(str(exc)) from None

    # ------------------------------------------------------------------ stop

    def _stop(self, components: Sequence[Component]) -> list[str]:
        """Stop those of ``components`` that are still ours; forget the state."""
        kafka = [c for c in components if c.kind == "kafka"]
        others = [c for c in components if c.kind != "kafka"]
        stopped: list[str] = []
        # All brokers at once: one by one, the last ones wait for a quorum that is gone.
        for group, timeout in ((kafka, KAFKA_STOP_TIMEOUT_S), (others, REDIS_STOP_TIMEOUT_S)):
            running = [c for c in group if procs.is_running(c.process)]
            try:
                procs.stop([c.process for c in running], timeout_s=timeout)
            except OSError as exc:
                raise StackError(f"could not stop the stack: {exc}") from None
            stopped += [c.name for c in running]
        self.layout.state_file.unlink(missing_ok=True)
        return stopped

    def _wipe(self) -> None:
        # Only what `up` creates: --stack-dir may point at a folder holding other things.
        for path in (self.layout.kafka_dir, self.layout.redis_dir):
            shutil.rmtree(path, ignore_errors=True)
        self.layout.state_file.unlink(missing_ok=True)

    # ------------------------------------------------------------------ helpers

    def _load(self) -> StackState | None:
        try:
            return load_state(self.layout)
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(
                f"{self.layout.state_file} is unreadable ({exc}); stop the processes it names and delete it"
            ) from None

    def _require_state(self) -> StackState:
        state = self._load()
        if state is None:
            raise StackError(f"no stack is up in {self.layout.root}; run `fraudstream stack up`")
        return state

    @staticmethod
    def _component(state: StackState, name: str) -> Component:
        try:
            return state.component(name)
        except KeyError as exc:
            raise StackError(str(exc.args[0])) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with procs.file_lock(self.layout.lock_file):
            yield

    def _info(self, state: StackState, *, already_running: bool, startup_s: float) -> StackInfo:
        return StackInfo(
            stack_dir=self.layout.root,
            kafka_bootstrap=state.kafka_bootstrap,
            redis_url=state.redis_url,
            brokers=len(state.kafka),
            cluster_id=state.cluster_id,
            already_running=already_running,
            startup_s=startup_s,
        )
