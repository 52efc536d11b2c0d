"""Redis frozen for 20 s mid-stream: the scorer pauses, keeps its partitions, emits no
score without features, loses nothing and drains the lag once Redis is back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import wait_until
from tests.integration.scorer.conftest import ScorerEnv, assert_features_match_offline, make_transactions

OUTAGE_S = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of this test alone (never the shared one: it gets SIGSTOP)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    try:
        wait_until(ready, timeout=20, message="own redis-server answers PING")
        yield proc, url
    finally:
        client.close()
        os.kill(proc.pid, signal.SIGCONT)  # in case the test failed while it was stopped
        proc.terminate()
        proc.wait(timeout=20)


def test_redis_outage_pauses_and_recovers_without_loss(
    scorer_env: ScorerEnv, own_redis: tuple[subprocess.Popen[bytes], str]
) -> None:
    proc, url = own_redis
    before = make_transactions(1000, seed=71)
    during = make_transactions(1000, seed=72, start_ms=before[-1]["event_time"] + 1000)
    scorer_env.produce(before)
    # A short max.poll.interval: a loop that stopped polling while waiting would be thrown
    # out of the group (a "revoked"/"lost" event) long before Redis comes back.
    sc = scorer_env.start_thread(redis_url=url, max_poll_interval_ms=10_000)
    try:
        scorer_env.wait_committed(len(before), lambda: sc.running, timeout=60)
        assigned = sc.metric("fraudstream_scorer_rebalance_events_total", {"kind": "assigned"})
        os.kill(proc.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            scorer_env.produce(during)
            wait_until(lambda: sc.metric("fraudstream_scorer_redis_up") == 0, timeout=30)

            def outage_held_and_nothing_committed() -> bool:
                assert scorer_env.committed() == len(before), "committed without features"
                return time.monotonic() - stopped_at >= OUTAGE_S

            wait_until(outage_held_and_nothing_committed, timeout=OUTAGE_S + 10, interval=1.0)
            assert sc.metric("fraudstream_scorer_batch_retries_total", {"cause": "redis"}) >= 3
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        scorer_env.wait_committed(len(before) + len(during), lambda: sc.running, timeout=60)
        wait_until(lambda: sc.metric("fraudstream_scorer_redis_up") == 1, timeout=10)
        wait_until(
            lambda: all(
                sc.registry.get_sample_value("fraudstream_scorer_consumer_lag_records", {"partition": str(p)})
                == 0
                for p in range(scorer_env.partitions)
            ),
            timeout=30,
            message="the lag drains",
        )
        assert sc.running, "the scorer must ride out the outage without a restart"
        for kind in ("revoked", "lost"):
            assert sc.metric("fraudstream_scorer_rebalance_events_total", {"kind": kind}) == 0
        assert sc.metric("fraudstream_scorer_rebalance_events_total", {"kind": "assigned"}) == assigned
        assert (
            sum(
                sc.metric("fraudstream_scorer_records_dead_lettered_total", {"reason": r})
                for r in ("redis", "unavailable")
            )
            == 0
        )
    finally:
        assert sc.close() == 0
    txns = before + during
    scores = scorer_env.scores_by_txn(len(txns))
    assert sorted(scores) == sorted(t["txn_id"] for t in txns)
    assert all(len(v) == 1 for v in scores.values())
    assert len(scorer_env.read(scorer_env.dlq, 0, timeout=10)) == 0
    assert_features_match_offline(scorer_env, txns, scores, redis_url=url)
