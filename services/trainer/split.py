"""Time split and label policy of the training recipe.

Split: rows are cut by EVENT TIME, never at random, so the model is always evaluated on
a period after the one it learned from (what deployment looks like). The event-time
range ``[first, last]`` of the data is cut at ``train_fraction`` and
``train_fraction + validation_fraction`` of its length; with ``align_to_day`` each cut
is moved to the nearest UTC midnight (whole days per split, no half day of a weekly
or daily cycle on each side) unless that would leave a split empty::

    train       [start, train_end)
    validation  [train_end, validation_end)
    test        [validation_end, end]

Label policy ("training at time T uses the labels known at T"): the model is fitted
at ``T = validation_end``, the start of the test period. Everything that fits it (the
train rows, and the validation rows used for early stopping and thresholds) sees only
labels with ``label_time <= T``; a label that arrives later is unknown, and unknown
counts as legitimate. The test period is after T, so the test evaluation may use
labels from the whole label stream ("label-based") or the generator's ground truth
("truth-based"); it never feeds back into the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

DAY_MS = 86_400_000


@dataclass(frozen=True)
class SplitConfig:
    train_fraction: float = 0.6
    validation_fraction: float = 0.2
    align_to_day: bool = True

    def __post_init__(self) -> None:
        if not (
            0 < self.train_fraction < 1
            and 0 < self.validation_fraction < 1
            and self.train_fraction + self.validation_fraction < 1
        ):
            raise ValueError(
                f"train fraction {self.train_fraction} and validation fraction "
                f"{self.validation_fraction} must be positive and leave room for a test split"
            )


@dataclass(frozen=True)
class TimeSplit:
    """Cut points in epoch ms: train [start, train_end), validation, test [validation_end, end]."""

    start_ms: int
    train_end_ms: int
    validation_end_ms: int
    end_ms: int  # the last event time (inclusive)

    @property
    def fit_label_cutoff_ms(self) -> int:
        """T, the moment the model is trained: labels known by then are the training labels."""
        return self.validation_end_ms

    def masks(self, event_time: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boolean row masks of the train, validation and test splits."""
        train = event_time < self.train_end_ms
        test = event_time >= self.validation_end_ms
        return train, ~train & ~test, test

    def periods(self) -> dict[str, dict[str, int | str]]:
        """Each split's [start, end) in ms and ISO 8601, for the manifest."""
        bounds = {
            "train": (self.start_ms, self.train_end_ms),
            "validation": (self.train_end_ms, self.validation_end_ms),
            "test": (self.validation_end_ms, self.end_ms + 1),
        }
        return {name: period(lo, hi) for name, (lo, hi) in bounds.items()}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def period(start_ms: int, end_ms: int) -> dict[str, int | str]:
    """A half-open period ``[start, end)`` in both forms."""
    return {"start_ms": start_ms, "end_ms": end_ms, "start": iso(start_ms), "end": iso(end_ms)}


def _nearest_midnight(ms: float) -> int:
    return int(round(ms / DAY_MS)) * DAY_MS


def split_by_time(event_time: np.ndarray, config: SplitConfig) -> TimeSplit:
    """Cut the event-time range of ``event_time`` into train, validation and test."""
    if event_time.size == 0:
        raise ValueError("no transactions to split")
    start, end = int(event_time.min()), int(event_time.max())
    span = end - start + 1
    raw = (
        start + config.train_fraction * span,
        start + (config.train_fraction + config.validation_fraction) * span,
    )
    cuts = tuple(int(c) for c in raw)
    if config.align_to_day:
        aligned = tuple(_nearest_midnight(c) for c in raw)
        if start < aligned[0] < aligned[1] <= end:
            cuts = aligned
    if not start < cuts[0] < cuts[1] <= end:
        raise ValueError(f"event-time range {iso(start)} .. {iso(end)} is too short to split")
    return TimeSplit(start_ms=start, train_end_ms=cuts[0], validation_end_ms=cuts[1], end_ms=end)
