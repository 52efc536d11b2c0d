"""Process identity and stopping, with a harmless `sleep` standing in for a server."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.stack import procs
from services.stack.procs import ProcessRef


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[ProcessRef]:
    sleep = shutil.which("sleep")
    assert sleep is not None
    ref = procs.spawn([sleep, "300"], tmp_path / "sleep.log", os.environ, marker="300")
    yield ref
    procs.kill(ref)


def test_spawned_process_runs_in_its_own_session(sleeper: ProcessRef) -> None:
    assert procs.is_running(sleeper)
    assert os.getsid(sleeper.pid) == sleeper.pid


def test_a_recycled_pid_is_not_ours(sleeper: ProcessRef) -> None:
    other_start = ProcessRef(sleeper.pid, sleeper.starttime + 1, sleeper.marker)
    other_cmd = ProcessRef(sleeper.pid, sleeper.starttime, "/somebody/else.conf")
    assert not procs.is_running(other_start)
    assert not procs.is_running(other_cmd)
    # ...and stop() leaves such a process alone.
    assert procs.stop([other_start, other_cmd], timeout_s=1.0) == []
    assert procs.is_running(sleeper)


def test_stop_terminates_and_reaps(sleeper: ProcessRef) -> None:
    assert procs.stop([sleeper], timeout_s=10.0) == [sleeper.pid]
    assert procs.exited(sleeper)
    assert procs.read_stat(sleeper.pid) is None  # reaped, not a zombie


def test_kill_is_immediate(sleeper: ProcessRef) -> None:
    procs.kill(sleeper)
    assert procs.exited(sleeper)


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = procs.free_ports(5)
    assert len(set(ports)) == 5
    assert all(procs.port_is_free(p) for p in ports)


def test_port_in_use_is_detected() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not procs.port_is_free(port)
        assert procs.port_is_listening(port)


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert procs.log_tail(log, lines=3).splitlines() == ["line 97", "line 98", "line 99"]
    assert procs.log_tail(tmp_path / "missing.log") == "(no log)"


def test_log_errors_finds_the_reason_before_a_long_shutdown(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    lines = ["[t] INFO starting (x)", "[t] ERROR Exiting Kafka due to fatal exception (y)"]
    lines += [f"[t] INFO shutting down part {i} (z)" for i in range(50)]
    log.write_text("\n".join(lines) + "\n")
    assert procs.log_errors(log) == ["[t] ERROR Exiting Kafka due to fatal exception (y)"]
    assert "ERROR" not in procs.log_tail(log, lines=10)
