from __future__ import annotations

import numpy as np

from services.core.labels import join_labels, known_labels, last_label_time

DAY = 86_400_000


def label(txn_id: str, at: int, fraud: bool, source: str = "CHARGEBACK") -> dict[str, object]:
    return {"txn_id": txn_id, "card_id": "c", "is_fraud": fraud, "label_time": at, "source": source}


def test_label_after_cutoff_does_not_mark_a_row_fraud() -> None:
    labels = [label("t1", 10 * DAY, True), label("t2", 10 * DAY + 1, True)]
    joined = join_labels(["t1", "t2", "t3"], labels, cutoff_ms=10 * DAY)
    assert list(joined.is_fraud) == [True, False, False]
    assert list(joined.known) == [True, False, False]
    assert joined.n_fraud == 1 and joined.n_known == 1


def test_everything_known_at_a_late_cutoff() -> None:
    labels = [label("t1", 10 * DAY, True), label("t2", 20 * DAY, True)]
    joined = join_labels(["t1", "t2"], labels, cutoff_ms=30 * DAY)
    assert joined.is_fraud.tolist() == [True, True]


def test_latest_known_label_wins() -> None:
    labels = [label("t1", 1 * DAY, True), label("t1", 5 * DAY, False, "CLEARED")]
    assert known_labels(labels, 3 * DAY) == {"t1": True}
    assert known_labels(labels, 5 * DAY) == {"t1": False}


def test_same_time_conflict_is_fraud_whatever_the_order() -> None:
    a = [label("t1", DAY, False, "CLEARED"), label("t1", DAY, True)]
    assert known_labels(a, DAY) == {"t1": True}
    assert known_labels(list(reversed(a)), DAY) == {"t1": True}


def test_cleared_label_is_known_but_not_fraud() -> None:
    joined = join_labels(["t1"], [label("t1", DAY, False, "CLEARED")], cutoff_ms=DAY)
    assert joined.known.tolist() == [True]
    assert joined.is_fraud.tolist() == [False]


def test_empty_inputs() -> None:
    joined = join_labels([], [], cutoff_ms=0)
    assert joined.is_fraud.dtype == np.bool_ and joined.is_fraud.size == 0
    assert last_label_time([]) is None
    assert last_label_time([label("a", 3, True), label("b", 7, False)]) == 7
