from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core import recall
from services.core.metrics import recall_at_top_fraction
from services.core.recall import DAY_MS, HOUR_MS, DelayPrior, RecallBook, TxnRecord

DAY0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


# --------------------------------------------------------------------------- merging


def test_label_before_score_then_score_joins() -> None:
    rec, outcome = recall.merge_label(None, DAY0 + 5 * DAY_MS, True)
    assert outcome == "pending" and not rec.scored
    rec, outcome = recall.merge_score(rec, DAY0, 0.9, True, "1")
    assert outcome == "joined" and rec.scored and rec.is_fraud


def test_duplicates_stale_and_later_label_wins() -> None:
    rec, _ = recall.merge_score(None, DAY0, 0.2, False, "1")
    assert recall.merge_score(rec, DAY0, 0.2, False, "1") == (rec, "duplicate")
    # A different second score: the smaller one stays, whatever the order.
    assert recall.merge_score(rec, DAY0, 0.7, True, "2") == (rec, "conflict")
    other, _ = recall.merge_score(None, DAY0, 0.7, True, "2")
    assert recall.merge_score(other, DAY0, 0.2, False, "1")[0] == rec
    rec, outcome = recall.merge_label(rec, DAY0 + 10, True)
    assert outcome == "joined"
    assert recall.merge_label(rec, DAY0 + 10, True) == (rec, "duplicate")
    assert recall.merge_label(rec, DAY0 + 5, False) == (rec, "stale")
    later, outcome = recall.merge_label(rec, DAY0 + 20, False)
    assert outcome == "updated" and later.is_fraud is False
    # Same label_time: fraud wins whatever the order.
    cleared, _ = recall.merge_label(TxnRecord(), DAY0, False)
    assert recall.merge_label(cleared, DAY0, True)[0].is_fraud is True
    fraud, _ = recall.merge_label(TxnRecord(), DAY0, True)
    assert recall.merge_label(fraud, DAY0, False)[1] == "stale"
    assert TxnRecord.from_list(later.to_list()) == later


records = st.builds(
    TxnRecord,
    st.one_of(st.none(), st.integers(0, 5)),
    st.sampled_from([0.1, 0.5]),
    st.booleans(),
    st.sampled_from(["1", "2"]),
    st.one_of(st.none(), st.integers(0, 5)),
    st.booleans(),
).map(
    lambda r: TxnRecord(
        r.event_ms,
        r.score if r.scored else None,
        r.flagged if r.scored else None,
        r.version if r.scored else None,
        r.label_ms,
        r.is_fraud if r.labelled else None,
    )
)


@given(a=records, b=records, c=records)
def test_combine_is_commutative_associative_idempotent(a: TxnRecord, b: TxnRecord, c: TxnRecord) -> None:
    assert recall.combine(a, b) == recall.combine(b, a)
    assert recall.combine(recall.combine(a, b), c) == recall.combine(a, recall.combine(b, c))
    assert recall.combine(a, a) == a


# --------------------------------------------------------------------------- cohorts


def hand_cohort() -> tuple[RecallBook, dict[str, tuple[float, bool, bool]]]:
    """20 transactions on day 0: id -> (score, flagged, fraud). Scores sit in the middle
    of their score bins, so the binned top decile is exact."""
    txns = {}
    for i in range(20):
        score = (i * 500 + 0.5) / recall.SCORE_BINS  # 0.00005, 0.05005, ...
        txns[f"t{i}"] = (score, i >= 17, i in (3, 16, 18, 19))
    book = RecallBook(horizon_days=90)
    for i, (txn_id, (score, flagged, _)) in enumerate(txns.items()):
        book.score(txn_id, DAY0 + i * HOUR_MS, score, flagged)
    for txn_id, (_, _, fraud) in txns.items():
        if fraud:
            book.label(txn_id, DAY0 + 30 * DAY_MS, True)
    return book, txns


def test_cohort_recall_and_top_decile_by_hand() -> None:
    book, txns = hand_cohort()
    [fig] = book.figures(now_ms=DAY0 + 40 * DAY_MS, min_maturity=0.8)
    assert (fig.n, fig.frauds, fig.flagged_frauds) == (20, 4, 2)
    assert fig.recall == pytest.approx(0.5)  # t18, t19 flagged; t3, t16 missed
    # Top decile of 20 = the 2 highest scores (t18, t19): both fraud -> 2 / 4.
    assert fig.top_decile_recall == pytest.approx(0.5)
    scores = np.array([v[0] for v in txns.values()])
    fraud = np.array([v[2] for v in txns.values()])
    assert fig.top_decile_recall == pytest.approx(recall_at_top_fraction(fraud, scores, 0.1))


