"""Late, partial and noisy labels, the way a card issuer learns about fraud.

Label policy (also written into the manifest):

* Fraud is reported per episode: the cardholder disputes all of an attack's payments
  at once, ``CHARGEBACK`` with ``is_fraud=True``, after the episode's last payment plus
  a lognormal delay (median 21 days, sigma 0.75: about 8% arrive after 60 days) plus a
  few hours of jitter per payment.
* Some episodes are never reported (tiny card tests go unnoticed most): the shares in
  :data:`NEVER_REPORTED` give about 15% of fraud payments overall. Those payments never
  get a label; absence of a label is *not* proof of legitimacy.
* Half the account takeovers are ``CONFIRMED`` fast (median 2 days) when the customer
  calls in; they get that label instead of a chargeback.
* False disputes: a small share of legit payments (:data:`FALSE_DISPUTE_RATE`) is
  disputed anyway. The issuer first records a ``CHARGEBACK`` with ``is_fraud=True``
  (it cannot tell yet: label noise); for 60% of them a review later issues a second
  label ``is_fraud=False`` with source ``FALSE_DISPUTE``, 10-45 days after the first.
  So a transaction can have two labels: **the one with the later label_time wins**.
* There are no bulk ``CLEARED`` labels: a payment without label is presumed legit once
  it is old enough.
* Every label_time is >= its event_time. Labels whose label_time falls after the data
  set's last day are kept: a replay that runs past the end needs them, and a trainer
  must filter ``label_time <= cutoff`` anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from services.generator import catalog as cat
from services.generator.frame import PATTERN_NAMES, Txns

SOURCES = ("CHARGEBACK", "CONFIRMED", "FALSE_DISPUTE")
CHARGEBACK, CONFIRMED, FALSE_DISPUTE = range(3)

CHARGEBACK_MEDIAN_DAYS = 21.0
CHARGEBACK_SIGMA = 0.75
CONFIRMED_MEDIAN_DAYS = 2.0
CONFIRMED_SIGMA = 0.5
CONFIRMED_ATO_SHARE = 0.5
FALSE_DISPUTE_RATE = 0.0005
FALSE_DISPUTE_REVERSED_SHARE = 0.6
REVIEW_DAYS = (10.0, 45.0)
NEVER_REPORTED: dict[str, float] = {
    "card_testing": 0.30,
    "ato": 0.05,
    "compromised_merchant": 0.10,
    "opportunistic": 0.20,
    "low_and_slow": 0.25,
}


@dataclass(frozen=True)
class Labels:
    txn: np.ndarray  # int64 index of the labelled transaction
    is_fraud: np.ndarray  # bool
    label_time: np.ndarray  # int64 epoch ms
    source: np.ndarray  # int8 index into SOURCES

    def __len__(self) -> int:
        return int(self.txn.shape[0])


def policy() -> dict[str, Any]:
    """The label policy's numbers, for the manifest."""
    return {
        "chargeback_delay": {
            "distribution": "lognormal",
            "median_days": CHARGEBACK_MEDIAN_DAYS,
            "sigma": CHARGEBACK_SIGMA,
            "from": "last payment of the fraud episode",
        },
        "confirmed_ato_share": CONFIRMED_ATO_SHARE,
        "confirmed_delay": {"median_days": CONFIRMED_MEDIAN_DAYS, "sigma": CONFIRMED_SIGMA},
        "never_reported_share_by_pattern": NEVER_REPORTED,
        "false_dispute_rate": FALSE_DISPUTE_RATE,
        "false_dispute_reversed_share": FALSE_DISPUTE_REVERSED_SHARE,
        "latest_label_wins": True,
        "labels_after_end_kept": True,
        "no_label_means": "presumed legit (or unreported fraud)",
    }


def _days_ms(days: np.ndarray) -> np.ndarray:
    return np.asarray((days * cat.DAY_MS).astype(np.int64))


def make_labels(txns: Txns, rng: np.random.Generator) -> Labels:
    """Labels for ``txns`` (index = position in ``txns``), sorted by (label_time, txn)."""
    fraud = np.flatnonzero(txns.is_fraud)
    parts = [_fraud_labels(txns, fraud, rng), *_false_dispute_labels(txns, rng)]
    txn = np.concatenate([p.txn for p in parts])
    label_time = np.concatenate([p.label_time for p in parts])
    order = np.lexsort((txn, label_time))
    return Labels(
        txn=txn[order],
        is_fraud=np.concatenate([p.is_fraud for p in parts])[order],
        label_time=label_time[order],
        source=np.concatenate([p.source for p in parts])[order],
    )


def _fraud_labels(txns: Txns, fraud: np.ndarray, rng: np.random.Generator) -> Labels:
    n_episodes = int(txns.episode[fraud].max()) + 1 if fraud.size else 0
    ep = txns.episode[fraud]
    episode_end = np.zeros(n_episodes, dtype=np.int64)
    np.maximum.at(episode_end, ep, txns.time_ms[fraud])
    episode_pattern = np.zeros(n_episodes, dtype=np.int8)
    episode_pattern[ep] = txns.pattern[fraud]
    never_share = np.array([NEVER_REPORTED.get(p, 0.0) for p in PATTERN_NAMES])
    reported = rng.random(n_episodes) >= never_share[episode_pattern]
    confirmed = (rng.random(n_episodes) < CONFIRMED_ATO_SHARE) & (
        episode_pattern == PATTERN_NAMES.index("ato")
    )
    chargeback_delay = _days_ms(rng.lognormal(np.log(CHARGEBACK_MEDIAN_DAYS), CHARGEBACK_SIGMA, n_episodes))
    confirmed_delay = _days_ms(rng.lognormal(np.log(CONFIRMED_MEDIAN_DAYS), CONFIRMED_SIGMA, n_episodes))
    delay = np.where(confirmed, confirmed_delay, chargeback_delay)
    jitter = rng.integers(0, 6 * cat.HOUR_MS, fraud.size)
    keep = reported[ep]
    return Labels(
        txn=fraud[keep].astype(np.int64),
        is_fraud=np.ones(int(keep.sum()), dtype=bool),
        label_time=(episode_end[ep] + delay[ep] + jitter)[keep],
        source=np.where(confirmed[ep], CONFIRMED, CHARGEBACK)[keep].astype(np.int8),
    )


def _false_dispute_labels(txns: Txns, rng: np.random.Generator) -> tuple[Labels, Labels]:
    legit = np.flatnonzero(~txns.is_fraud)
    disputed = legit[rng.random(legit.size) < FALSE_DISPUTE_RATE].astype(np.int64)
    n = disputed.size
    filed = txns.time_ms[disputed] + _days_ms(
        rng.lognormal(np.log(CHARGEBACK_MEDIAN_DAYS), CHARGEBACK_SIGMA, n)
    )
    reversed_ = rng.random(n) < FALSE_DISPUTE_REVERSED_SHARE
    reviewed = filed + _days_ms(rng.uniform(*REVIEW_DAYS, n))
    first = Labels(disputed, np.ones(n, dtype=bool), filed, np.full(n, CHARGEBACK, np.int8))
    k = int(reversed_.sum())
    second = Labels(
        disputed[reversed_],
        np.zeros(k, dtype=bool),
        reviewed[reversed_],
        np.full(k, FALSE_DISPUTE, np.int8),
    )
    return first, second
