"""Helpers for tests: deadline-based waiting (never fixed sleeps), and failure injection."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises ``AssertionError`` (with ``message``) once ``timeout`` seconds have passed.
    ``interval`` only paces the polling: the wait ends as soon as the condition holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def stop_process(proc: subprocess.Popen[Any], tail: Callable[[], str], timeout: float = 60.0) -> int:
    """SIGTERM a service under test and wait; a process that ignores it fails the test."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"pid {proc.pid} ignored SIGTERM:\n{tail()}") from None
    return int(proc.returncode)


STAGE_DIED = "the feature stage process stopped (exit code -9); see its stderr above"


def break_feature_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every offline feature build from now on fails as if its stage process had died."""
    from services.featurebuild import build

    class DeadStage(build.LocalStage):
        def receive(self, block: build.Block) -> bytes:
            raise build.StageError(STAGE_DIED)

    monkeypatch.setattr(build, "LocalStage", DeadStage)
    monkeypatch.setattr(build, "ProcessStage", DeadStage)
