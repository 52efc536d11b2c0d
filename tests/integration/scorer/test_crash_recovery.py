"""kill -9 the scorer at seeded random points while transactions stream in, restart it
each time: afterwards every transaction has exactly one committed score and the Redis
features equal an offline recomputation (nothing counted twice, nothing missed).

Scale: the issue's 50,000 transactions and 5 kills; about a minute on two cores (each
restart waits out the killed member's session, 10 s in these tests).
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from confluent_kafka import Producer

from services.scorer.cli import transactional_id
from tests.helpers import wait_until
from tests.integration.scorer.conftest import ScorerEnv, assert_features_match_offline, make_transactions

N = 50_000
KILLS = 5
STREAM_CHUNK = 500
STREAM_RATE = 2_000  # transactions per second offered while the scorer dies and restarts
RECREATED = "fraudstream_scorer_producer_recreated_total"


def test_kill_9_five_times_loses_and_duplicates_nothing(scorer_env: ScorerEnv, tmp_path: Path) -> None:
    rng = random.Random(20260101)
    txns = make_transactions(N, seed=81, cards=500, merchants=60)
    streamed = threading.Event()
    failure: list[BaseException] = []

    def stream() -> None:
        # Transactions keep arriving, at a steady rate, while the scorer dies and restarts.
        began = time.monotonic()
        try:
            for start in range(0, N, STREAM_CHUNK):
                streamed.wait(max(0.0, began + start / STREAM_RATE - time.monotonic()))  # pacing
                scorer_env.produce(txns[start : start + STREAM_CHUNK])
        except BaseException as exc:
            failure.append(exc)
        finally:
            streamed.set()

    producer = threading.Thread(target=stream, name="stream", daemon=True)
    producer.start()
    log = tmp_path / "scorer.log"
    kills_at: list[int] = []
    for _ in range(KILLS):
        proc = scorer_env.spawn(log, batch_max_records=rng.choice([100, 250, 500]))
        try:
            start = max(scorer_env.committed(), 0)
            # Let it make some progress, then kill it in the middle of whatever it does.
            target = min(N - 1, start + rng.randint(300, 3000))

            def progressed(target: int = target, proc: subprocess.Popen[bytes] = proc) -> bool:
                assert proc.poll() is None, log.read_text()[-3000:]
                return scorer_env.committed() >= target

            wait_until(progressed, timeout=120, interval=0.01)
            kills_at.append(scorer_env.committed())
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    assert len(kills_at) == KILLS and kills_at == sorted(kills_at)
    assert kills_at[-1] < N, "every kill must land before the end of the stream"

    final = scorer_env.spawn(log)
    try:
        producer.join(timeout=120)
        assert streamed.is_set() and not failure, failure
        scorer_env.wait_committed(N, lambda: final.poll() is None, timeout=180)
        final.send_signal(signal.SIGTERM)
        assert final.wait(timeout=60) == 0
    finally:
        if final.poll() is None:
            final.kill()
            final.wait()

    scores = scorer_env.scores_by_txn(N, timeout=120)
    missing = [t["txn_id"] for t in txns if t["txn_id"] not in scores]
    twice = [k for k, v in scores.items() if len(v) > 1]
    assert not missing, f"{len(missing)} transactions never scored"
    assert not twice, f"{len(twice)} transactions scored more than once"
    assert len(scores) == N
    assert_features_match_offline(scorer_env, txns, scores)


def test_a_fenced_producer_is_replaced_and_its_batch_redone(scorer_env: ScorerEnv) -> None:
    """A zombie with the scorer's transactional.id fences it three times, each time with
    an open transaction holding a junk score: the scorer replaces its producer (which
    aborts the zombie's transaction), redoes the batch, and exactly-once holds."""
    txns = make_transactions(3000, seed=83)
    chunks = [txns[i : i + 750] for i in range(0, len(txns), 750)]
    sc = scorer_env.start_thread(batch_max_records=50)
    txn_id = transactional_id("test-scorer", scorer_env.group, socket.gethostname(), 0)
    try:
        scorer_env.produce(chunks[0])
        scorer_env.wait_committed(len(chunks[0]), lambda: sc.running)
        done = len(chunks[0])
        for round_, chunk in enumerate(chunks[1:], start=1):
            zombie = Producer({"bootstrap.servers": scorer_env.bootstrap, "transactional.id": txn_id})
            zombie.init_transactions(30)  # bumps the epoch: the scorer's producer is fenced
            zombie.begin_transaction()
            zombie.produce(scorer_env.scores, key=b"junk", value=b"never committed")
            zombie.flush(10)
            scorer_env.produce(chunk)
            done += len(chunk)
            wait_until(lambda r=round_: sc.metric(RECREATED) >= r, timeout=60)  # type: ignore[misc]
            scorer_env.wait_committed(done, lambda: sc.running, timeout=60)
            zombie.purge()
            del zombie
        assert sc.metric("fraudstream_scorer_batch_retries_total", {"cause": "fatal"}) >= 3
    finally:
        assert sc.close() == 0
    scores = scorer_env.scores_by_txn(len(txns))
    assert len(scores) == len(txns) and all(len(v) == 1 for v in scores.values())
    assert all(m.key() != b"junk" for m in scorer_env.read(scorer_env.scores, len(txns)))
