"""Two scorers share the group; one is killed; the other takes over its partitions and
exactly-once still holds."""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

from tests.helpers import wait_until
from tests.integration.scorer.conftest import ScorerEnv, assert_features_match_offline, make_transactions

N = 12_000
STREAM_CHUNK = 400
STREAM_RATE = 1_000


def assigned_partitions(log: Path) -> set[int]:
    """Partitions this process holds now, from its assign/revoke log lines."""
    held: set[int] = set()
    for line in log.read_text().splitlines():
        match = re.search(r"services\.scorer\.loop: (assigned|revoked|lost) \S+?\[([\d, ]*)\]", line)
        if match:
            parts = {int(p) for p in match.group(2).split(",") if p.strip()}
            held = held | parts if match.group(1) == "assigned" else held - parts
    return held


def test_survivor_takes_over_and_exactly_once_holds(scorer_env: ScorerEnv, tmp_path: Path) -> None:
    txns = make_transactions(N, seed=91, cards=400)
    done = threading.Event()

    def stream() -> None:
        began = time.monotonic()
        for start in range(0, N, STREAM_CHUNK):
            done.wait(max(0.0, began + start / STREAM_RATE - time.monotonic()))  # pacing
            scorer_env.produce(txns[start : start + STREAM_CHUNK])
        done.set()

    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [scorer_env.spawn(logs[0])]
    producer = threading.Thread(target=stream, name="stream", daemon=True)
    try:
        wait_until(lambda: assigned_partitions(logs[0]) == {0, 1, 2, 3}, timeout=60)
        procs.append(scorer_env.spawn(logs[1]))
        producer.start()
        # Cooperative-sticky: the second one gets half the partitions, the first keeps half.
        wait_until(
            lambda: len(assigned_partitions(logs[0])) == 2 and len(assigned_partitions(logs[1])) == 2,
            timeout=60,
            message="both scorers hold two partitions",
        )
        wait_until(lambda: scorer_env.committed() >= N // 4, timeout=60)
        victim, survivor = procs
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        taken = assigned_partitions(logs[0])
        # After the session timeout the survivor owns every partition and catches up.
        wait_until(lambda: assigned_partitions(logs[1]) == {0, 1, 2, 3}, timeout=60)
        producer.join(timeout=120)
        assert done.is_set()
        scorer_env.wait_committed(N, lambda: survivor.poll() is None, timeout=120)
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    finally:
        done.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert len(taken) == 2
    scores = scorer_env.scores_by_txn(N, timeout=120)
    assert len(scores) == N and all(len(v) == 1 for v in scores.values())
    assert_features_match_offline(scorer_env, txns, scores)
