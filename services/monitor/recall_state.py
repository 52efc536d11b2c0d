"""Scored transactions and their labels, one :class:`TxnRecord` per ``txn_id``.

In memory: ``records[txn_id]`` plus the cohort sums derived from them. Persisted: a
changelog-backed table used as a *log of record states*, one value per (batch, event
day, chunk) instead of one per transaction, because a faust table write costs one
Kafka message through faust's producer buffer (about 0.25 ms each: per-transaction keys
held one worker at about 2,300 scores/s)::

    <day start ms>|<s|l>|<partition>:<first offset>|<chunk>  {"r": [[txn_id, record], ...]}

Each entry holds the merged state of the records its batch changed. Merging is
commutative and idempotent (:func:`services.core.recall.combine`), so recovery folds
all entries in any order into the same records, a redelivered batch only rewrites what
is already known, and a crash leaves nothing half-applied. The day in the key is the
record's event day (its label day while the score is unseen), so whole keys expire
with the label horizon.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence

from services.core.recall import (
    DAY_MS,
    CohortFigures,
    DelayPrior,
    RecallState,
    TxnRecord,
    combine,
    merge_label,
    merge_score,
)
from services.monitor.drift_state import KV
from services.monitor.records import LabelRows, ScoreRows

log = logging.getLogger(__name__)

CHUNK = 500  # records per table value: about 40 kB of JSON, well under Kafka's 1 MB


def anchor_day(rec: TxnRecord) -> int:
    at = rec.event_ms if rec.event_ms is not None else int(rec.label_ms or 0)
    return at - at % DAY_MS


class RecallKeeper:
    def __init__(self, kv: KV, horizon_days: int, prior: DelayPrior) -> None:
        self.kv = kv
        self.records: dict[str, TxnRecord] = {}
        self.state = RecallState(horizon_days, prior)
        self.tracked = 0  # records with a score
        self.pending = 0  # records with only a label

    def load(self) -> None:
        """Fold every logged record state into ``records``; rebuild the cohort sums."""
        self.records = {}
        self.state = RecallState(self.state.horizon_days, self.state.prior)
        for _, value in list(self.kv.items()):
            if value is None:
                continue
            for txn_id, raw in value["r"]:
                self.records[txn_id] = combine(self.records.get(txn_id), TxnRecord.from_list(raw))
        self.tracked = self.pending = 0
        for rec in self.records.values():
            self._count(None, rec)
            self.state.apply(None, rec)
        log.info("recall state: %d scored transactions, %d pending labels, %d cohorts",
                 self.tracked, self.pending, len(self.state.cohorts))

    def on_scores(self, rows: ScoreRows) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        changed: dict[str, TxnRecord] = {}
        for txn_id, t, s, f, v in zip(rows.txn_id, rows.event_ms.tolist(), rows.score.tolist(),
                                      rows.flagged.tolist(), rows.version, strict=True):
            old = self.records.get(txn_id)
            new, outcome = merge_score(old, t, s, f, v)
            outcomes[outcome] += 1
            if self._replace(txn_id, old, new):
                changed[txn_id] = new
        if len(rows):
            self._log(changed, f"s|{rows.partition[0]}:{rows.offset[0]}-{rows.offset[-1]}")
        return outcomes

    def on_labels(self, rows: LabelRows) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        changed: dict[str, TxnRecord] = {}
        for txn_id, at, fraud in zip(rows.txn_id, rows.label_ms, rows.is_fraud, strict=True):
            old = self.records.get(txn_id)
            new, outcome = merge_label(old, at, fraud)
            outcomes[outcome] += 1
            if self._replace(txn_id, old, new):
                changed[txn_id] = new
        if len(rows):
            self._log(changed, f"l|{rows.partition[0]}:{rows.offset[0]}-{rows.offset[-1]}")
        return outcomes

    def figures(self, now_ms: int, min_maturity: float) -> list[CohortFigures]:
        return self.state.figures(now_ms, min_maturity)

    def expire(self, now_ms: int) -> int:
        """Forget records and log entries older than the label horizon; returns how many
        records went."""
        cutoff = now_ms - self.state.horizon_days * DAY_MS
        cutoff_day = cutoff - cutoff % DAY_MS
        old = [(k, r) for k, r in self.records.items() if anchor_day(r) < cutoff_day]
        for txn_id, rec in old:
            del self.records[txn_id]
            self._count(rec, None)
            self.state.apply(rec, TxnRecord())  # takes its contribution back
        for key in [k for k, _ in list(self.kv.items()) if int(k.split("|", 1)[0]) < cutoff_day]:
            del self.kv[key]
        self.state.expire_before(cutoff_day)
        return len(old)

    # ------------------------------------------------------------------ internals

    def _replace(self, txn_id: str, old: TxnRecord | None, new: TxnRecord) -> bool:
        if new == old:
            return False
        self.records[txn_id] = new
        self._count(old, new)
        self.state.apply(old, new)
        return True

    def _log(self, changed: dict[str, TxnRecord], batch: str) -> None:
        by_day: dict[int, list[list[object]]] = defaultdict(list)
        for txn_id, rec in changed.items():
            by_day[anchor_day(rec)].append([txn_id, rec.to_list()])
        for day, items in by_day.items():
            for chunk, lo in enumerate(range(0, len(items), CHUNK)):
                # Never overwrite an entry: a redelivered batch may log other records
                # under the same name.
                key = base = f"{day}|{batch}|{chunk}"
                n = 0
                while self.kv.get(key) is not None:
                    n += 1
                    key = f"{base}+{n}"
                self.kv[key] = {"r": items[lo:lo + CHUNK]}

    def _count(self, old: TxnRecord | None, new: TxnRecord | None) -> None:
        for rec, sign in ((old, -1), (new, 1)):
            if rec is not None:
                if rec.scored:
                    self.tracked += sign
                else:
                    self.pending += sign


def records_of(kv_items: Sequence[tuple[str, dict]]) -> dict[str, TxnRecord]:
    """The records a log holds (for tests and tools reading a changelog)."""
    out: dict[str, TxnRecord] = {}
    for _, value in kv_items:
        for txn_id, raw in value["r"]:
            out[txn_id] = combine(out.get(txn_id), TxnRecord.from_list(raw))
    return out
