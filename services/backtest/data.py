"""The backtest's inputs: a verified data set as columns, with a feature cache.

Features come from :func:`services.featurebuild.build.build_features`, the feature code the
trainer runs and the scorer runs online. Building them is the slow step (pure Python, one row
at a time), so the frame is cached next to the data set as a plain ``.npz`` (no pickle:
strings are fixed-width bytes, loaded with ``allow_pickle=False``), named after the
feature-set fingerprint and checked against the sha256 of ``transactions.avro`` from the
data set manifest, which :func:`services.dataset.verify_dataset` has just checked. A
new feature version or new data simply misses the cache.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services import dataset
from services.core.features import FEATURE_NAMES, FEATURE_SET_FINGERPRINT
from services.featurebuild.build import build_features

log = logging.getLogger(__name__)

CACHE_DIR = ".cache"
OnChunk = Callable[[npt.NDArray[np.float64]], None]


@dataclass(frozen=True)
class Frame:
    """One row per transaction, in file (event-time) order."""

    txn_ids: list[str]
    event_time: npt.NDArray[np.int64]
    X: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.txn_ids)


@dataclass(frozen=True)
class Labels:
    """The labels file as columns, in label-time order."""

    txn_id: list[str]
    label_ms: npt.NDArray[np.int64]
    is_fraud: npt.NDArray[np.bool_]
    records: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.txn_id)

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> Labels:
        return cls(
            txn_id=[str(r["txn_id"]) for r in records],
            label_ms=np.asarray([int(r["label_time"]) for r in records], dtype=np.int64),
            is_fraud=np.asarray([bool(r["is_fraud"]) for r in records], dtype=bool),
            records=records,
        )


@dataclass(frozen=True)
class Truth:
    """Ground truth aligned to the frame's rows (evaluation only)."""

    is_fraud: npt.NDArray[np.bool_]
    pattern: list[str]


@dataclass
class BacktestData:
    directory: Path
    manifest: dict[str, Any]
    frame: Frame
    labels: Labels
    truth: Truth | None
    timings: dict[str, float] = field(default_factory=dict)
    cache_hit: bool = False


def cache_path(directory: Path) -> Path:
    return directory / CACHE_DIR / f"features-{FEATURE_SET_FINGERPRINT[:16]}.npz"


def _file_sha(manifest: dict[str, Any]) -> str:
    return str(manifest.get("files", {}).get(dataset.TRANSACTIONS_FILE, {}).get("sha256", ""))


def read_cache(directory: Path, manifest: dict[str, Any]) -> Frame | None:
    path = cache_path(directory)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if (
                str(z["source_sha256"]) != _file_sha(manifest)
                or str(z["fingerprint"]) != FEATURE_SET_FINGERPRINT
            ):
                return None
            X = np.asarray(z["X"], dtype=np.float64)
            if X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES):
                return None
            ids = [b.decode("utf-8") for b in z["txn_ids"].tolist()]
            return Frame(ids, np.asarray(z["event_time"], dtype=np.int64), X)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring an unreadable feature cache %s (%s)", path, exc)
        return None


def write_cache(directory: Path, manifest: dict[str, Any], frame: Frame) -> None:
    """Best effort: a read-only data set directory just means no cache."""
    path = cache_path(directory)
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            txn_ids=np.asarray([t.encode("utf-8") for t in frame.txn_ids], dtype=bytes),
            event_time=frame.event_time,
            X=frame.X,
            source_sha256=np.asarray(_file_sha(manifest)),
            fingerprint=np.asarray(FEATURE_SET_FINGERPRINT),
        )
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write the feature cache %s (%s); continuing without", path, exc)


def compute_frame(directory: Path, on_chunk: OnChunk | None = None) -> Frame:
    ff = build_features(dataset.iter_transactions(directory), on_chunk=on_chunk)
    return Frame(ff.txn_ids, np.asarray(ff.event_time, dtype=np.int64), np.asarray(ff.X, dtype=np.float64))


def load(directory: Path, *, use_cache: bool = True, on_chunk: OnChunk | None = None) -> BacktestData:
    """Verify the data set and load it as columns. Raises ``dataset.DatasetError``.
    ``on_chunk`` gets each block of feature rows as it is built (not on a cache hit)."""
    directory = Path(directory)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    manifest = dataset.read_manifest(directory)
    dataset.verify_dataset(directory)
    timings["verify_s"] = time.perf_counter() - started
    frame = read_cache(directory, manifest) if use_cache else None
    hit = frame is not None
    if frame is None:
        began = time.perf_counter()
        frame = compute_frame(directory, on_chunk)
        timings["features_s"] = time.perf_counter() - began
        if use_cache:
            write_cache(directory, manifest, frame)
    began = time.perf_counter()
    labels = Labels.of(dataset.read_labels(directory))
    truth = read_truth(directory, frame)
    timings["labels_truth_s"] = time.perf_counter() - began
    return BacktestData(directory, manifest, frame, labels, truth, timings, hit)


def read_truth(directory: Path, frame: Frame) -> Truth | None:
    """The truth file aligned to the frame (same order by construction; checked)."""
    if not (directory / dataset.TRUTH_FILE).is_file():
        return None
    records = list(dataset.iter_truth(directory))
    if len(records) != len(frame) or any(
        r["txn_id"] != t for r, t in zip(records, frame.txn_ids, strict=True)
    ):
        log.warning("truth.avro is not aligned with transactions.avro; truth-based figures are skipped")
        return None
    return Truth(
        np.asarray([bool(r["is_fraud"]) for r in records], dtype=bool), [str(r["pattern"]) for r in records]
    )
