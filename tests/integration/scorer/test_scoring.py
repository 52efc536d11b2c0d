"""The scorer end to end on a real broker and Redis: one score per transaction, the
model's identity on every score, metrics, hot swap, shadow scores, clean SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.registry import Registry
from tests.helpers import wait_until
from tests.helpers_models import FRAUD_AMOUNT, register_model
from tests.integration.scorer.conftest import ScorerEnv, assert_features_match_offline, make_transactions

ROOT = Path(__file__).resolve().parents[3]
DECISIONS = ("ALLOW", "REVIEW", "BLOCK")


def scored_total(sc: object) -> float:
    return sum(sc.metric("fraudstream_scorer_records_scored_total", {"decision": d}) for d in DECISIONS)  # type: ignore[attr-defined]


@pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])
def test_every_transaction_gets_exactly_one_score(scorer_env: ScorerEnv, delivery: str) -> None:
    txns = make_transactions(3000, seed=11)
    scorer_env.produce(txns)
    sc = scorer_env.start_thread(delivery=delivery, batch_max_records=200)
    try:
        scorer_env.wait_committed(len(txns), lambda: sc.running, timeout=120)
        assert sc.running
        # Metrics of a healthy run.
        assert sc.metric("fraudstream_scorer_records_consumed_total") == len(txns)
        assert scored_total(sc) == len(txns)
        assert sc.metric("fraudstream_scorer_redis_up") == 1
        assert sc.metric("fraudstream_scorer_kafka_up") == 1
        batches = sc.metric("fraudstream_scorer_batches_total")
        assert batches >= len(txns) / 200
        assert sc.metric("fraudstream_scorer_batch_size_records_sum") == len(txns)
        assert sc.metric("fraudstream_scorer_consume_to_score_latency_seconds_count") == len(txns)
        assert sc.metric("fraudstream_scorer_event_to_score_latency_seconds_count") == len(txns)
        wait_until(
            lambda: all(
                sc.registry.get_sample_value("fraudstream_scorer_consumer_lag_records", {"partition": str(p)})
                == 0
                for p in range(scorer_env.partitions)
            ),
            timeout=30,
            message="lag gauges at 0 for every partition",
        )
    finally:
        assert sc.close() == 0

    scores = scorer_env.scores_by_txn(len(txns))
    assert sorted(scores) == sorted(t["txn_id"] for t in txns)
    assert all(len(v) == 1 for v in scores.values()), "a transaction was scored twice"
    champion = Registry(scorer_env.registry).resolve("fraud@champion")
    for txn in txns:
        [score] = scores[txn["txn_id"]]
        assert (score["card_id"], score["event_time"]) == (txn["card_id"], txn["event_time"])
        assert score["model_version"] == champion.version
        assert score["model_sha256"] == champion.manifest()["model_sha256"]
        big = txn["amount"] > FRAUD_AMOUNT + 20
        small = txn["amount"] < FRAUD_AMOUNT - 20
        if big:
            assert score["decision"] == "BLOCK" and score["reason_codes"][0] == "large amount"
        if small:
            assert score["decision"] == "ALLOW" and score["reason_codes"] == []
    assert_features_match_offline(scorer_env, txns, scores)


def test_hot_swap_serves_new_champion_and_rejects_a_bad_one(scorer_env: ScorerEnv) -> None:
    sc = scorer_env.start_thread()
    try:
        first = make_transactions(200, seed=21, prefix="a")
        scorer_env.produce(first)
        scorer_env.wait_committed(200, lambda: sc.running, timeout=60)
        v2 = register_model(scorer_env.registry, seed=7, promote=True)
        wait_until(
            lambda: sc.metric("fraudstream_scorer_model_reloads_total", {"outcome": "loaded"}) == 1,
            timeout=30,
        )
        second = make_transactions(200, seed=22, prefix="b", start_ms=first[-1]["event_time"] + 1000)
        scorer_env.produce(second)
        scorer_env.wait_committed(400, lambda: sc.running, timeout=60)
        bad = register_model(scorer_env.registry, seed=8, promote=True)
        bad.model_path.write_text(bad.model_path.read_text() + "\n")  # sha256 no longer matches
        wait_until(
            lambda: sc.metric("fraudstream_scorer_model_reloads_total", {"outcome": "rejected"}) == 1,
            timeout=30,
        )
        third = make_transactions(200, seed=23, prefix="c", start_ms=second[-1]["event_time"] + 1000)
        scorer_env.produce(third)
        scorer_env.wait_committed(600, lambda: sc.running, timeout=60)
        assert sc.running
    finally:
        assert sc.close() == 0
    scores = scorer_env.scores_by_txn(600)
    versions = {prefix: {scores[t["txn_id"]][0]["model_version"] for t in batch}
                for prefix, batch in (("a", first), ("b", second), ("c", third))}  # fmt: skip
    assert versions == {"a": {"1"}, "b": {v2.version}, "c": {v2.version}}


def test_shadow_scores_from_the_challenger(scorer_env: ScorerEnv) -> None:
    challenger = register_model(scorer_env.registry, seed=9)  # staged as challenger
    txns = make_transactions(300, seed=31)
    scorer_env.produce(txns)
    sc = scorer_env.start_thread(shadow=True)
    try:
        scorer_env.wait_committed(len(txns), lambda: sc.running, timeout=60)
        assert sc.metric("fraudstream_scorer_shadow_scores_total") == len(txns)
    finally:
        assert sc.close() == 0
    shadows: dict[str, int] = {}
    for msg in scorer_env.read(scorer_env.scores, 2 * len(txns)):
        score = scorer_env.codec.decode("Score", msg.value())
        if score["shadow"]:
            assert score["model_version"] == challenger.version
            shadows[score["txn_id"]] = shadows.get(score["txn_id"], 0) + 1
    assert shadows == {t["txn_id"]: 1 for t in txns}


def test_sigterm_commits_and_exits_zero(scorer_env: ScorerEnv, tmp_path: Path) -> None:
    txns = make_transactions(500, seed=41)
    scorer_env.produce(txns)
    log = tmp_path / "scorer.log"
    proc = scorer_env.spawn(log)
    try:
        scorer_env.wait_committed(len(txns), lambda: proc.poll() is None, timeout=90)
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "received SIGTERM" in log.read_text()
    assert len(scorer_env.scores_by_txn(len(txns))) == len(txns)


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "scorer", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_refuses_to_start_on_a_model_for_other_features(scorer_env: ScorerEnv, tmp_path: Path) -> None:
    other = tmp_path / "other-models"
    register_model(other, feature_set_fingerprint="f" * 64)
    done = run_cli(scorer_env.cli_args(registry=other))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("fraudstream scorer: error: cannot serve fraud@champion:")
    assert "fingerprint" in lines[-1] and "Traceback" not in done.stderr


def test_refuses_to_start_without_topics(scorer_env: ScorerEnv) -> None:
    done = run_cli(scorer_env.cli_args(topic_prefix="no-such-prefix."))
    assert done.returncode == 2
    assert "topic no-such-prefix.transactions does not exist" in done.stderr
    assert "Traceback" not in done.stderr
