"""The merchant stage of the split offline build, and its wire format.

The parent process runs :func:`~services.core.features.card_features` for each
transaction and sends the stage, per block of rows, what the merchant part needs: the
merchant (as a small int the parent assigns in order of first appearance), the
:class:`~services.core.features.MerchantDelta` and the amount. The stage keeps every
merchant's :class:`~services.core.features.MerchantState`, reads its window, computes
:func:`~services.core.features.merchant_features`, applies the delta (the order
``compute`` uses) and answers with the merchant part of each row.

Frames are plain ``struct`` records on the stage's stdin and stdout, no pickle:

* request: ``<II`` (rows, merchants first seen in this block), then ``rows`` times
  :data:`ROW` ``<iqq?d`` (merchant, hour, cents, new card, amount);
* reply: ``rows`` times :data:`REPLY` (``N_MERCHANT_FEATURES`` little-endian doubles).

EOF on stdin ends the stage. ``python -m services.featurebuild.stage`` runs it; it is
started by :mod:`services.featurebuild.build`, never by hand.
"""

from __future__ import annotations

import gc
import signal
import struct
import sys
from functools import partial
from typing import IO

from services.core.features import N_MERCHANT_FEATURES, MerchantDelta, MerchantState, merchant_features

HEADER = struct.Struct("<II")
ROW = struct.Struct("<iqq?d")
REPLY = struct.Struct(f"<{N_MERCHANT_FEATURES}d")
_new_delta = partial(tuple.__new__, MerchantDelta)  # skips NamedTuple.__new__: hot path


class MerchantStage:
    """Every merchant's state, indexed by the parent's merchant numbers."""

    def __init__(self) -> None:
        self._states: list[MerchantState] = []

    def process(self, new_merchants: int, rows: bytes) -> bytes:
        """The merchant part of a block of :data:`ROW` records, as :data:`REPLY` records."""
        states = self._states
        states.extend(MerchantState() for _ in range(new_merchants))
        out = bytearray()
        pack = REPLY.pack
        for merchant, hour, cents, new_card, amount in ROW.iter_unpack(rows):
            state = states[merchant]
            out += pack(*merchant_features(state.window(hour), amount))
            state.add(_new_delta((hour, cents, new_card)))
        return bytes(out)


def read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    """``size`` bytes, or None at a clean EOF before the first; a partial frame is an error."""
    data = stream.read(size)
    if not data and size:
        return None
    if len(data) != size:
        raise EOFError(f"frame cut short: {len(data)} of {size} bytes")
    return data


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer request frames until EOF."""
    stage = MerchantStage()
    while True:
        header = read_exactly(requests, HEADER.size)
        if header is None:
            return
        rows, new_merchants = HEADER.unpack(header)
        body = read_exactly(requests, rows * ROW.size) if rows else b""
        if body is None:
            raise EOFError("frame cut short after its header")
        replies.write(stage.process(new_merchants, body))
        replies.flush()


def main() -> int:
    # The parent owns the build and this process' life: it closes the pipe (EOF ends the
    # stage) or kills it, and its own death is an EOF too. Ctrl-C reaches the whole
    # process group and a service manager may SIGTERM the whole cgroup: dying of those
    # first would turn the parent's graceful stop into a failed build.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    gc.disable()  # only short-lived tuples and no cycles: see services.core.offline.gc_paused
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except (EOFError, BrokenPipeError) as exc:
        print(f"fraudstream merchant stage: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
