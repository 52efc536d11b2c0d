"""The offline feature build in blocks, the merchant half on a second process.

:func:`build_features` gives exactly (bit for bit) what the reference driver
:func:`services.core.offline.build_features` gives for the same stream, through the same
feature code: ``compute`` is ``card_features`` followed by ``merchant_features``, and the
two halves only meet through the :class:`~services.core.features.MerchantDelta`.

The card half (and the dedupe) runs here, one block of rows at a time; the merchant half
then runs over the whole block, in :mod:`services.featurebuild.stage`. With two processes
the stage is a child process that works on block k while this one builds block k + 1,
the way a stream processor repartitions by merchant: on 2 cores that is ~1.5x the rows
per second of wall time. With one, the stage runs here after each block, which is still
faster than the row-at-a-time reference (each half's state stays in cache over a block).

The child only starts once a first full block is built: small streams never pay the
~0.2 s a process start costs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from struct import Struct
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

import services
from services.core.features import N_CARD_FEATURES, N_FEATURES, CardState, card_features
from services.core.offline import DEDUPE_HORIZON_MS, FeatureFrame, SeenIds, gc_paused
from services.featurebuild.stage import HEADER, REPLY, ROW, MerchantStage, read_exactly

CARD_PART = Struct(f"<{N_CARD_FEATURES}d")
OnChunk = Callable[[npt.NDArray[np.float64]], None]


class StageError(RuntimeError):
    """The merchant stage process died or broke the protocol."""


def default_processes() -> int:
    """2 where this process may use two CPUs or more, else 1."""
    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def build_features(
    txns: Iterable[Mapping[str, Any]],
    *,
    processes: int | None = None,
    dedupe_horizon_ms: int | None = DEDUPE_HORIZON_MS,
    on_chunk: OnChunk | None = None,
    chunk_rows: int = 10_000,
) -> FeatureFrame:
    """:func:`services.core.offline.build_features` over a fresh store, on ``processes``
    processes (1 or 2; None: :func:`default_processes`). ``on_chunk`` gets each block of
    ``chunk_rows`` rows, in order, as the build goes on."""
    if processes is None:
        processes = default_processes()
    if processes not in (1, 2):
        raise ValueError(f"processes must be 1 or 2, got {processes}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    return FeatureBuild(dedupe_horizon_ms, on_chunk, chunk_rows, processes == 2).run(iter(txns))


class Stage(Protocol):
    def send(self, new_merchants: int, rows: int, wire: bytes) -> None: ...
    def receive(self, rows: int) -> bytes: ...
    def peak_rss_mib(self) -> float | None: ...
    def close(self) -> None: ...


class LocalStage:
    """The merchant half in this process (streams of one block or less)."""

    def __init__(self) -> None:
        self._stage = MerchantStage()
        self._reply = b""

    def send(self, new_merchants: int, rows: int, wire: bytes) -> None:
        self._reply = self._stage.process(new_merchants, wire)

    def receive(self, rows: int) -> bytes:
        return self._reply

    def peak_rss_mib(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class ProcessStage:
    """The merchant half in a child process, over its stdin and stdout."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # The child must import this very ``services`` package, however it was found.
        root = str(Path(services.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "services.featurebuild.stage"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._requests: IO[bytes] = self._proc.stdin
        self._replies: IO[bytes] = self._proc.stdout

    def send(self, new_merchants: int, rows: int, wire: bytes) -> None:
        try:
            self._requests.write(HEADER.pack(rows, new_merchants))
            self._requests.write(wire)
            self._requests.flush()
        except BrokenPipeError:
            raise self._died() from None

    def receive(self, rows: int) -> bytes:
        try:
            reply = read_exactly(self._replies, rows * REPLY.size)
        except EOFError:
            reply = None
        if reply is None:
            raise self._died()
        return reply

    def _died(self) -> StageError:
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return StageError(f"the merchant stage process stopped (exit code {code}); see its stderr above")

    def peak_rss_mib(self) -> float | None:
        """The child's peak resident set so far (Linux; None elsewhere or once it is gone)."""
        try:
            status = Path(f"/proc/{self._proc.pid}/status").read_text(encoding="ascii")
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def close(self) -> None:
        proc = self._proc
        try:
            self._requests.close()  # EOF: the stage returns
        except BrokenPipeError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._replies.close()


@dataclass
class _Block:
    """One block's card half, waiting for its merchant half."""

    first_row: int
    rows: int
    card_part: bytearray  # CARD_PART records of the rows that are not duplicates
    wire: bytearray  # ROW records of the same rows
    new_merchants: int
    duplicates: list[tuple[int, int]]  # (row, the row of its first copy)


class FeatureBuild:
    """One build (see :func:`build_features`); after :meth:`run`, ``stage_peak_rss_mib``
    is the merchant stage process' peak resident set (None: no process, or not Linux)."""

    def __init__(
        self, dedupe_horizon_ms: int | None, on_chunk: OnChunk | None, chunk_rows: int, spawn: bool
    ) -> None:
        self._spawn = spawn
        self._on_chunk = on_chunk
        self._chunk_rows = chunk_rows
        self._cards: dict[str, CardState] = {}
        self._merchant_numbers: dict[str, int] = {}
        self._seen: SeenIds[int] = SeenIds(dedupe_horizon_ms)  # txn_id -> row of its first copy
        self._blocks: list[npt.NDArray[np.float64]] = []
        self._times = array("q")
        self._txn_ids: list[str] = []
        self._card_ids: list[str] = []
        self._rows = 0
        self.stage_peak_rss_mib: float | None = None

    def run(self, txns: Iterator[Mapping[str, Any]]) -> FeatureFrame:
        stage: Stage | None = None
        pending: _Block | None = None
        with gc_paused(), contextlib.ExitStack() as cleanup:
            while True:
                block = self._card_half(islice(txns, self._chunk_rows))
                if stage is None:
                    # A full first block: more is likely to come, so start the process.
                    spawn = self._spawn and block.rows == self._chunk_rows
                    stage = ProcessStage() if spawn else LocalStage()
                    cleanup.callback(self._close, stage)
                if pending is not None:  # block k's merchant half ran while block k + 1 was built
                    self._assemble(pending, stage.receive(len(pending.wire) // ROW.size))
                if not block.rows:
                    break
                stage.send(block.new_merchants, len(block.wire) // ROW.size, bytes(block.wire))
                pending = block
        X = np.concatenate(self._blocks) if self._blocks else np.empty((0, N_FEATURES))
        return FeatureFrame(
            txn_ids=self._txn_ids,
            event_time=np.frombuffer(self._times, dtype=np.int64),
            card_ids=self._card_ids,
            X=X,
        )

    def _close(self, stage: Stage) -> None:
        self.stage_peak_rss_mib = stage.peak_rss_mib()
        stage.close()

    def _card_half(self, txns: Iterable[Mapping[str, Any]]) -> _Block:
        first_row = row = self._rows
        card_part = bytearray()
        wire = bytearray()
        duplicates: list[tuple[int, int]] = []
        numbers = self._merchant_numbers
        known_merchants = len(numbers)
        cards = self._cards
        seen_first = self._seen.get
        remember = self._seen.remember
        pack_card, pack_row = CARD_PART.pack, ROW.pack
        add_time, add_txn_id, add_card_id = self._times.append, self._txn_ids.append, self._card_ids.append
        for txn in txns:
            txn_id: str = txn["txn_id"]
            t: int = txn["event_time"]
            card_id: str = txn["card_id"]
            add_time(t)
            add_txn_id(txn_id)
            add_card_id(card_id)
            first = seen_first(txn_id)
            if first is not None:
                duplicates.append((row, first))
            else:
                merchant_id: str = txn["merchant_id"]
                merchant = numbers.get(merchant_id)
                if merchant is None:
                    merchant = numbers[merchant_id] = len(numbers)
                head, cards[card_id], delta = card_features(cards.get(card_id), txn)
                card_part += pack_card(*head)
                wire += pack_row(merchant, *delta, head[0])
                remember(txn_id, t, row)
            row += 1
        self._rows = row
        return _Block(first_row, row - first_row, card_part, wire, len(numbers) - known_merchants, duplicates)

    def _assemble(self, block: _Block, reply: bytes) -> None:
        X = np.empty((block.rows, N_FEATURES))
        card = np.frombuffer(block.card_part, dtype="<f8").reshape(-1, N_CARD_FEATURES)
        merchant = np.frombuffer(reply, dtype="<f8").reshape(-1, N_FEATURES - N_CARD_FEATURES)
        if not block.duplicates:
            X[:, :N_CARD_FEATURES] = card
            X[:, N_CARD_FEATURES:] = merchant
        else:
            fresh = np.ones(block.rows, dtype=bool)
            fresh[[row - block.first_row for row, _ in block.duplicates]] = False
            X[fresh, :N_CARD_FEATURES] = card
            X[fresh, N_CARD_FEATURES:] = merchant
            for row, first in block.duplicates:  # in row order: a first copy is filled before
                X[row - block.first_row] = (
                    X[first - block.first_row] if first >= block.first_row else self._row(first)
                )
        self._blocks.append(X)
        if self._on_chunk is not None:
            self._on_chunk(X)

    def _row(self, row: int) -> npt.NDArray[np.float64]:
        # Every block before the last is full, so a row's block is a division away.
        block, offset = divmod(row, self._chunk_rows)
        return self._blocks[block][offset]
