"""The stage of the split offline build, and its wire format.

The parent process reads the stream, drops duplicates and runs
:func:`~services.core.features.card_features` for most cards. The stage gets, per block
of rows, one record per row and computes:

* the card half for the share of cards the parent gave it (``card >= 0``: the record
  carries the transaction's fields), with those cards' state kept here;
* the merchant half of every row: it keeps every merchant's
  :class:`~services.core.features.MerchantState`, reads its window, computes
  :func:`~services.core.features.merchant_features`, then applies the row's
  :class:`~services.core.features.MerchantDelta` (the order ``compute`` uses).

Splitting the cards balances the two processes: the merchant half alone is about a
third of the work. Strings (merchant ids, countries, devices, channels) travel once, as
numbered symbols, in the frame where they first appear.

Frames are plain ``struct`` records on the stage's stdin and stdout, no pickle:

* request: :data:`HEADER` ``<IIII`` (rows, rows whose card half is the stage's, new
  symbols, bytes of their UTF-8 text), then the new symbols' lengths (``<I`` each), their
  text, then ``rows`` times :data:`ROW`;
* reply: ``rows`` times :data:`REPLY` (the merchant half, ``N_MERCHANT_FEATURES``
  doubles), then a :data:`CARD_PART` (``N_CARD_FEATURES`` doubles) for each row whose
  card half is the stage's, in row order.

EOF on stdin ends the stage. ``python -m services.featurebuild.stage`` runs it; it is
started by :mod:`services.featurebuild.build`, never by hand.
"""

from __future__ import annotations

import gc
import os
import signal
import struct
import sys
from array import array
from functools import partial
from typing import IO

from services.core.features import (
    N_CARD_FEATURES,
    N_MERCHANT_FEATURES,
    CardState,
    MerchantDelta,
    MerchantState,
    card_features,
    merchant_features,
)

HEADER = struct.Struct("<IIII")
# merchant, card (-1: the parent ran the card half), country, device (-1: none), channel
# (symbols, or 0 when card is -1), mcc, time (the hour when card is -1, else the event
# time), cents, new card (the delta's, when card is -1), amount.
ROW = struct.Struct("<iiiiiiqq?d")
REPLY = struct.Struct(f"<{N_MERCHANT_FEATURES}d")
CARD_PART = struct.Struct(f"<{N_CARD_FEATURES}d")
# Symbols are any str: surrogatepass makes even a lone surrogate travel exactly.
TEXT_ERRORS = "surrogatepass"
_new_delta = partial(tuple.__new__, MerchantDelta)  # skips NamedTuple.__new__: hot path


def encode_symbols(symbols: list[str]) -> tuple[bytes, bytes]:
    """(lengths, text) of new symbols, as a request carries them."""
    encoded = [s.encode("utf-8", TEXT_ERRORS) for s in symbols]
    return array("I", map(len, encoded)).tobytes(), b"".join(encoded)


def decode_symbols(lengths: bytes, text: bytes) -> list[str]:
    out, start = [], 0
    for size in array("I", lengths):
        out.append(text[start : start + size].decode("utf-8", TEXT_ERRORS))
        start += size
    return out


class BlockStage:
    """The stage's state: every merchant's buckets and its share of the cards."""

    def __init__(self) -> None:
        self._symbols: list[str] = []
        self._merchants: list[MerchantState | None] = []  # by symbol number
        self._cards: dict[int, CardState] = {}  # by the parent's stage-card number

    def process(self, new_symbols: list[str], rows: bytes | bytearray) -> bytes:
        """The reply to a block of :data:`ROW` records (see the module doc)."""
        symbols, merchants, cards = self._symbols, self._merchants, self._cards
        symbols.extend(new_symbols)
        merchants.extend([None] * len(new_symbols))
        out = bytearray()
        card_out = bytearray()
        pack, pack_card = REPLY.pack, CARD_PART.pack
        for record in ROW.iter_unpack(rows):
            merchant, card, country, device, channel, mcc, time, cents, new_card, amount = record
            if card >= 0:
                txn = {
                    "event_time": time,
                    "amount": amount,
                    "merchant_id": symbols[merchant],
                    "country": symbols[country],
                    "device_id": symbols[device] if device >= 0 else None,
                    "channel": symbols[channel],
                    "mcc": mcc,
                }
                head, cards[card], (time, cents, new_card) = card_features(cards.get(card), txn)
                card_out += pack_card(*head)
            state = merchants[merchant]
            if state is None:
                state = merchants[merchant] = MerchantState()
            out += pack(*merchant_features(state.window(time), amount))
            state.add(_new_delta((time, cents, new_card)))
        return bytes(out + card_out)


def read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    """``size`` bytes, or None at a clean EOF before the first; a partial frame is an error."""
    data = stream.read(size)
    if not data and size:
        return None
    if len(data) != size:
        raise EOFError(f"frame cut short: {len(data)} of {size} bytes")
    return data


def read_body(stream: IO[bytes], size: int) -> bytes:
    data = read_exactly(stream, size) if size else b""
    if data is None:
        raise EOFError("frame cut short after its header")
    return data


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer request frames until EOF."""
    stage = BlockStage()
    while True:
        header = read_exactly(requests, HEADER.size)
        if header is None:
            return
        rows, _, new_symbols, text_bytes = HEADER.unpack(header)
        lengths = read_body(requests, 4 * new_symbols)
        text = read_body(requests, text_bytes)
        body = read_body(requests, rows * ROW.size)
        replies.write(stage.process(decode_symbols(lengths, text), body))
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
    except EOFError as exc:
        print(f"fraudstream feature stage: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the parent stopped the build early: nothing to say
        # (and nothing left to flush at exit: the pipe is gone)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
