"""The demo's child processes (scorer, monitor) and reading their Prometheus endpoints.

Each service runs as ``python -m services.cli <name> --flags...`` with its output in a log
file, in its own session (the terminal's Ctrl-C reaches the demo, which stops the
children in order), and under ``setpriv --pdeathsig TERM`` where available, so even a
demo killed with SIGKILL takes its children down with it. Stopping is SIGTERM (the
services shut down cleanly), then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0
SCRAPE_TIMEOUT_S = 2.0
Labels = tuple[tuple[str, str], ...]


class ServiceFailed(Exception):
    """A child process exited while it should run; the message ends with its log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment without FRAUDSTREAM_* (children get every setting as a flag)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}


def flags(values: Mapping[str, object]) -> list[str]:
    """``{"topic_prefix": "x", "shadow": False}`` -> ``["--topic-prefix", "x", "--no-shadow"]``."""
    out: list[str] = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, str(value)]
    return out


@dataclass
class Metrics:
    """One scrape: ``(name, labels) -> value``."""

    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def total(self, name: str, **match: str) -> float:
        """Sum over every series of ``name`` whose labels include ``match``."""
        return sum(
            v
            for (n, labels), v in self.samples.items()
            if n == name and all((k, m) in labels for k, m in match.items())
        )

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(dict(labels), v) for (n, labels), v in self.samples.items() if n == name]


class Service:
    """One ``fraudstream <command>`` child process with a metrics port."""

    def __init__(
        self,
        name: str,
        command: str,
        settings: Mapping[str, object],
        log_dir: Path,
        *,
        essential: bool = True,
    ) -> None:
        self.name = name
        self.essential = essential  # the demo fails when an essential service dies
        self.metrics_port = free_port()
        self.log_path = log_dir / f"{name}.log"
        self.argv = [sys.executable, "-m", "services.cli", command,
                     *flags({**settings, "metrics_port": self.metrics_port})]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        wrapper = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
        out: IO[bytes]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [*wrapper, *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                start_new_session=True,
            )
        log.info("started %s (pid %d), log %s", self.name, self.proc.pid, self.log_path)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise :class:`ServiceFailed` if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceFailed(
                f"{self.name} exited with status {self.proc.returncode}; "
                f"last lines of {self.log_path}:\n{self.tail()}"
            )

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def scrape(self) -> Metrics:
        """The service's metrics now; empty while the endpoint does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
                text = response.read().decode("utf-8", errors="replace")
        except OSError:
            return Metrics()
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return Metrics(samples)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit status (None if never started)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, grace_s)
                proc.kill()
                proc.wait(10)
        return proc.returncode


def stop_all(services: Sequence[Service]) -> None:
    """Stop every service, the last started first; never raises."""
    for service in reversed(services):
        try:
            code = service.stop()
            if code not in (None, 0, -signal.SIGTERM):
                log.warning("%s exited with status %s (log %s)", service.name, code, service.log_path)
        except Exception:  # cleanup must go on with the others
            log.exception("could not stop %s", service.name)