def test_binned_top_decile_matches_exact_metric_with_ties() -> None:
    rng = np.random.default_rng(5)
    bins = rng.integers(0, 50, size=997)  # heavy ties, many in the boundary bin
    scores = (bins * 200 + 0.5) / recall.SCORE_BINS
    fraud = rng.random(997) < 0.1
    hist = np.bincount([recall.score_bin(s) for s in scores], minlength=recall.SCORE_BINS)
    fraud_hist = np.bincount([recall.score_bin(s) for s in scores[fraud]], minlength=recall.SCORE_BINS)
    captured = recall.captured_in_top(hist, fraud_hist)
    assert captured / fraud.sum() == pytest.approx(recall_at_top_fraction(fraud, scores, 0.1), abs=1e-12)


def test_figures_do_not_depend_on_arrival_order_or_duplicates() -> None:
    rng = np.random.default_rng(9)
    events: list[tuple] = []
    for i in range(300):
        t = DAY0 + int(rng.integers(0, 3 * DAY_MS))
        events.append(("score", f"t{i}", t, float(rng.random()), bool(rng.random() < 0.2)))
        if rng.random() < 0.15:
            events.append(("label", f"t{i}", t + int(rng.integers(0, 40 * DAY_MS)), True))
            if rng.random() < 0.3:  # a later reversal
                events.append(("label", f"t{i}", t + 45 * DAY_MS, False))

    def run(order: list[tuple]) -> list[recall.CohortFigures]:
        book = RecallBook(horizon_days=90)
        for ev in order:
            if ev[0] == "score":
                book.score(ev[1], ev[2], ev[3], ev[4])
            else:
                book.label(ev[1], ev[2], ev[3])
        return book.figures(DAY0 + 60 * DAY_MS, 0.8)

    reference = run(events)
    shuffled = [events[i] for i in rng.permutation(len(events))]
    doubled = events + [events[i] for i in rng.permutation(len(events))[:100]]
    assert run(shuffled) == reference
    assert run(doubled) == reference
    assert sum(f.frauds for f in reference) > 10


# --------------------------------------------------------------------------- maturity


def test_prior_only_maturity_is_the_truncated_lognormal() -> None:
    prior = DelayPrior(median_days=21.0, sigma=0.75)
    cdf = recall.delay_cdf([], [], prior, horizon_days=90)
    truncated = recall.lognormal_cdf(90, 21, 0.75)
    for day in (0, 5, 20, 21, 60, 89):
        assert cdf[day] == pytest.approx(recall.lognormal_cdf(day + 1, 21, 0.75) / truncated, rel=1e-9)
    assert cdf[-1] == 1.0
    # A cohort of transactions all at 12:00 UTC, 21 days old: about half its labels are in.
    assert recall.share_arrived(cdf, 21.0) == pytest.approx(0.5 / truncated, abs=0.005)
    book = RecallBook(horizon_days=90, prior=prior)
    book.score("a", DAY0 + 12 * HOUR_MS, 0.5, False)
    [fig] = book.figures(DAY0 + 12 * HOUR_MS + 21 * DAY_MS, 0.8)
    assert fig.maturity == pytest.approx(0.5 / truncated, abs=0.01) and not fig.mature
    [old] = book.figures(DAY0 + 200 * DAY_MS, 0.8)
    assert old.maturity == 1.0 and old.mature


def test_delay_distribution_is_learnt_from_truncated_labels() -> None:
    # True delays: lognormal, median 5 days. Cohorts 0..39 days old; a cohort only shows
    # the labels whose delay is below its age (right truncation).
    rng = np.random.default_rng(21)
    horizon = 40
    ages, hists, naive = [], [], []
    for age in range(horizon):
        delays = np.floor(rng.lognormal(math.log(5.0), 0.6, size=300)).astype(int)
        seen = delays[(delays <= age) & (delays < horizon)]
        ages.append(age)
        hists.append(np.bincount(seen, minlength=horizon))
        naive.extend(seen.tolist())
    cdf = recall.delay_cdf(ages, hists, DelayPrior(median_days=21, weight=1.0), horizon)
    truth = [
        recall.lognormal_cdf(d + 1, 5.0, 0.6) / recall.lognormal_cdf(horizon, 5.0, 0.6)
        for d in range(horizon)
    ]
    naive_cdf = np.cumsum(np.bincount(naive, minlength=horizon)) / len(naive)
    for d in (2, 4, 7, 12):
        assert cdf[d] == pytest.approx(truth[d], abs=0.03)
    assert naive_cdf[4] > truth[4] + 0.03  # ignoring truncation overstates maturity


