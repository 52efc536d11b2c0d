"""Benchmark ``fraudstream monitor``: scores per second one worker sustains.

    python -m bench.monitor --out bench-monitor.json [--scores 100000] [--partitions 3]

Two figures:

* ``worker``: the real CLI as a subprocess (faust worker, read_committed consumer,
  changelog-backed tables) working off a backlog of ``--scores`` pre-produced Score
  records. Throughput = records counted / time from the first counted record to the
  last, read from its own ``records_total`` metric (polled every 0.2 s), so start-up
  and group join are excluded.
* ``core``: the same batches through decode + :class:`MonitorCore` in-process with
  dict tables: the ceiling without Kafka and faust.

Kafka: ``--kafka-bootstrap`` or ``FRAUDSTREAM_KAFKA_BOOTSTRAP``, else a throw-away local
stack (``fraudstream stack``) is started on free ports and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from services.core import features, psi, topics
from services.core.codec import Codec
from services.registry import Registry

T0 = 1_767_225_600_000
NAMES = list(features.FEATURE_NAMES)


def champion_manifest(rng: np.random.Generator) -> dict[str, Any]:
    X = rng.normal(size=(20_000, len(NAMES)))
    return {
        "feature_names": NAMES,
        "feature_set_fingerprint": features.FEATURE_SET_FINGERPRINT,
        "thresholds": {"review": 0.8, "block": 0.95},
        "params": {},
        "lightgbm_version": "n/a",
        "psi_reference": psi.build_references(X, NAMES, 1 / (1 + np.exp(-X[:, 0]))),
        "metrics": {"test": {"label_based": {"recall_at_review_threshold": 0.8}}},
    }


def score_values(codec: Codec, n: int, rng: np.random.Generator) -> list[tuple[bytes, bytes]]:
    """n Score records, 10 per second of event time, in order."""
    X = rng.normal(size=(n, len(NAMES)))
    s = 1 / (1 + np.exp(-X[:, 0]))
    out = []
    for i in range(n):
        txn = f"t{i:010d}"
        rec = {
            "txn_id": txn,
            "card_id": f"c{i % 5000}",
            "event_time": T0 + i * 100,
            "score": float(s[i]),
            "decision": "REVIEW" if s[i] > 0.8 else "ALLOW",
            "reason_codes": [],
            "model_name": "fraud",
            "model_version": "1",
            "model_sha256": "0" * 64,
            "feature_set": features.FEATURE_SET_FINGERPRINT,
            "features": X[i].tolist(),
            "shadow": False,
            "timings": {"consumed_at": 0, "scored_at": 0, "features_us": 0, "predict_us": 0},
        }
        out.append((f"c{i % 5000}".encode(), codec.encode("Score", rec)))
    return out


@contextmanager
def kafka(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    from services import settings
    from services.settings import StackSettings
    from services.stack import Stack

    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(settings.load(StackSettings, {"stack_dir": tmp, "kafka_port": 0, "redis_port": 0}))
        info = stack.up()
        try:
            yield info.kafka_bootstrap
        finally:
            stack.down(wipe=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def counted(port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "fraudstream_monitor_records_total" and sample.labels.get("topic") == "scores":
                total += sample.value
    return total


def bench_worker(
    bootstrap: str, values: list[tuple[bytes, bytes]], partitions: int, tmp: Path, registry: Path
) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    app_id = f"bench-monitor-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = {t: f"{prefix}{t}" for t in (topics.SCORES, topics.LABELS, topics.RETRAIN, topics.MONITOR_DLQ)}
    new = [
        NewTopic(n, num_partitions=partitions if t == topics.SCORES else 1, replication_factor=-1)
        for t, n in names.items()
    ]
    for f in admin.create_topics(new).values():
        f.result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4"})
    for key, value in values:
        while True:
            try:
                producer.produce(names[topics.SCORES], key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "services.cli",
        "monitor",
        "--kafka-bootstrap",
        bootstrap,
        "--topic-prefix",
        prefix,
        "--app-id",
        app_id,
        "--registry",
        str(registry),
        "--data-dir",
        str(tmp / "data"),
        "--metrics-port",
        str(port),
        "--window-s",
        "60",
        "--window-min-records",
        "100",
        "--log-level",
        "WARNING",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    with (tmp / "monitor.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            n = counted(port)
            now = time.monotonic()
            if n > 0 and first is None:
                first = (now, n)
            if n >= len(values):
                last = (now, n)
                break
            time.sleep(0.2)
        if first is None or last is None:
            tail = "\n".join((tmp / "monitor.log").read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"the monitor did not finish (exit {proc.poll()}):\n{tail}")
        elapsed = last[0] - first[0]
        return {
            "records": int(last[1] - first[1]),
            "seconds": round(elapsed, 3),
            "scores_per_s": round((last[1] - first[1]) / elapsed, 1) if elapsed > 0 else None,
            "partitions": partitions,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        internal = [f"{app_id}-{t}-changelog" for t in ("state", "txns")]
        futures = admin.delete_topics(list(names.values()) + internal)
        for f in futures.values():
            try:
                f.result(60)
            except Exception:
                pass


def bench_core(values: list[tuple[bytes, bytes]], manifest: dict[str, Any], batch: int) -> dict[str, Any]:
    from services.core.drift import DriftConfig, WindowConfig
    from services.monitor.champion import champion_from_manifest
    from services.monitor.core import MonitorConfig, MonitorCore
    from services.monitor.metrics import MonitorMetrics
    from services.monitor.records import Raw, decode_scores

    codec = Codec.load()
    champ = champion_from_manifest({**manifest, "name": "fraud", "version": "1"})
    cfg = MonitorConfig(WindowConfig(60_000, 0, 100), DriftConfig(), 90, 0.8, 0.1, 7 * 86_400_000)
    core = MonitorCore(cfg, champ, {}, {}, MonitorMetrics())
    raws = [Raw("scores", 0, i, k, v) for i, (k, v) in enumerate(values)]
    decode_s = 0.0
    started = time.perf_counter()
    for lo in range(0, len(raws), batch):
        t = time.perf_counter()
        rows, _ = decode_scores(codec, raws[lo : lo + batch], "fraud", "1", len(NAMES))
        decode_s += time.perf_counter() - t
        core.on_scores(rows)
    total = time.perf_counter() - started
    return {
        "records": len(raws),
        "seconds": round(total, 3),
        "scores_per_s": round(len(raws) / total, 1),
        "decode_share": round(decode_s / total, 3),
        "batch": batch,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    parser.add_argument("--scores", type=int, default=100_000, help="Score records in the backlog")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the scores topic")
    parser.add_argument("--kafka-bootstrap", default=os.environ.get("FRAUDSTREAM_KAFKA_BOOTSTRAP"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    codec = Codec.load()
    manifest = champion_manifest(rng)
    values = score_values(codec, args.scores, rng)
    core = bench_core(values, manifest, batch=2_000)
    with tempfile.TemporaryDirectory() as tmp_name, kafka(args.kafka_bootstrap) as bootstrap:
        tmp = Path(tmp_name)
        Registry(tmp / "models").register("fraud", "not a booster\n", manifest)
        worker = bench_worker(bootstrap, values, args.partitions, tmp, tmp / "models")
    result = {
        "benchmark": "monitor",
        "target_scores_per_s": 5_000,
        "worker": worker,
        "core": core,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'path':<10} {'records':>9} {'seconds':>8} {'scores/s':>10}")
    for name, r in (("worker", worker), ("core", core)):
        print(f"{name:<10} {r['records']:>9} {r['seconds']:>8} {r['scores_per_s']:>10}")
    print(f"target: >= 5000 scores/s per worker; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
