"""Benchmark the feature path: offline build throughput and online (Redis) store throughput.

    python -m bench.features --out bench-features.json [--rows 1000000] [--online-rows 50000]
        [--cards 50000] [--dense-cards 20000]

Offline: ``services.featurebuild.build.build_features`` (what ``train`` and ``backtest``
run) over a seeded synthetic stream with realistic cardinalities (50k cards, 2k
merchants, 30 days, skew and favourite merchants as in the data generator, ~1% late
events, ~0.1% redelivered duplicates), built beforehand so record creation is not timed.
Runs: two processes (the headline: the stage process takes the merchant half and 30% of
the cards), one process, and a dense stream on two processes: cost per row grows with a
card's kept events (up to ``CARD_WINDOW_CAP``), so a stream of very busy cards is slower
(20k cards, 50 transactions per card a month). Rows per second of wall time, and per CPU second (both
processes); on a shared machine the wall figure also measures the neighbours.

Online: ``OnlineFeatureStore.process_batch`` in batches of ``--batch`` against a
redis-server this command starts on a free port (or ``FRAUDSTREAM_REDIS_URL``, in a
throw-away namespace), wall time, so Redis' own work and the round trips count; also the
CPU time per transaction of this process (client) and of redis-server (from ``INFO cpu``,
which counts every client of a shared server), which a busy machine inflates less than
wall time. The online vectors are checked bit for bit against the offline ones for the
same rows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.timing import cpu_seconds, peak_rss_mib, rss_mib
from services.core.features import N_FEATURES, pack_vector
from services.core.offline import build_features as reference_build
from services.featurebuild.build import FeatureBuild
from services.online import OnlineFeatureStore

START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
DAY_MS = 86_400_000
CHUNK = 100_000
# 1M rows over 50k cards in 30 days is 20 transactions per card a month, twice the
# density of `fraudstream generate`'s world; the dense run (20k cards, 50 a month)
# shows how the cost grows with a card's kept events.
CARDS = 50_000
DENSE_CARDS = 20_000
OFFLINE_TARGET = 50_000  # rows/s, issue #3


def synthetic_stream(
    rows: int, seed: int, cards: int = 20_000, merchants: int = 2_000, days: int = 30
) -> Iterator[dict[str, Any]]:
    """Seeded transactions in arrival order; skewed card and merchant activity."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.integers(0, days * DAY_MS, rows)) + START_MS
    late = rng.random(rows) < 0.01
    delay = np.where(late, rng.integers(1_000, 6 * 3_600_000, rows), 0)
    # Activity skew as in services/generator/world.py: gamma card rates, lognormal merchants.
    card_p = rng.gamma(2.0, 1.0, cards)
    merchant_p = rng.lognormal(0.0, 1.1, merchants)
    card = rng.choice(cards, rows, p=card_p / card_p.sum())
    merchant = rng.choice(merchants, rows, p=merchant_p / merchant_p.sum())
    # Most of a card's payments go to a handful of favourite merchants (as in the generator).
    favourites = rng.choice(merchants, (cards, 5), p=merchant_p / merchant_p.sum())
    use_favourite = rng.random(rows) < 0.7
    merchant = np.where(use_favourite, favourites[card, rng.integers(0, 5, rows)], merchant)
    amount = np.round(rng.lognormal(3.2, 1.0, rows), 2) + 0.01
    mcc = rng.choice([5411, 5812, 5999, 4829, 7995, 5732, 5541, 4511], merchants)
    channel = rng.choice(
        ["POS", "ECOM", "ATM", "MOTO", "UNKNOWN"], merchants, p=[0.55, 0.3, 0.08, 0.04, 0.03]
    )
    country = rng.choice(
        ["DE", "FR", "NL", "ES", "IT", "US", "GB"], merchants, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05]
    )
    duplicate = rng.random(rows) < 0.001
    previous: dict[str, Any] | None = None
    for i in range(rows):
        if duplicate[i] and previous is not None:
            yield dict(previous)
            continue
        m, c = int(merchant[i]), int(card[i])
        ch = str(channel[m])
        previous = {
            "txn_id": f"t-{seed}-{i:09d}",
            "card_id": f"card-{c:06d}",
            "merchant_id": f"m-{m:05d}",
            "mcc": int(mcc[m]),
            "amount": float(amount[i]),
            "currency": "EUR",
            "country": str(country[m]),
            "channel": ch,
            "device_id": f"dev-{c:06d}" if ch == "ECOM" else None,
            "event_time": int(arrival[i] - delay[i]),
        }
        yield previous


def bench_offline(rows: int, seed: int, cards: int = CARDS, processes: int = 2) -> dict[str, Any]:
    """``build_features`` over the whole stream, built beforehand (record creation is not
    timed). Wall time is the headline; CPU time counts both processes."""
    records = list(synthetic_stream(rows, seed, cards=cards))
    rss_before = rss_mib()
    gc.collect()
    t0, w0 = cpu_seconds(), time.perf_counter()
    build = FeatureBuild.on(processes)
    frame = build.run(iter(records))
    wall = time.perf_counter() - w0
    cpu = cpu_seconds() - t0
    assert frame.X.shape == (rows, N_FEATURES)
    return {
        "rows": rows,
        "processes": processes,
        "tx_per_card_per_30_days": round(rows / cards, 1),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "rows_per_wall_s": round(rows / wall),
        "rows_per_cpu_s": round(rows / cpu),
        "cards": len(set(frame.card_ids)),
        "build_peak_rss_growth_mib": round(max(0.0, peak_rss_mib() - rss_before)),
        "stage_peak_rss_mib": None if build.stage_peak_rss_mib is None else round(build.stage_peak_rss_mib),
    }