def test_empirical_delays_make_old_cohorts_mature() -> None:
    # 60 days of traffic; every fraud label arrives 2 days late. Once cohorts older than
    # the 30-day horizon show no delay beyond 2 days, a 5-day-old cohort is mature even
    # though the prior (median 21 days) would call it young.
    book = RecallBook(horizon_days=30, prior=DelayPrior(weight=10.0))
    for day in range(60):
        for i in range(50):
            txn = f"d{day}-{i}"
            t = DAY0 + day * DAY_MS + i * 1000
            book.score(txn, t, 0.9, True)
            if i < 10:
                book.label(txn, t + 2 * DAY_MS + 3600_000, True)
    now = DAY0 + 60 * DAY_MS
    figs = {round(f.age_days): f for f in book.figures(now, min_maturity=0.8)}
    assert figs[5].maturity > 0.95 and figs[5].mature
    assert figs[1].maturity < 0.2 and not figs[1].mature
    assert figs[5].recall == 1.0
    prior_only = RecallBook(horizon_days=30, prior=DelayPrior(weight=10.0))
    prior_only.score("x", DAY0, 0.5, False)
    assert prior_only.figures(DAY0 + 5 * DAY_MS, 0.8)[0].maturity < 0.1


# --------------------------------------------------------------------------- pooling, decay


def fig(
    day: int, n: int, frauds: int, flagged: int, captured: float, maturity: float, age: float
) -> recall.CohortFigures:
    return recall.CohortFigures(
        DAY0 + day * DAY_MS, age, n, frauds, flagged, captured, maturity, maturity >= 0.8
    )


def test_age_buckets_and_pooling() -> None:
    assert [recall.age_bucket(a) for a in (0, 6.9, 7, 29, 30, 59.9, 60, 400)] == [
        "0-7d",
        "0-7d",
        "7-30d",
        "7-30d",
        "30-60d",
        "30-60d",
        "60d+",
        "60d+",
    ]
    figs = [
        fig(0, 100, 10, 5, 6.0, 0.9, 40),
        fig(1, 300, 10, 8, 7.0, 0.85, 39),
        fig(30, 100, 2, 1, 1.0, 0.1, 10),
    ]
    groups = recall.by_age_bucket(figs)
    assert set(groups) == {("30-60d", "mature"), ("7-30d", "provisional")}
    mature = groups[("30-60d", "mature")]
    assert (mature.frauds, mature.recall, mature.top_decile_recall) == (20, 0.65, 0.65)
    assert mature.maturity == pytest.approx((0.9 * 100 + 0.85 * 300) / 400)


def test_baseline_and_decay_candidate() -> None:
    metrics = {"test": {"label_based": {"recall_at_review_threshold": 0.7, "recall_at_top_decile": 0.9}}}
    base = recall.baseline_from_manifest(metrics)
    assert base == recall.Baseline("recall", 0.7)
    assert recall.baseline_from_manifest({"test": {"recall_at_top_decile": 0.8}}) == recall.Baseline(
        "top_decile_recall", 0.8
    )
    assert recall.baseline_from_manifest({}) is None
    figs = [fig(d, 1000, 10, 5, 9.0, 0.95, 60 - d) for d in range(10)] + [fig(30, 1000, 10, 9, 9.0, 0.2, 30)]
    pooled = recall.recent_mature(figs, pool_days=7)
    assert pooled.cohorts == 7 and pooled.first_day_ms == DAY0 + 3 * DAY_MS and pooled.recall == 0.5
    assert recall.decay_candidate(pooled, base, margin=0.1, min_frauds=20)
    assert not recall.decay_candidate(pooled, base, margin=0.3, min_frauds=20)
    assert not recall.decay_candidate(pooled, base, margin=0.1, min_frauds=100)
