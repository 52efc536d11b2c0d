"""The demo's live status line, from the scorer's and the monitor's Prometheus metrics.

Pure: :func:`snapshot` turns two scrapes into a :class:`Status`, :func:`render` into one
line; the demo prints it in place on a terminal, or every few seconds into a log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from services.demo.services import Metrics

SCORED = "fraudstream_scorer_records_scored_total"
DEAD_LETTERED = "fraudstream_scorer_records_dead_lettered_total"
WINDOWS = "fraudstream_monitor_windows_closed_total"
PSI = "fraudstream_monitor_psi"
PSI_LIMIT = "fraudstream_monitor_psi_threshold"
DRIFTING = "fraudstream_monitor_feature_drifting"
DRIFT_ACTIVE = "fraudstream_monitor_drift_active"
RETRAIN = "fraudstream_monitor_retrain_events_total"
MONITOR_RECORDS = "fraudstream_monitor_records_total"


@dataclass(frozen=True)
class Status:
    replayed: int = 0
    to_replay: int = 0
    scored: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    scored_per_s: float = 0.0
    monitor_scores: int = 0
    monitor_labels: int = 0
    windows: int = 0
    drifting: tuple[str, ...] = ()
    score_psi: float = math.nan
    drift_active: bool = False
    retrain: dict[str, int] = field(default_factory=dict)


def snapshot(scorer: Metrics, monitor: Metrics, replayed: int, to_replay: int, scored_per_s: float) -> Status:
    decisions = {labels.get("decision", "?"): int(v) for labels, v in scorer.series(SCORED)}
    drifting = tuple(sorted(labels["feature"] for labels, v in monitor.series(DRIFTING)
                            if v >= 1 and "feature" in labels))  # fmt: skip
    retrain = {labels.get("reason", "?"): int(v) for labels, v in monitor.series(RETRAIN) if v > 0}
    score_psi = next((v for labels, v in monitor.series(PSI) if labels.get("feature") == "score"), math.nan)
    return Status(
        replayed=replayed,
        to_replay=to_replay,
        scored=sum(decisions.values()),
        decisions=decisions,
        dead_lettered=int(scorer.total(DEAD_LETTERED)),
        scored_per_s=scored_per_s,
        monitor_scores=int(monitor.total(MONITOR_RECORDS, topic="scores")),
        monitor_labels=int(monitor.total(MONITOR_RECORDS, topic="labels")),
        windows=int(monitor.total(WINDOWS)),
        drifting=drifting,
        score_psi=score_psi,
        drift_active=(monitor.get(DRIFT_ACTIVE) or 0) >= 1,
        retrain=retrain,
    )


def render(s: Status) -> str:
    review, block = s.decisions.get("REVIEW", 0), s.decisions.get("BLOCK", 0)
    parts = [
        f"replayed {s.replayed:,}/{s.to_replay:,}",
        f"scored {s.scored:,} ({s.scored_per_s:,.0f}/s, {review:,} review, {block:,} block)",
        f"monitor {s.monitor_scores:,} scores, {s.monitor_labels:,} labels, {s.windows} windows",
    ]
    if not math.isnan(s.score_psi):
        parts.append(f"score PSI {s.score_psi:.3f}")
    if s.drifting:
        shown = ", ".join(s.drifting[:3]) + (f" +{len(s.drifting) - 3}" if len(s.drifting) > 3 else "")
        parts.append(f"drifting: {shown}")
    retrain = ", ".join(f"{n} {reason}" for reason, n in sorted(s.retrain.items())) or "none"
    parts.append(f"retrain events: {retrain}")
    return " | ".join(parts)


class Rate:
    """Records per second between two readings of a counter (injected clock times)."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None
        self.value = 0.0

    def update(self, now_s: float, count: float) -> float:
        if self._last is not None and now_s > self._last[0]:
            self.value = max(0.0, (count - self._last[1]) / (now_s - self._last[0]))
        self._last = (now_s, count)
        return self.value
