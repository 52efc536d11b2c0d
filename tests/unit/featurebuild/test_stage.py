"""The stage: its cards' card half and every row's merchant half, over frames."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import pytest

from services.core.features import N_CARD_FEATURES, CardState, MerchantState, compute
from services.featurebuild.stage import (
    CARD_PART,
    HEADER,
    REPLY,
    ROW,
    BlockStage,
    decode_symbols,
    encode_symbols,
    serve,
)
from tests.unit.core.test_features_golden import stream

STREAM = stream(seed=5, n=800)

Frame = tuple[list[str], bytes, int]  # new symbols, ROW records, rows whose card is the stage's


def frames_and_expected() -> tuple[list[Frame], bytes]:
    """Frames of 100 rows each in which every third card's half is the stage's, and the
    reply ``compute`` implies for each (duplicates are the parent's business: none here)."""
    symbols: dict[str, int] = {}
    merchants: dict[str, MerchantState] = {}
    cards: dict[str, CardState] = {}
    stage_cards: dict[str, int] = {}
    frames: list[Frame] = []
    expected = b""

    def symbol(text: str, new: list[str]) -> int:
        if text not in symbols:
            symbols[text] = len(symbols)
            new.append(text)
        return symbols[text]

    for start in range(0, len(STREAM), 100):
        new: list[str] = []
        wire, merchant_part, card_part = b"", b"", b""
        for txn in STREAM[start : start + 100]:
            m = symbol(txn["merchant_id"], new)
            merchant = merchants.setdefault(txn["merchant_id"], MerchantState())
            vector, cards[txn["card_id"]], delta = compute(cards.get(txn["card_id"]), merchant, txn)
            merchant.add(delta)
            if int(txn["card_id"][1:]) % 3 == 0:
                card = stage_cards.setdefault(txn["card_id"], len(stage_cards))
                device = -1 if txn["device_id"] is None else symbol(txn["device_id"], new)
                country, channel = symbol(txn["country"], new), symbol(txn["channel"], new)
                wire += ROW.pack(m, card, country, device, channel, txn["mcc"], txn["event_time"], 0, False,
                                 txn["amount"])  # fmt: skip
                card_part += CARD_PART.pack(*vector[:N_CARD_FEATURES])
            else:
                wire += ROW.pack(m, -1, 0, -1, 0, 0, *delta, vector[0])
            merchant_part += REPLY.pack(*vector[N_CARD_FEATURES:])
        frames.append((new, wire, len(card_part) // CARD_PART.size))
        expected += merchant_part + card_part
    return frames, expected


def request(frame: Frame) -> bytes:
    new, wire, staged = frame
    lengths, text = encode_symbols(new)
    return HEADER.pack(len(wire) // ROW.size, staged, len(new), len(text)) + lengths + text + wire


def test_the_stage_gives_computes_halves() -> None:
    frames, expected = frames_and_expected()
    stage = BlockStage()
    assert b"".join(stage.process(new, wire) for new, wire, _ in frames) == expected  # bit for bit


def test_serve_answers_each_frame_until_eof() -> None:
    frames, expected = frames_and_expected()
    replies = io.BytesIO()
    serve(io.BytesIO(b"".join(map(request, frames))), replies)
    assert replies.getvalue() == expected


@pytest.mark.parametrize("symbols", [[], ["DE"], ["", "\u00fc", "\ud800", "a\nb\x00"]])
def test_symbols_round_trip(symbols: list[str]) -> None:
    assert decode_symbols(*encode_symbols(symbols)) == symbols


def test_a_frame_cut_short_is_an_error() -> None:
    frames, _ = frames_and_expected()
    with pytest.raises(EOFError, match="cut short"):
        serve(io.BytesIO(request(frames[0])[:-3]), io.BytesIO())


def run_stage(data: bytes) -> subprocess.CompletedProcess[Any]:
    command = [sys.executable, "-m", "services.featurebuild.stage"]
    return subprocess.run(command, input=data, capture_output=True, timeout=60)


def test_the_stage_process_reports_a_cut_frame_in_one_line() -> None:
    proc = run_stage(HEADER.pack(5, 0, 0, 0) + b"\0" * 7)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode().strip().splitlines() == [
        f"fraudstream feature stage: frame cut short: 7 of {5 * ROW.size} bytes"
    ]


def test_the_stage_process_exits_0_at_eof() -> None:
    proc = run_stage(b"")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
