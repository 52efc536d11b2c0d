"""Background processes of the local stack: spawn, recognise, stop; plus port helpers.

A process is recorded as (pid, start time since boot, a marker string from its command
line). Before any signal is sent, all three must still match, so a recycled pid that now
belongs to somebody else's process is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

POLL_S = 0.1


@dataclass(frozen=True)
class ProcessRef:
    """Enough to find a process again from another CLI invocation."""

    pid: int
    starttime: int  # field 22 of /proc/<pid>/stat: clock ticks since boot
    marker: str  # a string its command line contains (our config file's path)


def spawn(argv: Sequence[str], log_path: Path, env: Mapping[str, str], marker: str) -> ProcessRef:
    """Start ``argv`` in its own session with stdout+stderr appended to ``log_path``.

    Its own session means it outlives the CLI and ignores the terminal's Ctrl-C.
    ``posix_spawn`` (not Popen) leaves no Popen object whose finaliser would warn that
    the child is still running: the stack's processes are meant to outlive us.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
    _await_exec(pid)
    stat = read_stat(pid)  # a child can't vanish before we reap it: stat exists
    starttime = stat[1] if stat is not None else -1
    log.debug("spawned pid %d: %s", pid, " ".join(argv))
    return ProcessRef(pid=pid, starttime=starttime, marker=marker)


def _await_exec(pid: int, timeout_s: float = 5.0) -> None:
    """Wait until the child's new command line is readable.

    posix_spawn returns as soon as the child has left our memory, while the kernel may
    still be setting up the new program: /proc/<pid>/cmdline reads empty for a moment,
    and a marker check in that moment would disown the process.
    """
    deadline = time.monotonic() + timeout_s
    while not read_cmdline(pid) and read_starttime(pid) is not None:
        if time.monotonic() >= deadline:
            break
        time.sleep(0.001)


def read_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in ticks since boot) of ``pid``, or None if none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def read_starttime(pid: int) -> int | None:
    """The start time of a live (not zombie) process ``pid``, else None."""
    stat = read_stat(pid)
    if stat is None or stat[0] == "Z":  # a zombie has exited; it only awaits its parent
        return None
    return stat[1]


def read_cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


def reap(pid: int) -> int | None:
    """Collect ``pid`` if it is our exited child; returns its wait status, else None.

    Only matters when the process that spawned the stack also stops it (the pytest
    fixture): an un-reaped child would linger as a zombie that looks alive.
    """
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return status if done == pid else None


def is_running(ref: ProcessRef) -> bool:
    """True if ``ref`` still names the very process we started (same pid, start, marker)."""
    reap(ref.pid)
    starttime = read_starttime(ref.pid)
    if starttime is None or starttime != ref.starttime:
        return False
    return ref.marker in read_cmdline(ref.pid)


def exited(ref: ProcessRef) -> bool:
    """True once the process is gone; unlike ``not is_running`` it is safe right after
    spawn, while the child's command line may still be ours (before its exec)."""
    reap(ref.pid)
    starttime = read_starttime(ref.pid)
    return starttime is None or starttime != ref.starttime


def _signal(ref: ProcessRef, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(ref.pid, sig)


def stop(refs: Iterable[ProcessRef], timeout_s: float, kill_timeout_s: float = 10.0) -> list[int]:
    """SIGTERM every process of ``refs`` that is still ours, SIGKILL those left after
    ``timeout_s``; returns the pids that were signalled. Raises if any survives."""
    ours = [ref for ref in refs if is_running(ref)]
    for ref in ours:
        _signal(ref, signal.SIGTERM)
    left = _wait_gone(ours, timeout_s)
    if left:
        log.warning("pids %s ignored SIGTERM for %.0f s; sending SIGKILL", _pids(left), timeout_s)
        for ref in left:
            _signal(ref, signal.SIGKILL)
        left = _wait_gone(left, kill_timeout_s)
    if left:
        raise OSError(errno.EBUSY, f"pids {_pids(left)} survived SIGKILL")
    return [ref.pid for ref in ours]


def kill(ref: ProcessRef, timeout_s: float = 10.0) -> None:
    """SIGKILL the process if it is still ours and wait until it is gone (a crash)."""
    if is_running(ref):
        _signal(ref, signal.SIGKILL)
    if _wait_gone([ref], timeout_s):
        raise OSError(errno.EBUSY, f"pid {ref.pid} survived SIGKILL")


def _wait_gone(refs: Sequence[ProcessRef], timeout_s: float) -> list[ProcessRef]:
    deadline = time.monotonic() + timeout_s
    left = list(refs)
    while left:
        left = [ref for ref in left if not exited(ref)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    return left


def _pids(refs: Iterable[ProcessRef]) -> str:
    return ", ".join(str(ref.pid) for ref in refs)


# --------------------------------------------------------------------------- ports


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that are free right now (all bound at once, then released)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can a server listen on ``port``? SO_REUSEADDR, as the servers use, so that
    sockets in TIME_WAIT from a previous run don't count as "in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_is_listening(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _read_end(path: Path, max_bytes: int = 256 * 1024) -> str | None:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    text = _read_end(path, 64 * 1024)
    return "(no log)" if text is None else "\n".join(text.splitlines()[-lines:])


def log_errors(path: Path, limit: int = 5) -> list[str]:
    """The first ``limit`` error lines near the end of a log: a dying broker logs its
    reason, then a long shutdown sequence that pushes the reason out of the tail."""
    text = _read_end(path) or ""
    markers = (" ERROR ", " FATAL ", "# WARNING", "Error:", "Exception:")
    return [line for line in text.splitlines() if any(m in line for m in markers)][:limit]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing); others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
