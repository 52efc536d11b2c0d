"""The offline feature build in blocks, on two processes.

:func:`build_features` gives exactly (bit for bit) what the reference driver
:func:`services.core.offline.build_features` gives for the same stream, through the same
feature code: ``compute`` is ``card_features`` followed by ``merchant_features``, and the
two halves only meet through the :class:`~services.core.features.MerchantDelta`.

This process reads the stream one block of rows at a time, drops duplicates and runs the
card half for most cards. The stage (:mod:`services.featurebuild.stage`) then runs the
card half of its share of the cards and the merchant half of every row, over the whole
block. Every card's and every merchant's transactions are still processed in stream
order, each by one owner, so the result cannot depend on the split. With two processes
the stage is a child process that works on block k while this one builds block k + 1,
the way a stream processor repartitions by key: on 2 cores ~1.5-1.8x the rows per
second of wall time. With one, the stage runs here after each block, which is still
faster than the row-at-a-time reference (each part's state stays in cache over a block).

The child only starts once a first full block is built: small streams never pay the
~0.1 s a process start costs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

import services
from services.core.features import N_CARD_FEATURES, N_FEATURES, N_MERCHANT_FEATURES, CardState, card_features
from services.core.offline import DEDUPE_HORIZON_MS, FeatureFrame, SeenIds, gc_paused
from services.featurebuild.stage import (
    CARD_PART,
    HEADER,
    REPLY,
    ROW,
    BlockStage,
    encode_symbols,
    read_exactly,
)

OnChunk = Callable[[npt.NDArray[np.float64]], None]
# The share of cards whose card half the child runs when there is one. Measured on 2
# cores (1M rows, 50k cards): the parent's per-row overhead (reading, dedupe, packing) and
# the merchant half (the child's) make 0.3 about even (0.25-0.35 measured alike).
STAGE_CARD_SHARE = 0.3


class StageError(RuntimeError):
    """The stage process died or broke the protocol."""


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
    build = FeatureBuild.on(
        processes, dedupe_horizon_ms=dedupe_horizon_ms, on_chunk=on_chunk, chunk_rows=chunk_rows
    )
    return build.run(iter(txns))


class Stage(Protocol):
    def send(self, block: Block) -> None: ...
    def receive(self, block: Block) -> bytes: ...
    def peak_rss_mib(self) -> float | None: ...
    def close(self) -> None: ...


class LocalStage:
    """The stage in this process (one process, or a stream of one block or less)."""

    def __init__(self) -> None:
        self._stage = BlockStage()
        self._reply = b""

    def send(self, block: Block) -> None:
        self._reply = self._stage.process(block.new_symbols, block.wire)

    def receive(self, block: Block) -> bytes:
        return self._reply

    def peak_rss_mib(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class ProcessStage:
    """The stage in a child process, over its stdin and stdout."""

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

    def send(self, block: Block) -> None:
        lengths, text = encode_symbols(block.new_symbols)
        header = HEADER.pack(block.fresh, len(block.stage_rows), len(block.new_symbols), len(text))
        try:
            self._requests.write(header + lengths + text)
            self._requests.write(block.wire)
            self._requests.flush()
        except BrokenPipeError:
            raise self._died() from None

    def receive(self, block: Block) -> bytes:
        try:
            reply = read_exactly(self._replies, block.reply_size())
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
        return StageError(f"the feature stage process stopped (exit code {code}); see its stderr above")

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
        # Replies first: a build that stops early (an error, Ctrl-C) may leave the stage
        # writing a reply nobody reads; it then fails at once instead of blocking on a
        # full pipe. After a whole build the stage is waiting for a frame: EOF ends it.
        self._replies.close()
        try:
            self._requests.close()
        except BrokenPipeError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@dataclass
class Block:
    """One block, its card half here done, waiting for the stage's reply."""

    first_row: int
    rows: int
    card_part: bytearray = field(default_factory=bytearray)  # CARD_PART of this process' rows
    wire: bytearray = field(default_factory=bytearray)  # ROW of every row that is not a duplicate
    stage_rows: list[int] = field(default_factory=list)  # the stage's card rows, among those
    new_symbols: list[str] = field(default_factory=list)
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (row, row of its first copy)

    @property
    def fresh(self) -> int:
        return len(self.wire) // ROW.size

    def reply_size(self) -> int:
        return self.fresh * REPLY.size + len(self.stage_rows) * CARD_PART.size


