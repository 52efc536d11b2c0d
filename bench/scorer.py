"""Benchmark the scorer: throughput (exactly-once, at-least-once, naive), latency at a fixed
offered load, the per-event cost of each stage, and each component's ceiling alone.

    python -m bench.scorer --out bench-scorer.json [--records 100000] [--rate 2000]

Uses ``FRAUDSTREAM_KAFKA_BOOTSTRAP`` / ``FRAUDSTREAM_REDIS_URL`` when both are set, else
starts its own stack (``services.stack``) in a temp folder on free ports and stops it.

* **Throughput**: ``--records`` transactions (the seeded stream of ``bench.features``:
  20k cards, 2k merchants, skewed) are produced first, then the real scorer
  (``services.scorer.cli.serve``, in a thread) consumes them from a 12-partition topic;
  the rate is records over the time from its first consumed batch to its last commit.
* **Naive**: one message at a time: decode, one online-store call (its round trips for a
  single transaction), a single-row predict, produce + flush, synchronous offset commit.
* **Latency**: transactions offered at ``--rate`` per second, stamped with the wall clock
  as event time; a read_committed consumer of ``scores`` measures event -> committed
  score (the latency downstream sees). The first ``--warmup-s`` seconds (30) run at the
  same load but are reported apart (a fresh scorer, new topics and, when the benchmark
  starts its own stack, a broker JVM seconds old: hundreds of ms at first); p50/p99 are
  those of the next ``--seconds``. A timeline of 5 s windows shows whether it settled.
* **Breakdown**: per-event seconds in each scorer stage (from its own histograms).
* **Ceilings**: each component alone, single thread: decode+validate, feature compute
  (offline, pure), online store (Redis, batches of 500), predict, pred_contrib, encode,
  transactional produce.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from bench.features import synthetic_stream
from services.core import features, topics
from services.core.codec import Codec
from services.core.decision import choose_thresholds
from services.core.features import READABLE
from services.core.offline import OfflineFeatureStore
from services.kafka.admin import TopicSpec, ensure_topics
from services.online import OnlineFeatureStore
from services.registry import Registry
from services.runtime import StopFlag
from services.scorer import batch as B
from services.scorer import cli as scorer_cli
from services.scorer.model_watch import ServingModel, load_serving
from services.settings import ScorerSettings

PARTITIONS = 12
STAGES = ("decode", "redis", "predict", "encode", "produce")
COMPONENT_ROWS = 20_000
# Latency run: the scorer, the broker and the load generator all start cold (JIT, caches,
# a new transactional.id, new topics); a broker started by this benchmark is seconds old.
# The first tens of seconds are much slower than the steady state the p99 target is
# about, so they are run at the offered load but reported apart (see latency()).
WARMUP_S = 30.0
WINDOW_S = 5.0
TICK_S = 0.002


# --------------------------------------------------------------------------- set-up


@contextmanager
def servers() -> Iterator[tuple[str, str]]:
    kafka, url = os.environ.get("FRAUDSTREAM_KAFKA_BOOTSTRAP"), os.environ.get("FRAUDSTREAM_REDIS_URL")
    if kafka and url:
        yield kafka, url
        return
    from services import settings
    from services.settings import StackSettings
    from services.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-scorer-") as tmp:
        stack = Stack(settings.load(StackSettings, {"stack_dir": tmp, "kafka_port": 0, "redis_port": 0}))
        info = stack.up()
        try:
            yield info.kafka_bootstrap, info.redis_url
        finally:
            stack.down(wipe=True)


def train_model(root: Path, txns: list[dict[str, Any]]) -> ServingModel:
    """A production-sized model (200 trees of 31 leaves) on the stream's own features, with
    thresholds for 2% review and 0.5% block on the whole stream, registered as champion.
    (Thresholds matter here: reason codes are computed for the alerts only.)"""
    offline = OfflineFeatureStore()
    x = np.array([offline.process(t) for t in txns])
    rng = np.random.default_rng(3)
    risk = np.nan_to_num(x[:, features.FEATURE_INDEX["amount_zscore"]]) + rng.normal(size=len(x))
    y = (risk > np.quantile(risk, 0.99)).astype(int)
    sample = rng.choice(len(x), size=min(len(x), 20_000), replace=False)
    params = {"objective": "binary", "num_leaves": 31, "verbose": -1, "num_threads": 1, "seed": 1}
    booster = lightgbm.train(params, lightgbm.Dataset(x[sample], y[sample]), num_boost_round=200)
    thresholds = choose_thresholds(booster.predict(x), review_rate=0.02, block_rate=0.005)
    manifest = {
        "feature_names": list(features.FEATURE_NAMES),
        "feature_set_fingerprint": features.FEATURE_SET_FINGERPRINT,
        "thresholds": thresholds.to_dict(),
        "psi_reference": {}, "metrics": {}, "params": params, "lightgbm_version": lightgbm.__version__,
    }  # fmt: skip
    mv = Registry(root).register("fraud", str(booster.model_to_string()), manifest, promote=True)
    return load_serving(mv)


class World:
    """One benchmark's private topics, group and namespace on the shared servers."""

    def __init__(self, bootstrap: str, redis_url: str, registry: Path, name: str) -> None:
        self.bootstrap, self.redis_url, self.registry = bootstrap, redis_url, registry
        self.prefix = f"bench-{name}-{uuid.uuid4().hex[:8]}."
        admin = AdminClient({"bootstrap.servers": bootstrap})
        specs = [TopicSpec(self.prefix + t, PARTITIONS, 1) for t in (topics.TRANSACTIONS, topics.SCORES)]
        ensure_topics(admin, [*specs, TopicSpec(self.prefix + topics.TRANSACTIONS_DLQ, 1, 1)], 60)

    def settings(self, **overrides: Any) -> ScorerSettings:
        values = {
            "kafka_bootstrap": self.bootstrap, "redis_url": self.redis_url, "topic_prefix": self.prefix,
            "redis_namespace": self.prefix.rstrip(".").replace(".", "-"), "group_id": self.prefix + "scorer",
            "registry": self.registry, "max_event_age_days": 3650.0, "log_level": "WARNING",
        }  # fmt: skip
        return ScorerSettings.model_validate({**values, **overrides})

    def produce(self, values: list[tuple[bytes, bytes]]) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20, "compression.type": "lz4"})
        for key, value in values:
            while True:
                try:
                    producer.produce(self.prefix + topics.TRANSACTIONS, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)

    def cleanup(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [self.prefix + t for t in (topics.TRANSACTIONS, topics.SCORES, topics.TRANSACTIONS_DLQ)]
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result(timeout=60)
        OnlineFeatureStore(redis.Redis.from_url(self.redis_url), self.settings().redis_namespace).reset()


@contextmanager
def scorer_process(settings: ScorerSettings) -> Iterator[subprocess.Popen[bytes]]:
    """``fraudstream scorer`` as its own process (no GIL shared with the load generator)."""
    args = []
    for name, value in settings.model_dump().items():
        if value is None or isinstance(value, bool):
            continue
        value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        args += ["--" + name.replace("_", "-"), str(value)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "scorer", *args], env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


@contextmanager
def scorer(settings: ScorerSettings) -> Iterator[Callable[[str, dict[str, str] | None], float]]:
    """The real scorer in a thread; yields a metric reader."""
    stop, registry = StopFlag(), CollectorRegistry()
    thread = threading.Thread(
        target=scorer_cli.serve, args=(settings, stop, registry), kwargs={"tune_gc": True}, daemon=True
    )
    thread.start()
    try:

        def metric(name: str, labels: dict[str, str] | None) -> float:
            return registry.get_sample_value(name, labels or {}) or 0.0

        yield metric
    finally:
        stop.set()
        thread.join(60)


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out; is the stack healthy?")
        time.sleep(step)


# --------------------------------------------------------------------------- measurements


def throughput(world: World, values: list[tuple[bytes, bytes]], delivery: str, batch: int) -> dict[str, Any]:
    world.produce(values)
    n = len(values)
    with scorer(world.settings(delivery=delivery, batch_max_records=batch)) as metric:
        wait_for(lambda: metric("fraudstream_scorer_records_consumed_total", None) > 0, 120, 0.001)
        t0 = time.perf_counter()
        wait_for(lambda: metric("fraudstream_scorer_batch_size_records_sum", None) >= n, 600, 0.005)
        elapsed = time.perf_counter() - t0
        per_event = {
            s: 1e6 * metric("fraudstream_scorer_stage_duration_seconds_sum", {"stage": s}) / n for s in STAGES
        }
        batches = metric("fraudstream_scorer_batches_total", None)
        alerts = sum(
            metric("fraudstream_scorer_records_scored_total", {"decision": d}) for d in ("REVIEW", "BLOCK")
        )
    return {
        "tx_per_s": round(n / elapsed),
        "seconds": round(elapsed, 2),
        "batches": int(batches),
        "mean_batch": round(n / max(batches, 1)),
        "alert_share": round(alerts / n, 4),
        "per_event_us": {k: round(v, 1) for k, v in per_event.items()},
    }


def latency(
    world: World, codec: Codec, txns: list[dict[str, Any]], rate: int, seconds: float, warmup_s: float
) -> dict[str, Any]:
    """Offer ``rate`` tx/s for ``warmup_s`` + ``seconds``; the figures are those of the
    transactions sent in the last ``seconds`` (steady state). The warm-up is not hidden:
    its own p50/p99 and a timeline of WINDOW_S windows (by send time) are reported."""
    n_warm = int(rate * warmup_s)
    n = n_warm + int(rate * seconds)
    if n > len(txns):
        raise SystemExit(f"latency run needs {n:,} transactions, the stream has {len(txns):,}")
    # The stream replays some txn ids (a scorer must score a replay again): the k-th score
    # of an id is the k-th send of it (same key, same partition, in order).
    received: dict[str, list[float]] = {}
    sent: dict[str, list[int]] = {}
    reader = Consumer({"bootstrap.servers": world.bootstrap, "group.id": world.prefix + "reader",
                       "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                       "enable.auto.commit": False, "fetch.wait.max.ms": 5})  # fmt: skip
    scores = world.prefix + topics.SCORES
    reader.assign([TopicPartition(scores, p, 0) for p in range(PARTITIONS)])
    with scorer_process(world.settings()) as proc:
        # Ready once a first transaction comes back scored.
        producer = Producer({"bootstrap.servers": world.bootstrap, "linger.ms": 1})
        probe = {**txns[-1], "txn_id": "probe", "event_time": time.time_ns() // 1_000_000}
        producer.produce(world.prefix + topics.TRANSACTIONS, key=probe["card_id"].encode(),
                         value=codec.encode("Transaction", probe))  # fmt: skip
        producer.flush(10)
        wait_for(lambda: proc.poll() is None and any(m.error() is None for m in reader.consume(10, 0.1)), 120)
        # Scores are read on their own thread and stamped on arrival (decoded afterwards), so
        # the paced producer loop never delays the reading: the harness must not inflate latency.
        # poll() returns as soon as one score is there; consume(n, timeout) would wait out its
        # whole timeout unless n arrived (up to 50 ms added to every score), so it only drains
        # what is already fetched (timeout 0).
        arrivals: list[tuple[bytes, float]] = []
        done = threading.Event()

        def read_scores() -> None:
            while not done.is_set():
                first = reader.poll(0.05)
                if first is None:
                    continue
                at = time.time()
                for msg in [first, *reader.consume(1000, 0)]:
                    value = msg.value()
                    if msg.error() is None and value is not None:
                        arrivals.append((value, at))

        thread = threading.Thread(target=read_scores, daemon=True)
        thread.start()
        producer = Producer({"bootstrap.servers": world.bootstrap, "linger.ms": 1})
        cpu0 = time.process_time()
        began = time.perf_counter()
        i = 0
        while i < n:
            # Send what is due, then sleep at least TICK_S: one wake-up per tick instead of
            # one per transaction keeps the load generator's CPU (on the scorer's and the
            # broker's cores) down. Each transaction is stamped when it is produced, so the
            # latency of each is measured from its own send.
            due = min(n, int((time.perf_counter() - began) * rate) + 1)
            while i < due:
                txn = txns[i]
                now = time.time_ns() // 1_000_000
                sent.setdefault(txn["txn_id"], []).append(now)
                producer.produce(world.prefix + topics.TRANSACTIONS, key=txn["card_id"].encode(),
                                 value=codec.encode("Transaction", {**txn, "event_time": now}))  # fmt: skip
                i += 1
            producer.poll(0)
            pause = began + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(max(pause, TICK_S))
        elapsed = time.perf_counter() - began
        harness_cpu = time.process_time() - cpu0
        producer.flush(30)
        deadline = time.monotonic() + 60
        while len(arrivals) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        done.set()
        thread.join()
        for value, at in arrivals:
            received.setdefault(codec.decode("Score", value)["txn_id"], []).append(at)
    reader.close()
    ms = np.full(n, np.nan)
    seen: dict[str, int] = {}
    for i, txn in enumerate(txns[:n]):
        k = seen[txn["txn_id"]] = seen.get(txn["txn_id"], -1) + 1
        got = received.get(txn["txn_id"], [])
        if k < len(got):
            ms[i] = got[k] * 1000 - sent[txn["txn_id"]][k]
    warm, steady = ms[:n_warm], ms[n_warm:]
    steady = steady[~np.isnan(steady)]
    half = len(steady) // 2
    per_window = max(1, int(rate * WINDOW_S))
    timeline = []
    for start in range(0, n, per_window):
        window = ms[start : start + per_window]
        window = window[~np.isnan(window)]
        if len(window):
            timeline.append({"t_s": round(start / rate, 1), "warmup": start < n_warm, "n": len(window),
                             "p50_ms": _pct(window, 50), "p99_ms": _pct(window, 99)})  # fmt: skip
    return {
        "offered_tx_per_s": round(n / elapsed),
        "seconds": seconds,
        "warmup_s": warmup_s,
        "measured": len(steady),
        "lost": int(np.isnan(ms).sum()),
        "p50_ms": _pct(steady, 50),
        "p99_ms": _pct(steady, 99),
        "max_ms": round(float(steady.max()), 1),
        # Steady state or still drifting? p99 of the first and second half of the measured part.
        "p99_halves_ms": [_pct(steady[:half], 99), _pct(steady[half:], 99)],
        "warmup_p50_ms": _pct(warm[~np.isnan(warm)], 50),
        "warmup_p99_ms": _pct(warm[~np.isnan(warm)], 99),
        # The load generator and the score reader share the 2 cores with the scorer and the
        # broker: CPU seconds of this process per second of the paced run.
        "harness_cpu_cores": round(harness_cpu / elapsed, 2),
        "timeline": timeline,
    }


def _pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if len(values) else float("nan")


def naive(
    world: World, values: list[tuple[bytes, bytes]], model: ServingModel, codec: Codec
) -> dict[str, Any]:
    """One message at a time, every call synchronous: the baseline."""
    world.produce(values)
    s = world.settings()
    client = redis.Redis.from_url(world.redis_url)
    store = OnlineFeatureStore(client, s.redis_namespace + "-naive")
    consumer = Consumer({"bootstrap.servers": world.bootstrap, "group.id": world.prefix + "naive",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})  # fmt: skip
    producer = Producer({"bootstrap.servers": world.bootstrap, "enable.idempotence": True, "acks": "all"})
    consumer.subscribe([world.prefix + topics.TRANSACTIONS])
    limits = B.Limits(s.max_amount, int(s.max_future_skew_s * 1000), int(s.max_event_age_days * 86_400_000))
    done, t0 = 0, 0.0
    while done < len(values):
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            continue
        t0 = t0 or time.perf_counter()
        raw = B.Raw(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value())
        txn = B.check_record(raw, codec, limits, time.time_ns() // 1_000_000)
        assert isinstance(txn, dict)
        vector = store.process_batch([txn])[0]
        matrix = np.array([vector], dtype=np.float64)
        preds = B.predict(model, matrix, READABLE)
        rec = B.score_records([(raw, txn)], matrix, preds, model, consumed_at_ms=0, scored_at_ms=0,
                              times=B.StageTimes(0, 0))[0]  # fmt: skip
        producer.produce(world.prefix + topics.SCORES, key=raw.key, value=codec.encode("Score", rec))
        producer.flush(10)
        consumer.commit(message=msg, asynchronous=False)
        done += 1
    elapsed = time.perf_counter() - t0
    consumer.close()
    client.close()
    return {"tx_per_s": round(len(values) / elapsed), "records": len(values)}


def components(world: World, txns: list[dict[str, Any]], values: list[tuple[bytes, bytes]],
               model: ServingModel, codec: Codec) -> dict[str, dict[str, float]]:  # fmt: skip
    """Each stage alone on COMPONENT_ROWS events: microseconds per event and the rate it
    would allow if it were the only work (single thread)."""
    rows = txns[:COMPONENT_ROWS]
    raws = [B.Raw("t", 0, i, k, v) for i, (k, v) in enumerate(values[:COMPONENT_ROWS])]
    s = world.settings()
    limits = B.Limits(s.max_amount, int(s.max_future_skew_s * 1000), int(s.max_event_age_days * 86_400_000))
    out: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any], count: int = len(rows)) -> Any:
        t0 = time.perf_counter()
        result = fn()
        out[name] = (time.perf_counter() - t0) * 1e6 / count
        return result

    now = time.time_ns() // 1_000_000
    decoded = timed("decode_validate", lambda: B.decode_batch(raws, codec, limits, now))
    assert not decoded.bads
    offline = OfflineFeatureStore()
    x = np.array(timed("features_compute", lambda: [offline.process(t) for t in rows]))
    client = redis.Redis.from_url(world.redis_url)
    store = OnlineFeatureStore(client, s.redis_namespace + "-parts")
    timed("online_store", lambda: [store.process_batch(rows[i : i + 500]) for i in range(0, len(rows), 500)])
    store.reset()
    client.close()
    timed(
        "predict",
        lambda: [model.booster.predict(x[i : i + 500], num_threads=1) for i in range(0, len(x), 500)],
    )
    timed("pred_contrib", lambda: model.booster.predict(x[:500], pred_contrib=True, num_threads=1), 500)
    timed(
        "predict_single_row",
        lambda: [model.booster.predict(x[i : i + 1], num_threads=1) for i in range(500)],
        500,
    )
    preds = B.predict(model, x, READABLE)
    goods = decoded.goods
    recs = B.score_records(
        goods, x, preds, model, consumed_at_ms=now, scored_at_ms=now, times=B.StageTimes(1, 1)
    )
    encoded = timed("encode", lambda: B.encode_scores(recs, goods, codec, world.prefix + topics.SCORES))
    producer = Producer({"bootstrap.servers": world.bootstrap, "transactional.id": world.prefix + "parts",
                         "linger.ms": 5, "compression.type": "lz4"})  # fmt: skip
    producer.init_transactions(30)

    def produce() -> None:
        for i in range(0, len(encoded), 500):
            producer.begin_transaction()
            for rec in encoded[i : i + 500]:
                producer.produce(rec.topic, key=rec.key, value=rec.value)
                producer.poll(0)
            producer.commit_transaction(30)

    timed("produce_transactional", produce)
    return {k: {"us_per_event": round(v, 2), "max_tx_per_s": round(1e6 / v)} for k, v in out.items()}


# --------------------------------------------------------------------------- report


def _load(avg: tuple[float, float, float]) -> list[float]:
    return [round(x, 2) for x in avg]


def report(result: dict[str, Any]) -> str:
    runs = result["runs"]

    def load(name: str) -> str:
        before, after = result["load_avg"][name]["before"], result["load_avg"][name]["after"]
        return f"(load {before[0]:.2f} -> {after[0]:.2f})"

    lines = [
        f"scorer benchmark ({result['machine']['cpus']} CPUs, {result['records']:,} records, "
        f"batch {result['batch']})",
        f"  exactly-once   {result['eos_tx_per_s']:>9,} tx/s   {load('eos')}",
        f"  at-least-once  {result['alo_tx_per_s']:>9,} tx/s   {load('alo')}",
        f"  naive          {result['naive_tx_per_s']:>9,} tx/s   {load('naive')}   (exactly-once = "
        f"{result['eos_vs_naive']}x naive)",
        f"  latency at {runs['latency']['offered_tx_per_s']:,} tx/s offered: "
        f"p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms (event -> committed score, {runs['latency']['seconds']:g} s after a "
        f"{runs['latency']['warmup_s']:g} s warm-up at p50 {runs['latency']['warmup_p50_ms']} ms, "
        f"p99 {runs['latency']['warmup_p99_ms']} ms)   {load('latency')}",
        "  per event (exactly-once run), us:",
    ]
    lines += [f"    {k:<26}{v:>8.1f}" for k, v in result["breakdown_us"].items()]
    lines.append("  component ceilings alone (single thread):")
    lines += [f"    {k:<26}{v['us_per_event']:>8.1f} us  {v['max_tx_per_s']:>10,} tx/s"
              for k, v in result["ceilings"].items()]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scorer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    parser.add_argument("--records", type=int, default=100_000, help="records per throughput run")
    parser.add_argument("--naive-records", type=int, default=3_000, help="records for the naive baseline")
    parser.add_argument("--rate", type=int, default=2_000, help="offered load of the latency run, tx/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured length of the latency run")
    parser.add_argument(
        "--warmup-s", type=float, default=WARMUP_S, help="seconds at the offered load before measuring"
    )
    parser.add_argument("--batch", type=int, default=500, help="batch_max_records of the throughput runs")
    args = parser.parse_args(argv)
    codec = Codec.load()
    latency_n = int(args.rate * (args.warmup_s + args.seconds)) + 1
    txns = list(synthetic_stream(max(args.records, latency_n, COMPONENT_ROWS), seed=11))
    values = [(t["card_id"].encode(), codec.encode("Transaction", t)) for t in txns]
    with servers() as (kafka, url), tempfile.TemporaryDirectory(prefix="bench-models-") as models:
        model = train_model(Path(models), txns[: args.records])
        runs: dict[str, Any] = {}
        loads: dict[str, dict[str, list[float]]] = {}
        for name, fn in [
            ("eos", lambda w: throughput(w, values[: args.records], "exactly-once", args.batch)),
            ("alo", lambda w: throughput(w, values[: args.records], "at-least-once", args.batch)),
            ("naive", lambda w: naive(w, values[: args.naive_records], model, codec)),
            ("latency", lambda w: latency(w, codec, txns, args.rate, args.seconds, args.warmup_s)),
            ("ceilings", lambda w: components(w, txns, values, model, codec)),
        ]:
            world = World(kafka, url, Path(models), name)
            # Other work on the machine moves every figure here (2 cores shared with the
            # broker and Redis): each run carries the load average it ran under.
            load_before = os.getloadavg()
            try:
                runs[name] = fn(world)
            finally:
                world.cleanup()
            loads[name] = {"before": _load(load_before), "after": _load(os.getloadavg())}
            print(f"{name}: {json.dumps(runs[name])} load {json.dumps(loads[name])}", flush=True)
    eos = runs["eos"]
    breakdown = dict(eos["per_event_us"])
    features_us = runs["ceilings"]["features_compute"]["us_per_event"]
    breakdown = {
        "decode_validate": breakdown["decode"],
        "redis (store minus compute)": round(breakdown["redis"] - features_us, 1),
        "features (compute)": features_us,
        "predict (+contrib on alerts)": breakdown["predict"],
        "encode": breakdown["encode"],
        "produce+commit": breakdown["produce"],
    }
    result = {
        "eos_tx_per_s": eos["tx_per_s"], "alo_tx_per_s": runs["alo"]["tx_per_s"],
        "naive_tx_per_s": runs["naive"]["tx_per_s"],
        "eos_vs_naive": round(eos["tx_per_s"] / runs["naive"]["tx_per_s"], 1),
        "p50_ms": runs["latency"]["p50_ms"], "p99_ms": runs["latency"]["p99_ms"],
        "breakdown_us": breakdown, "ceilings": runs["ceilings"], "runs": runs, "load_avg": loads,
        "records": args.records, "batch": args.batch,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
