"""The block build (one or two processes) against the row-at-a-time reference driver."""

from __future__ import annotations

import signal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.features import N_FEATURES
from services.core.offline import DAY_MS, FeatureFrame
from services.core.offline import build_features as reference
from services.featurebuild import build
from services.featurebuild.build import FeatureBuild, ProcessStage, StageError, build_features
from tests.unit.core.test_features_golden import stream

STREAM = stream(seed=3, n=3000)  # late events up to 8 days, ~2% duplicates of any earlier row


def assert_same(got: FeatureFrame, want: FeatureFrame) -> None:
    assert got.X.shape == want.X.shape
    assert got.X.tobytes() == want.X.tobytes()  # bit for bit, NaN included
    assert got.txn_ids == want.txn_ids
    assert got.card_ids == want.card_ids
    assert got.event_time.tolist() == want.event_time.tolist()


@pytest.mark.parametrize("chunk_rows", [1, 7, 250, 10_000])
def test_one_process_equals_the_reference(chunk_rows: int) -> None:
    assert_same(build_features(STREAM, processes=1, chunk_rows=chunk_rows), reference(STREAM))


@pytest.mark.parametrize("chunk_rows", [250, 1024])
def test_two_processes_equal_the_reference(chunk_rows: int) -> None:
    assert_same(build_features(STREAM, processes=2, chunk_rows=chunk_rows), reference(STREAM))


@pytest.mark.parametrize("share", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("spawn", [False, True])
def test_any_split_of_the_cards_equals_the_reference(share: float, spawn: bool) -> None:
    build = FeatureBuild(chunk_rows=400, spawn=spawn, stage_card_share=share)
    assert_same(build.run(iter(STREAM)), reference(STREAM))


def test_odd_strings_travel_exactly() -> None:
    odd = ["DE", "", "\u00fc\u00df", "\ud800", "a\nb\x00c", "m-0"]  # a lone surrogate, NUL, newline
    rows = [
        {**txn, "country": odd[i % 6], "device_id": odd[(i + 1) % 6], "channel": odd[(i + 2) % 6],
         "merchant_id": odd[(i + 3) % 6]}
        for i, txn in enumerate(STREAM[:1500])
    ]  # fmt: skip
    build = FeatureBuild(chunk_rows=300, spawn=True, stage_card_share=1.0)
    assert_same(build.run(iter(rows)), reference(rows))


def test_a_short_dedupe_horizon_forgets_as_the_reference_does() -> None:
    # 1 day: some copies of old rows arrive after their id was forgotten and count again.
    got = build_features(STREAM, processes=2, chunk_rows=500, dedupe_horizon_ms=DAY_MS)
    assert_same(got, reference(STREAM, dedupe_horizon_ms=DAY_MS))
    assert got.X.tobytes() != build_features(STREAM, processes=1).X.tobytes()


def test_blocks_come_in_order_and_make_up_the_frame() -> None:
    blocks: list[np.ndarray] = []
    frame = build_features(STREAM, processes=2, chunk_rows=1000, on_chunk=blocks.append)
    assert [len(b) for b in blocks] == [1000, 1000, 1000, len(STREAM) - 3000]
    assert np.concatenate(blocks).tobytes() == frame.X.tobytes()


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 5, 100])
def test_every_row_is_handed_out_once_in_blocks(processes: int, chunk_rows: int) -> None:
    rows = STREAM[:6]
    chunks: list[np.ndarray] = []
    frame = build_features(rows, processes=processes, on_chunk=chunks.append, chunk_rows=chunk_rows)
    assert [len(c) for c in chunks] == [min(chunk_rows, 6 - i) for i in range(0, 6, chunk_rows)]
    assert np.concatenate(chunks).tobytes() == frame.X.tobytes()
    assert_same(frame, reference(rows))


def test_an_empty_stream_hands_out_no_block() -> None:
    chunks: list[np.ndarray] = []
    assert len(build_features([], processes=2, on_chunk=chunks.append)) == 0 and chunks == []


def test_a_stream_of_one_block_or_less_starts_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("no process for a short stream")

    monkeypatch.setattr(build, "ProcessStage", refuse)
    assert_same(build_features(STREAM[:999], processes=2, chunk_rows=1000), reference(STREAM[:999]))


def test_an_empty_stream_is_an_empty_frame() -> None:
    frame = build_features([], processes=2)
    assert frame.X.shape == (0, N_FEATURES) and frame.txn_ids == [] and len(frame.event_time) == 0


@pytest.mark.parametrize("kwargs", [{"processes": 0}, {"processes": 3}, {"chunk_rows": 0}])
def test_bad_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_features(STREAM, **kwargs)
    with pytest.raises(ValueError, match="share"):
        FeatureBuild(stage_card_share=1.5)


def test_the_child_exits_cleanly_after_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    stages = started_stages(monkeypatch)
    build = FeatureBuild(chunk_rows=500)
    assert_same(build.run(iter(STREAM)), reference(STREAM))
    assert len(stages) == 1 and stages[0]._proc.returncode == 0
    assert build.stage_peak_rss_mib is not None and 1 < build.stage_peak_rss_mib < 500


def test_a_dead_child_is_a_stage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    stages = started_stages(monkeypatch)

    def kill_the_child(block: np.ndarray) -> None:
        stages[0]._proc.kill()
        stages[0]._proc.wait()

    with pytest.raises(StageError, match="feature stage process stopped"):
        build_features(STREAM, processes=2, chunk_rows=500, on_chunk=kill_the_child)


def started_stages(monkeypatch: pytest.MonkeyPatch) -> list[ProcessStage]:
    stages: list[ProcessStage] = []

    def start() -> ProcessStage:
        stage = ProcessStage()
        stages.append(stage)
        return stage

    monkeypatch.setattr(build, "ProcessStage", start)
    return stages


def test_the_child_outlives_sigterm_and_sigint_to_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    stages = started_stages(monkeypatch)

    def signal_the_child(block: np.ndarray) -> None:
        if stages[0]._proc.poll() is None:  # the stage answered a frame: its handlers are set
            stages[0]._proc.send_signal(signal.SIGTERM)
            stages[0]._proc.send_signal(signal.SIGINT)

    got = build_features(STREAM, processes=2, chunk_rows=500, on_chunk=signal_the_child)
    assert_same(got, reference(STREAM))
    assert stages[0]._proc.returncode == 0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 400),
    chunk_rows=st.integers(1, 120),
    share=st.floats(0.0, 1.0),
    horizon=st.sampled_from([None, DAY_MS, 8 * DAY_MS]),
)
def test_property_the_block_build_is_the_reference(
    seed: int, n: int, chunk_rows: int, share: float, horizon: int | None
) -> None:
    rows = stream(seed=seed, n=n)
    build = FeatureBuild(
        chunk_rows=chunk_rows, spawn=False, stage_card_share=share, dedupe_horizon_ms=horizon
    )
    assert_same(build.run(iter(rows)), reference(rows, dedupe_horizon_ms=horizon))


def test_a_build_stopped_by_bad_input_stops_the_child_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stages = started_stages(monkeypatch)
    rows = stream(seed=9, n=12_000)
    del rows[7_000]["mcc"]  # in block 1, while the child works on block 0's big reply
    with pytest.raises(KeyError, match="mcc"):
        build_features(rows, processes=2, chunk_rows=5_000)
    # Not killed after the 10 s grace: it saw its reply pipe closed, or was idle.
    assert stages[0]._proc.returncode in (0, 1)
