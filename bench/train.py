"""Benchmark of ``fraudstream train``: data set reading, offline feature build and training.

    python -m bench.train --out bench/results/train.json [--data DIR] [--days 60 --seed 7]

Without ``--data`` a data set is generated into a temporary directory first (not timed).
Writes JSON and prints a table: seconds per step, feature rows per second, boosting
rounds, and the test metrics of the trained model (nothing is registered).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import cli, dataset
from services.featurebuild.build import build_features
from services.trainer.training import TrainConfig, content_sha256, train_on_features


def generate(directory: Path, days: int, seed: int) -> None:
    code = cli.main(["generate", "--out", str(directory), "--days", str(days), "--seed", str(seed)])
    if code != 0:
        raise SystemExit(f"bench.train: `fraudstream generate` failed with exit code {code}")


def measure(directory: Path, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    manifest = dataset.read_manifest(directory)
    txns = dataset.read_transactions(directory)
    labels = dataset.read_labels(directory)
    truth = dataset.read_truth(directory)
    t1 = time.perf_counter()
    frame = build_features(txns)
    t2 = time.perf_counter()
    result = train_on_features(
        frame,
        labels,
        config=TrainConfig(seed=seed),
        dataset=manifest,
        clock=lambda: datetime.now(UTC),
        truth=truth,
        feature_seconds=round(t2 - t1, 3),
        content_hash=content_sha256(manifest, txns, labels),
    )
    t3 = time.perf_counter()
    test = result.manifest["metrics"]["test"]
    return {
        "data": str(directory),
        "transactions": len(txns),
        "labels": len(labels),
        "features": len(result.manifest["feature_names"]),
        "read_s": round(t1 - t0, 3),
        "features_s": round(t2 - t1, 3),
        "feature_rows_per_s": round(len(txns) / max(t2 - t1, 1e-9)),
        "train_and_evaluate_s": round(t3 - t2, 3),
        "total_s": round(t3 - t0, 3),
        "best_iteration": result.manifest["best_iteration"],
        "test_label_based": test["label_based"],
        "test_truth_based": test.get("truth_based"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }


METRIC_KEYS = ("roc_auc", "pr_auc", "recall_at_top_decile", "recall_at_1pct_alert_rate", "precision_at_k")


def table(result: dict[str, Any]) -> str:
    rows = [
        ("transactions", result["transactions"]),
        ("read data set (s)", result["read_s"]),
        ("offline features (s)", result["features_s"]),
        ("feature rows / s", result["feature_rows_per_s"]),
        ("train + evaluate (s)", result["train_and_evaluate_s"]),
        ("total (s)", result["total_s"]),
        ("best iteration", result["best_iteration"]),
    ]
    for kind in ("test_label_based", "test_truth_based"):
        metrics = result.get(kind) or {}
        for key in METRIC_KEYS:
            value = metrics.get(key)
            rows.append((f"{kind} {key}", "-" if value is None else f"{value:.4f}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    parser.add_argument("--data", type=Path, help="existing data set directory (default: generate one)")
    parser.add_argument("--days", type=int, default=60, help="days to generate without --data")
    parser.add_argument("--seed", type=int, default=7, help="generator and training seed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        directory = args.data
        if directory is None:
            directory = Path(tmp) / "data"
            generate(directory, args.days, args.seed)
        result = measure(directory, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
