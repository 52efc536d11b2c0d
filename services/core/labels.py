"""Leak-free labels: what was known about each transaction at a given moment.

Fraud labels arrive days or weeks after the transaction (chargebacks, confirmations,
cleared disputes). A label is *known at cutoff T* iff ``label_time <= T``. When a
transaction has several labels known at T, the latest one wins (a cleared dispute
overrides the earlier chargeback); labels with the same ``label_time`` are ordered by
``is_fraud`` so that fraud wins the tie, whatever order the records came in.

``known_labels(labels, T)`` is the only way the trainer looks at labels, so a label
that arrives after T can never mark a row fraud. Rows without a known label are
"unknown"; the trainer treats them as legitimate (the standard choice: the vast
majority are, and waiting for every label would delay training for weeks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LabelJoin:
    """Labels aligned to rows: ``is_fraud[i]`` is the known label (False if unknown)."""

    is_fraud: np.ndarray  # bool
    known: np.ndarray  # bool: a label had arrived by the cutoff
    cutoff_ms: int

    @property
    def n_known(self) -> int:
        return int(self.known.sum())

    @property
    def n_fraud(self) -> int:
        return int(self.is_fraud.sum())


def known_labels(labels: Iterable[Mapping[str, Any]], cutoff_ms: int) -> dict[str, bool]:
    """``txn_id -> is_fraud`` of the latest label per transaction with label_time <= cutoff."""
    latest: dict[str, tuple[int, bool]] = {}
    for label in labels:
        at = int(label["label_time"])
        if at > cutoff_ms:
            continue
        key = (at, bool(label["is_fraud"]))
        txn_id = str(label["txn_id"])
        seen = latest.get(txn_id)
        if seen is None or key > seen:
            latest[txn_id] = key
    return {txn_id: fraud for txn_id, (_, fraud) in latest.items()}


def join_labels(txn_ids: Sequence[str], labels: Iterable[Mapping[str, Any]], cutoff_ms: int) -> LabelJoin:
    """Align the labels known at ``cutoff_ms`` to ``txn_ids`` (unknown = not fraud)."""
    known_map = known_labels(labels, cutoff_ms)
    known = np.fromiter((t in known_map for t in txn_ids), dtype=bool, count=len(txn_ids))
    fraud = np.fromiter((known_map.get(t, False) for t in txn_ids), dtype=bool, count=len(txn_ids))
    return LabelJoin(is_fraud=fraud, known=known, cutoff_ms=int(cutoff_ms))


def last_label_time(labels: Iterable[Mapping[str, Any]]) -> int | None:
    """The latest label_time in the stream (the cutoff "everything known"), or None."""
    times = [int(label["label_time"]) for label in labels]
    return max(times) if times else None
