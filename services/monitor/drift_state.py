"""The champion's drift windows, mirrored into a key-value table (a faust Table in the
service, a dict in tests).

Layout (JSON values)::

    w|<version>|<window start ms>  {"start", "n", "late", "counts": [[...] per variable],
                                    "offsets": {"<partition>": last offset counted},
                                    "eval": WindowEvaluation or null}
    d|<version>                     {"max_event_ms", "detector": {...}}

Idempotent under redelivery: a window remembers, per source partition, the last offset
it has counted, and a record at or below it is skipped. Counts and offsets of a window
live in one value, so they are written (and recovered) together. The meta value only
holds a maximum and the detector, which is advanced when a window's evaluation is
stored, so a crash between the two writes re-evaluates the same counts to the same
result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from services.core.drift import (
    DetectorState,
    DriftAlarm,
    DriftConfig,
    DriftTracker,
    WindowConfig,
    WindowCounts,
    WindowEvaluation,
)
from services.core.recall import DAY_MS
from services.monitor.champion import Champion
from services.monitor.records import ScoreRows

log = logging.getLogger(__name__)

KEEP_MS = 7 * DAY_MS  # evaluated windows are kept this long after the watermark passed them
KEEP_MIN_WINDOWS = 48


class KV(Protocol):
    """The part of a faust Table (or a dict) the monitor uses."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def __setitem__(self, key: str, value: Any) -> None: ...
    def __delitem__(self, key: str) -> None: ...
    def items(self) -> Iterable[tuple[str, Any]]: ...


def window_key(version: str, start: int) -> str:
    return f"w|{version}|{start}"


def meta_key(version: str) -> str:
    return f"d|{version}"


@dataclass(frozen=True)
class Ingested:
    counted: int
    late: int
    duplicates: int


class DriftBook:
    """A :class:`DriftTracker` for one champion version, persisted into ``kv``."""

    def __init__(self, kv: KV, champion: Champion, wcfg: WindowConfig, dcfg: DriftConfig) -> None:
        self.kv, self.champion = kv, champion
        self.tracker = DriftTracker(champion.reference, wcfg, dcfg)
        self.offsets: dict[int, dict[str, int]] = {}

    @property
    def version(self) -> str:
        return self.champion.version

    @property
    def watermark_ms(self) -> int | None:
        return self.tracker.watermark_ms

    @property
    def run_length(self) -> int:
        return len(self.tracker.detector.run_starts)

    @property
    def active(self) -> bool:
        return self.tracker.detector.alarmed

    def load(self) -> None:
        """Rebuild the in-memory state from ``kv`` (after a start or a rebalance)."""
        t = self.tracker
        t.windows.clear()
        t.evaluations.clear()
        self.offsets.clear()
        prefix = f"w|{self.version}|"
        for key, value in list(self.kv.items()):
            if not key.startswith(prefix) or value is None:
                continue
            start = int(value["start"])
            t.windows[start] = WindowCounts.from_dict(value)
            self.offsets[start] = {str(p): int(o) for p, o in value.get("offsets", {}).items()}
            if value.get("eval") is not None:
                t.evaluations[start] = WindowEvaluation.from_dict(value["eval"])
        meta = self.kv.get(meta_key(self.version)) or {}
        t.max_event_ms = meta.get("max_event_ms")
        t.detector = DetectorState.from_dict(meta.get("detector") or {})
        log.info(
            "drift state of version %s: %d windows, watermark %s",
            self.version,
            len(t.windows),
            t.watermark_ms,
        )

    def ingest(self, rows: ScoreRows) -> Ingested:
        """Count the champion's rows of a batch; skip what a window has counted before."""
        sel = rows.psi_rows
        t = rows.event_ms[sel]
        keep = self._first_sight(self.tracker.wcfg.starts_of(t), rows.partition[sel], rows.offset[sel])
        a = self.tracker.ingest(t[keep], rows.features[keep], rows.score[sel][keep])
        for s in set(a.starts.tolist()):
            self._save_window(s)
        return Ingested(counted=int((~a.late).sum()), late=int(a.late.sum()), duplicates=int((~keep).sum()))

    def _first_sight(self, starts: np.ndarray, partitions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Which rows their window has not counted yet; marks them counted. A record
        handed over twice within one batch (at-least-once delivery may) counts once."""
        keep = np.zeros(starts.size, dtype=bool)
        for i, (s, part, off) in enumerate(
            zip(starts.tolist(), partitions.tolist(), offsets.tolist(), strict=True)
        ):
            marks = self.offsets.setdefault(s, {})
            if off > marks.get(str(part), -1):
                marks[str(part)] = off
                keep[i] = True
        return keep

    def close_due(self) -> list[tuple[WindowEvaluation, DriftAlarm | None]]:
        """Evaluate the windows the watermark has passed; store each evaluation."""
        out = self.tracker.close_due()
        for ev, _ in out:
            self._save_window(ev.start)
        return out

    def save_meta(self) -> None:
        self.kv[meta_key(self.version)] = {
            "max_event_ms": self.tracker.max_event_ms,
            "detector": self.tracker.detector.to_dict(),
        }

    def expire(self) -> int:
        """Forget evaluated windows well behind the watermark; returns how many."""
        wm = self.watermark_ms
        if wm is None:
            return 0
        keep = max(KEEP_MS, KEEP_MIN_WINDOWS * self.tracker.wcfg.window_ms)
        gone = self.tracker.forget_before(wm - keep)
        for s in gone:
            self.offsets.pop(s, None)
            del self.kv[window_key(self.version, s)]
        return len(gone)

    def evaluations(self) -> list[WindowEvaluation]:
        return [self.tracker.evaluations[s] for s in sorted(self.tracker.evaluations)]

    def _save_window(self, start: int) -> None:
        win = self.tracker.windows[start]
        ev = self.tracker.evaluations.get(start)
        self.kv[window_key(self.version, start)] = {
            **win.to_dict(),
            "offsets": dict(self.offsets.get(start, {})),
            "eval": None if ev is None else ev.to_dict(),
        }