class FeatureBuild:
    """One build (see :func:`build_features`); after :meth:`run`, ``stage_peak_rss_mib``
    is the stage process' peak resident set (None: no process, or not Linux)."""

    def __init__(
        self,
        *,
        dedupe_horizon_ms: int | None = DEDUPE_HORIZON_MS,
        on_chunk: OnChunk | None = None,
        chunk_rows: int = 10_000,
        spawn: bool = True,
        stage_card_share: float = STAGE_CARD_SHARE,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        if not 0.0 <= stage_card_share <= 1.0:
            raise ValueError(f"stage_card_share must be in [0, 1], got {stage_card_share}")
        self._spawn = spawn
        self._share = stage_card_share
        self._on_chunk = on_chunk
        self._chunk_rows = chunk_rows
        self._cards: dict[str, CardState] = {}  # this process' cards
        self._stage_cards: dict[str, int] = {}  # the stage's cards, numbered
        self._new_cards = 0
        self._symbols: dict[str, int] = {}
        self._seen: SeenIds[int] = SeenIds(dedupe_horizon_ms)  # txn_id -> row of its first copy
        self._blocks: list[npt.NDArray[np.float64]] = []
        self._times = array("q")
        self._txn_ids: list[str] = []
        self._card_ids: list[str] = []
        self._rows = 0
        self.stage_peak_rss_mib: float | None = None

    @classmethod
    def on(cls, processes: int, **kwargs: Any) -> FeatureBuild:
        """A build on 1 or 2 processes (the stage's share of cards only with a child)."""
        if processes not in (1, 2):
            raise ValueError(f"processes must be 1 or 2, got {processes}")
        share = STAGE_CARD_SHARE if processes == 2 else 0.0
        return cls(spawn=processes == 2, stage_card_share=share, **kwargs)

    def run(self, txns: Iterator[Mapping[str, Any]]) -> FeatureFrame:
        stage: Stage | None = None
        pending: Block | None = None
        with gc_paused(), contextlib.ExitStack() as cleanup:
            while True:
                block = self._card_half(islice(txns, self._chunk_rows))
                if stage is None:
                    # A full first block: more is likely to come, so start the process.
                    spawn = self._spawn and block.rows == self._chunk_rows
                    stage = ProcessStage() if spawn else LocalStage()
                    cleanup.callback(self._close, stage)
                if pending is not None:  # the stage did block k while block k + 1 was built
                    self._assemble(pending, stage.receive(pending))
                if not block.rows:
                    break
                stage.send(block)
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

    def _card_half(self, txns: Iterable[Mapping[str, Any]]) -> Block:
        block = Block(self._rows, 0)
        row = self._rows
        fresh = 0  # rows of this block that are not duplicates
        card_part, wire = block.card_part, block.wire
        stage_rows, duplicates = block.stage_rows, block.duplicates
        symbols = self._symbols
        new_symbols = block.new_symbols
        cards, stage_cards = self._cards, self._stage_cards
        seen_first, remember = self._seen.get, self._seen.remember
        pack_card, pack_row = CARD_PART.pack, ROW.pack
        add_time, add_txn_id, add_card_id = self._times.append, self._txn_ids.append, self._card_ids.append

        def symbol(text: str) -> int:
            number = symbols.get(text)
            if number is None:
                number = symbols[text] = len(symbols)
                new_symbols.append(text)
            return number

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
                row += 1
                continue
            merchant = symbol(txn["merchant_id"])
            card = cards.get(card_id)
            staged = None if card is not None else stage_cards.get(card_id)
            if card is None and staged is None:  # a new card: whose is it?
                staged = self._place_new_card(card_id)
            if staged is None:
                head, cards[card_id], delta = card_features(card, txn)
                card_part += pack_card(*head)
                wire += pack_row(merchant, -1, 0, -1, 0, 0, *delta, head[0])
            else:  # the stage runs the card half: send the fields card_features reads
                device_id = txn.get("device_id")
                device = -1 if device_id is None else symbol(device_id)
                wire += pack_row(
                    merchant, staged, symbol(txn["country"]), device, symbol(txn["channel"]),
                    txn["mcc"], t, 0, False, txn["amount"],
                )  # fmt: skip
                stage_rows.append(fresh)
            fresh += 1
            remember(txn_id, t, row)
            row += 1
        block.rows = row - self._rows
        self._rows = row
        return block

    def _place_new_card(self, card_id: str) -> int | None:
        """The stage's number for a new card if it is the stage's (a steady share of new
        cards, in order of appearance), else None."""
        k = self._new_cards = self._new_cards + 1
        if int(k * self._share) > int((k - 1) * self._share):
            number = self._stage_cards[card_id] = len(self._stage_cards)
            return number
        return None

    def _assemble(self, block: Block, reply: bytes) -> None:
        fresh = block.fresh
        merchant_end = fresh * REPLY.size
        merchant = np.frombuffer(reply, dtype="<f8", count=merchant_end // 8)
        merchant = merchant.reshape(fresh, N_MERCHANT_FEATURES)
        card = np.frombuffer(block.card_part, dtype="<f8").reshape(-1, N_CARD_FEATURES)
        if block.stage_rows:
            staged = np.zeros(fresh, dtype=bool)
            staged[block.stage_rows] = True
            both = np.empty((fresh, N_CARD_FEATURES))
            both[~staged] = card
            both[staged] = np.frombuffer(reply, dtype="<f8", offset=merchant_end).reshape(-1, N_CARD_FEATURES)
            card = both
        X = np.empty((block.rows, N_FEATURES))
        if not block.duplicates:
            X[:, :N_CARD_FEATURES] = card
            X[:, N_CARD_FEATURES:] = merchant
        else:
            is_fresh = np.ones(block.rows, dtype=bool)
            is_fresh[[row - block.first_row for row, _ in block.duplicates]] = False
            X[is_fresh, :N_CARD_FEATURES] = card
            X[is_fresh, N_CARD_FEATURES:] = merchant
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