def bench_online(client: redis.Redis, rows: int, batch: int, seed: int) -> dict[str, Any]:
    records = list(synthetic_stream(rows, seed))
    expected = [pack_vector(v) for v in reference_build(records).X.tolist()]
    store = OnlineFeatureStore(client, f"bench-{uuid.uuid4().hex[:12]}")
    latencies = []
    got: list[bytes] = []
    try:
        redis_cpu0 = redis_cpu_s(client)
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(records), batch):
            b0 = time.perf_counter()
            vectors = store.process_batch(records[start : start + batch])
            latencies.append(time.perf_counter() - b0)
            got += (pack_vector(v) for v in vectors)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        redis_cpu = redis_cpu_s(client) - redis_cpu0
        memory = int(client.info("memory")["used_memory"])
    finally:
        store.reset()
    ms = np.array(latencies) * 1e3
    return {
        "rows": rows,
        "batch": batch,
        "wall_s": round(wall, 3),
        "txn_per_s": round(rows / wall),
        "client_cpu_share": round(cpu / wall, 2),
        "client_cpu_us_per_txn": round(cpu / rows * 1e6, 1),
        "redis_cpu_us_per_txn": round(redis_cpu / rows * 1e6, 1),
        "batch_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "batch_ms_p99": round(float(np.percentile(ms, 99)), 2),
        "redis_used_memory_mib": round(memory / 2**20, 1),
        "parity_with_offline": got == expected,
    }


def redis_cpu_s(client: redis.Redis) -> float:
    """CPU seconds the redis-server process has used (all its clients: exact only on the
    private server this command starts)."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def redis_server(url: str | None) -> Iterator[redis.Redis]:
    """A client on ``url``, or on a private redis-server started (and stopped) here."""
    if url:
        client = redis.Redis.from_url(url)
        try:
            yield client
        finally:
            client.close()
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found; install it or set FRAUDSTREAM_REDIS_URL")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.05)
            yield client
        finally:
            client.close()
            proc.terminate()
            proc.wait(timeout=10)


def table(result: dict[str, Any]) -> str:
    on = result["online"]
    offline = [
        ("offline", result["offline"]),
        ("1 proc", result.get("offline_one_process")),
        ("dense", result.get("offline_dense")),
    ]
    return "\n".join(
        [
            f"{'path':<8} {'rows':>9} {'rows/s':>10}  "
            f"notes (offline target {result['offline_target_rows_per_s']} rows/s)",
            *(
                f"{name:<8} {off['rows']:>9} {off['rows_per_wall_s']:>10}  "
                f"wall, {off['processes']} process(es), {off['cards']} cards "
                f"({off['tx_per_card_per_30_days']} tx/card/month); {off['rows_per_cpu_s']} rows per CPU s; "
                f"peak RSS growth {off['build_peak_rss_growth_mib']} MiB"
                + (f", stage {off['stage_peak_rss_mib']} MiB" if off["stage_peak_rss_mib"] else "")
                for name, off in offline
                if off is not None
            ),
            f"{'online':<8} {on['rows']:>9} {on['txn_per_s']:>10}  "
            f"wall, batch {on['batch']}: p50 {on['batch_ms_p50']} ms, p99 {on['batch_ms_p99']} ms; "
            f"CPU per txn: client {on['client_cpu_us_per_txn']} µs, Redis {on['redis_cpu_us_per_txn']} µs; "
            f"parity {'OK' if on['parity_with_offline'] else 'BROKEN'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--rows", type=int, default=1_000_000, help="offline rows")
    parser.add_argument("--online-rows", type=int, default=50_000, help="online rows")
    parser.add_argument("--batch", type=int, default=500, help="online batch size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cards", type=int, default=CARDS, help="cards of the offline stream")
    parser.add_argument(
        "--dense-cards", type=int, default=DENSE_CARDS, help="cards of the dense offline run (0 = skip it)"
    )
    args = parser.parse_args(argv)
    if min(args.rows, args.online_rows, args.batch, args.cards) < 1 or args.dense_cards < 0:
        parser.error("--rows, --online-rows, --batch and --cards must be positive")
    url = os.environ.get("FRAUDSTREAM_REDIS_URL")
    offline = bench_offline(args.rows, args.seed, args.cards)
    one_process = bench_offline(args.rows, args.seed, args.cards, processes=1)
    dense = bench_offline(args.rows, args.seed, args.dense_cards) if args.dense_cards else None
    with redis_server(url) as client:
        online = bench_online(client, args.online_rows, args.batch, args.seed)
    result = {
        "benchmark": "features",
        "seed": args.seed,
        "offline": offline,
        "offline_one_process": one_process,
        "offline_dense": dense,
        "offline_target_rows_per_s": OFFLINE_TARGET,
        "online": online,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    return 0 if online["parity_with_offline"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
