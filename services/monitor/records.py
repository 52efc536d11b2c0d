"""Raw Kafka records in, columnar batches or typed rejections out (no Kafka imports).

A record the monitor cannot use is a :class:`Rejected` value that carries the original
bytes and a reason slug; the agent dead-letters it. Scores that are fine but not ours to
count (shadow scores, other models) are *skipped* with an outcome, not rejected.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from services.core.codec import Codec, DecodeError

SCORE, LABEL = "Score", "Label"
# Outcomes of a score (records_total{topic="scores", outcome=...})
COUNTED, RECALL_ONLY, SHADOW, OTHER_MODEL = "counted", "recall_only", "shadow", "other_model"


@dataclass(frozen=True)
class Raw:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True)
class Rejected:
    raw: Raw
    error_class: str
    reason: str
    detail: str


@dataclass
class ScoreRows:
    """Usable scores of a batch, in arrival order. ``psi_rows`` selects the champion's."""

    partition: np.ndarray
    offset: np.ndarray
    event_ms: np.ndarray
    score: np.ndarray
    flagged: np.ndarray
    txn_id: list[str]
    version: list[str]
    psi_rows: np.ndarray  # bool: counts into the champion's PSI windows
    features: np.ndarray  # psi rows x n_features
    outcomes: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.txn_id)

    def take(self, lo: int, hi: int) -> ScoreRows:
        """Rows ``[lo, hi)``; ``outcomes`` stay with the whole batch (counted once)."""
        psi_before = np.concatenate(([0], np.cumsum(self.psi_rows)))  # feature rows before each row
        return ScoreRows(
            partition=self.partition[lo:hi],
            offset=self.offset[lo:hi],
            event_ms=self.event_ms[lo:hi],
            score=self.score[lo:hi],
            flagged=self.flagged[lo:hi],
            txn_id=self.txn_id[lo:hi],
            version=self.version[lo:hi],
            psi_rows=self.psi_rows[lo:hi],
            features=self.features[int(psi_before[lo]) : int(psi_before[hi])],
        )


@dataclass
class LabelRows:
    txn_id: list[str]
    label_ms: list[int]
    is_fraud: list[bool]
    partition: list[int] = field(default_factory=list)
    offset: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.txn_id)

    def take(self, lo: int, hi: int) -> LabelRows:
        return LabelRows(
            self.txn_id[lo:hi],
            self.label_ms[lo:hi],
            self.is_fraud[lo:hi],
            self.partition[lo:hi],
            self.offset[lo:hi],
        )


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def decode_scores(
    codec: Codec,
    raws: Sequence[Raw],
    model_name: str,
    champion_version: str,
    n_features: int,
    latest_ms: int | None = None,
) -> tuple[ScoreRows, list[Rejected]]:
    """Decode and check a batch; ``latest_ms`` bounds event times (see :func:`_check_time`)."""
    rejected: list[Rejected] = []
    outcomes: Counter[str] = Counter()
    cols: dict[str, list] = {k: [] for k in ("p", "o", "t", "s", "f", "id", "v", "psi")}
    vectors: list[list[float]] = []
    for raw in raws:
        try:
            rec = codec.decode(SCORE, raw.value)
            _check_score(rec, n_features if rec["model_version"] == champion_version else None)
            _check_time(rec["event_time"], latest_ms, "event_time")
        except DecodeError as exc:
            rejected.append(Rejected(raw, "DecodeError", str(exc.reason), exc.detail))
            continue
        except _Invalid as exc:
            rejected.append(Rejected(raw, "ValidationError", exc.reason, exc.detail))
            continue
        if rec["shadow"]:
            outcomes[SHADOW] += 1
            continue
        if rec["model_name"] != model_name:
            outcomes[OTHER_MODEL] += 1
            continue
        for_psi = rec["model_version"] == champion_version
        outcomes[COUNTED if for_psi else RECALL_ONLY] += 1
        for key, value in (
            ("p", raw.partition),
            ("o", raw.offset),
            ("t", rec["event_time"]),
            ("s", rec["score"]),
            ("f", rec["decision"] != "ALLOW"),
            ("id", rec["txn_id"]),
            ("v", rec["model_version"]),
            ("psi", for_psi),
        ):
            cols[key].append(value)
        if for_psi:
            vectors.append(rec["features"])
    rows = ScoreRows(
        partition=np.asarray(cols["p"], dtype=np.int64),
        offset=np.asarray(cols["o"], dtype=np.int64),
        event_ms=np.asarray(cols["t"], dtype=np.int64),
        score=np.asarray(cols["s"], dtype=np.float64),
        flagged=np.asarray(cols["f"], dtype=bool),
        txn_id=cols["id"],
        version=cols["v"],
        psi_rows=np.asarray(cols["psi"], dtype=bool),
        features=np.asarray(vectors, dtype=np.float64).reshape(len(vectors), n_features),
        outcomes=outcomes,
    )
    return rows, rejected


def _check_score(rec: dict, n_features: int | None) -> None:
    score = rec["score"]
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise _Invalid("score_out_of_range", "score is not a probability in [0, 1]")
    if rec["event_time"] < 0:
        raise _Invalid("event_time_out_of_range", "event_time is before 1970")
    if not rec["txn_id"]:
        raise _Invalid("missing_txn_id", "txn_id is empty")
    if n_features is not None and len(rec["features"]) != n_features:
        raise _Invalid(
            "feature_count", f"{len(rec['features'])} features where the champion has {n_features}"
        )


def _check_time(at: int, latest_ms: int | None, field_name: str) -> None:
    """Refuse a time from the future. The monitor's clock is the data's newest time, so
    one poisoned timestamp in 2100 would close every window and expire every record;
    the bound is the wall clock plus a skew, which a replay of history never reaches."""
    if latest_ms is not None and at > latest_ms:
        raise _Invalid(f"{field_name}_in_future", f"{field_name} is later than the wall clock allows")


def decode_labels(
    codec: Codec, raws: Sequence[Raw], latest_ms: int | None = None
) -> tuple[LabelRows, list[Rejected]]:
    rows = LabelRows([], [], [], [], [])
    rejected: list[Rejected] = []
    for raw in raws:
        try:
            rec = codec.decode(LABEL, raw.value)
            if rec["label_time"] < 0:
                raise _Invalid("label_time_out_of_range", "label_time is before 1970")
            _check_time(rec["label_time"], latest_ms, "label_time")
            if not rec["txn_id"]:
                raise _Invalid("missing_txn_id", "txn_id is empty")
        except DecodeError as exc:
            rejected.append(Rejected(raw, "DecodeError", str(exc.reason), exc.detail))
            continue
        except _Invalid as exc:
            rejected.append(Rejected(raw, "ValidationError", exc.reason, exc.detail))
            continue
        rows.txn_id.append(rec["txn_id"])
        rows.label_ms.append(int(rec["label_time"]))
        rows.is_fraud.append(bool(rec["is_fraud"]))
        rows.partition.append(raw.partition)
        rows.offset.append(raw.offset)
    return rows, rejected
