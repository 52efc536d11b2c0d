"""The merchant stage: the merchant half of ``compute`` over frames."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from services.core.features import N_CARD_FEATURES, MerchantState, card_features, compute
from services.featurebuild.stage import HEADER, REPLY, ROW, MerchantStage, serve
from tests.unit.core.test_features_golden import stream

STREAM = [t for t in stream(seed=5, n=800)]


def frames_and_expected() -> tuple[list[tuple[int, bytes]], list[tuple[float, ...]]]:
    """ROW frames of 100 rows each (with the merchants new in each), and ``compute``'s
    merchant part of every row (duplicates are the parent's business: no dedupe here)."""
    numbers: dict[str, int] = {}
    merchants: dict[str, MerchantState] = {}
    cards: dict[str, object] = {}
    frames: list[tuple[int, bytes]] = []
    expected: list[tuple[float, ...]] = []
    for start in range(0, len(STREAM), 100):
        known, wire = len(numbers), bytearray()
        for txn in STREAM[start : start + 100]:
            number = numbers.setdefault(txn["merchant_id"], len(numbers))
            merchant = merchants.setdefault(txn["merchant_id"], MerchantState())
            card = cards.get(txn["card_id"])
            vector, _, delta = compute(card, merchant, txn)  # type: ignore[arg-type]
            head, cards[txn["card_id"]], same_delta = card_features(card, txn)  # type: ignore[arg-type]
            assert same_delta == delta and head == vector[:N_CARD_FEATURES]
            merchant.add(delta)
            wire += ROW.pack(number, *delta, head[0])
            expected.append(vector[N_CARD_FEATURES:])
        frames.append((len(numbers) - known, bytes(wire)))
    return frames, expected


def test_the_stage_gives_computes_merchant_part() -> None:
    frames, expected = frames_and_expected()
    stage = MerchantStage()
    got = [row for new, wire in frames for row in REPLY.iter_unpack(stage.process(new, wire))]
    assert [REPLY.pack(*r) for r in got] == [REPLY.pack(*r) for r in expected]  # bit for bit


def test_serve_answers_each_frame_until_eof() -> None:
    frames, expected = frames_and_expected()
    requests = b"".join(HEADER.pack(len(wire) // ROW.size, new) + wire for new, wire in frames)
    replies = io.BytesIO()
    serve(io.BytesIO(requests), replies)
    assert replies.getvalue() == b"".join(REPLY.pack(*r) for r in expected)


def test_a_frame_cut_short_is_an_error() -> None:
    frames, _ = frames_and_expected()
    new, wire = frames[0]
    with pytest.raises(EOFError, match="cut short"):
        serve(io.BytesIO(HEADER.pack(100, new) + wire[:-3]), io.BytesIO())


def test_the_stage_process_reports_a_cut_frame_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "services.featurebuild.stage"],
        input=HEADER.pack(5, 1) + b"\0" * 7,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode().strip().splitlines() == [
        f"fraudstream merchant stage: frame cut short: 7 of {5 * ROW.size} bytes"
    ]


def test_the_stage_process_exits_0_at_eof() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "services.featurebuild.stage"], input=b"", capture_output=True, timeout=60
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
