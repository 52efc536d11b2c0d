from __future__ import annotations

import numpy as np
import pytest

from services.trainer.split import DAY_MS, SplitConfig, split_by_time

START = 1_767_225_600_000  # 2026-01-01T00:00Z


def test_sixty_days_split_on_whole_days() -> None:
    times = np.array([START + 5_000, START + 60 * DAY_MS - 7_000], dtype=np.int64)
    split = split_by_time(times, SplitConfig())
    assert split.train_end_ms == START + 36 * DAY_MS
    assert split.validation_end_ms == START + 48 * DAY_MS
    assert split.fit_label_cutoff_ms == split.validation_end_ms
    periods = split.periods()
    assert periods["train"]["start"] == "2026-01-01T00:00:05.000+00:00"
    assert periods["validation"]["start"] == "2026-02-06T00:00:00.000+00:00"
    assert periods["test"]["start"] == "2026-02-18T00:00:00.000+00:00"


def test_masks_partition_the_rows_at_the_cuts() -> None:
    times = np.arange(START, START + 10 * DAY_MS, 3_600_000, dtype=np.int64)
    split = split_by_time(times, SplitConfig(0.6, 0.2))
    train, val, test = split.masks(times)
    assert (train ^ val ^ test).all() and not (train & val).any() and not (val & test).any()
    assert times[train].max() < split.train_end_ms <= times[val].min()
    assert times[val].max() < split.validation_end_ms <= times[test].min()


def test_short_range_is_cut_without_day_alignment() -> None:
    times = np.array([START, START + 10 * 3_600_000], dtype=np.int64)  # 10 hours
    split = split_by_time(times, SplitConfig())
    assert START < split.train_end_ms < split.validation_end_ms <= times.max()


def test_too_short_to_split() -> None:
    with pytest.raises(ValueError, match="too short"):
        split_by_time(np.array([START], dtype=np.int64), SplitConfig())


@pytest.mark.parametrize(("train", "val"), [(0.0, 0.2), (0.8, 0.2), (0.6, 0.5), (1.2, 0.1)])
def test_bad_fractions(train: float, val: float) -> None:
    with pytest.raises(ValueError):
        SplitConfig(train, val)
