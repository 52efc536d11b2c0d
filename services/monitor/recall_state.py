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

Labels wait in a buffer until the monitor's clock passes their label time
(:meth:`RecallKeeper.release`), so a recall evaluation as of time T sees exactly the
labels with ``label_time < T`` whichever agent ran ahead. Buffered labels are logged as
``<label day>|q|<partition>:<first>-<last>|<chunk>  {"q": [[txn_id, label_ms, is_fraud], ...]}``
and a day's entries are deleted once the clock has passed the whole day; releasing a
label twice (after a restart) changes nothing, as merging is idempotent.
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
        self.buffer: list[tuple[str, int, bool]] = []  # labels the clock has not passed yet
        self.buffer_max_ms: int | None = None

    def load(self) -> None:
        """Fold every logged record state into ``records``; rebuild the cohort sums."""
        self.records = {}
        self.state = RecallState(self.state.horizon_days, self.state.prior)
        self.buffer, self.buffer_max_ms = [], None
        for _, value in list(self.kv.items()):
            if value is None:
                continue
            for txn_id, at, fraud in value.get("q", ()):
                self._hold(str(txn_id), int(at), bool(fraud))
            for txn_id, raw in value.get("r", ()):
                self.records[txn_id] = combine(self.records.get(txn_id), TxnRecord.from_list(raw))
        self.tracked = self.pending = 0
        for rec in self.records.values():
            self._count(None, rec)
            self.state.apply(None, rec)
        log.info(
            "recall state: %d scored transactions, %d pending labels, %d cohorts",
            self.tracked,
            self.pending,
            len(self.state.cohorts),
        )

    def on_scores(self, rows: ScoreRows) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        changed: dict[str, TxnRecord] = {}
        for txn_id, t, s, f, v in zip(
            rows.txn_id,
            rows.event_ms.tolist(),
            rows.score.tolist(),
            rows.flagged.tolist(),
            rows.version,
            strict=True,
        ):
            old = self.records.get(txn_id)
            new, outcome = merge_score(old, t, s, f, v)
            outcomes[outcome] += 1
            if self._replace(txn_id, old, new):
                changed[txn_id] = new
        if len(rows):
            self._log(changed, f"s|{rows.partition[0]}:{rows.offset[0]}-{rows.offset[-1]}")
        return outcomes

    def on_labels(self, rows: LabelRows, released_ms: int | None) -> Counter[str]:
        """Buffer the labels the clock has not passed (outcome ``buffered``); apply those
        it has (``released_ms``: labels before it are applied) at once, as ``late``."""
        outcomes: Counter[str] = Counter()
        changed: dict[str, TxnRecord] = {}
        held: dict[int, list[list[object]]] = defaultdict(list)
        for txn_id, at, fraud in zip(rows.txn_id, rows.label_ms, rows.is_fraud, strict=True):
            if released_ms is None or at >= released_ms:
                self._hold(txn_id, at, fraud)
                held[at - at % DAY_MS].append([txn_id, at, fraud])
                outcomes["buffered"] += 1
                continue
            outcomes["late"] += 1
            old = self.records.get(txn_id)
            new, _ = merge_label(old, at, fraud)
            if self._replace(txn_id, old, new):
                changed[txn_id] = new
        if len(rows):
            batch = f"{rows.partition[0]}:{rows.offset[0]}-{rows.offset[-1]}"
            self._log(changed, f"l|{batch}")
            for day, items in held.items():
                self._put(f"{day}|q|{batch}", "q", items)
        return outcomes

    def release(self, before_ms: int) -> Counter[str]:
        """Apply the buffered labels with ``label_time < before_ms``; returns their join
        outcomes (joined, pending, updated, duplicate, stale)."""
        outcomes: Counter[str] = Counter()
        due = [lab for lab in self.buffer if lab[1] < before_ms]
        if not due:
            return outcomes
        self.buffer = [lab for lab in self.buffer if lab[1] >= before_ms]
        self.buffer_max_ms = max((lab[1] for lab in self.buffer), default=None)
        changed: dict[str, TxnRecord] = {}
        for txn_id, at, fraud in sorted(due, key=lambda lab: (lab[1], lab[2])):
            old = self.records.get(txn_id)
            new, outcome = merge_label(old, at, fraud)
            outcomes[outcome] += 1
            if self._replace(txn_id, old, new):
                changed[txn_id] = new
        self._log(changed, f"l|released:{before_ms}")
        # Only once the records are logged: a crash in between releases them again.
        for key in [
            k
            for k, v in list(self.kv.items())
            if v is not None and "q" in v and int(k.split("|", 1)[0]) + DAY_MS <= before_ms
        ]:
            del self.kv[key]
        return outcomes

    @property
    def label_max_ms(self) -> int | None:
        """The latest label time seen, applied or buffered."""
        times = [t for t in (self.state.label_clock_ms, self.buffer_max_ms) if t is not None]
        return max(times) if times else None

    @property
    def buffered(self) -> int:
        return len(self.buffer)

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

    def _hold(self, txn_id: str, at: int, fraud: bool) -> None:
        self.buffer.append((txn_id, at, fraud))
        self.buffer_max_ms = at if self.buffer_max_ms is None else max(self.buffer_max_ms, at)

    def _log(self, changed: dict[str, TxnRecord], batch: str) -> None:
        by_day: dict[int, list[list[object]]] = defaultdict(list)
        for txn_id, rec in changed.items():
            by_day[anchor_day(rec)].append([txn_id, rec.to_list()])
        for day, items in by_day.items():
            self._put(f"{day}|{batch}", "r", items)

    def _put(self, name: str, field: str, items: list[list[object]]) -> None:
        for chunk, lo in enumerate(range(0, len(items), CHUNK)):
            # Never overwrite an entry: a redelivered batch may log other records
            # under the same name.
            key = base = f"{name}|{chunk}"
            n = 0
            while self.kv.get(key) is not None:
                n += 1
                key = f"{base}+{n}"
            self.kv[key] = {field: items[lo : lo + CHUNK]}

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
        for txn_id, raw in value.get("r", ()):
            out[txn_id] = combine(out.get(txn_id), TxnRecord.from_list(raw))
    return out
