"""Late labels: heavy-tailed delays, unreported fraud, false disputes, ordering."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from services import dataset
from services.generator import catalog as cat
from services.generator.build import World
from services.generator.labels import CHARGEBACK, CONFIRMED, FALSE_DISPUTE


def test_chargeback_delays_are_heavy_tailed(fraud_heavy_world: World) -> None:
    w = fraud_heavy_world
    lab = w.labels
    fraud = lab.is_fraud & w.txns.is_fraud[lab.txn] & (lab.source == CHARGEBACK)
    delay_days = (lab.label_time[fraud] - w.txns.time_ms[lab.txn[fraud]]) / cat.DAY_MS
    assert fraud.sum() > 500
    assert 14 <= float(np.median(delay_days)) <= 28
    assert 0.02 <= float((delay_days > 60).mean()) <= 0.2
    assert float(delay_days.max()) > 90


def test_confirmed_labels_are_fast_and_only_for_account_takeover(fraud_heavy_world: World) -> None:
    w = fraud_heavy_world
    confirmed = w.labels.source == CONFIRMED
    assert confirmed.any()
    assert set(w.txns.pattern[w.labels.txn[confirmed]].tolist()) == {2}  # "ato"
    delays = (w.labels.label_time[confirmed] - w.txns.time_ms[w.labels.txn[confirmed]]) / cat.DAY_MS
    assert float(np.median(delays)) < 5


def test_some_fraud_is_never_reported(fraud_heavy_world: World) -> None:
    w = fraud_heavy_world
    fraud = np.flatnonzero(w.txns.is_fraud)
    labelled = np.isin(fraud, w.labels.txn[w.labels.is_fraud])
    never = 1.0 - float(labelled.mean())
    assert 0.08 <= never <= 0.25, never


def test_label_time_never_precedes_event_time(fraud_heavy_world: World) -> None:
    w = fraud_heavy_world
    assert np.all(w.labels.label_time >= w.txns.time_ms[w.labels.txn])
    order = np.lexsort((w.labels.txn, w.labels.label_time))
    assert np.array_equal(order, np.arange(len(w.labels)))


def test_false_disputes_are_legit_and_reversed_later(fraud_heavy_world: World) -> None:
    w = fraud_heavy_world
    lab = w.labels
    reversed_ = lab.source == FALSE_DISPUTE
    assert reversed_.any()
    assert not lab.is_fraud[reversed_].any()
    assert not w.txns.is_fraud[lab.txn[reversed_]].any()
    by_txn: dict[int, list[tuple[int, bool, int]]] = defaultdict(list)
    for i, t, f, s in zip(lab.txn, lab.label_time, lab.is_fraud, lab.source, strict=True):
        by_txn[int(i)].append((int(t), bool(f), int(s)))
    for i in lab.txn[reversed_]:
        first, last = sorted(by_txn[int(i)])
        assert first[1:] == (True, CHARGEBACK) and last[1:] == (False, FALSE_DISPUTE)
    # some false disputes stay as (noisy) fraud labels on legit payments
    noisy = lab.is_fraud & ~w.txns.is_fraud[lab.txn]
    assert noisy.sum() > reversed_.sum()


def test_labels_after_the_end_are_kept(written: Path) -> None:
    manifest = dataset.read_manifest(written)
    labels = dataset.read_labels(written)
    after = [lab for lab in labels if lab["label_time"] >= manifest["end_ms"]]
    assert after and manifest["counts"]["labels_after_end"] == len(after)
    txns = {t["txn_id"]: t for t in dataset.iter_transactions(written)}
    for lab in labels:
        assert lab["card_id"] == txns[lab["txn_id"]]["card_id"]
        assert lab["label_time"] >= txns[lab["txn_id"]]["event_time"]
