"""Benchmark the backtest: throughput of features + scoring, stage by stage.

    python -m bench.backtest --out bench-backtest.json [--data DIR] [--cards 20000 --days 30]

Without ``--data`` a seeded data set is generated into a temporary folder (same
generator as ``fraudstream generate``). The model is a LightGBM model of the trainer's
size (``--rounds`` trees of 15 leaves) fitted on the data set's truth, so predict costs
what a real champion costs. Stages, each timed in wall and CPU seconds:

* ``read``: transactions.avro into records;
* ``features``: :func:`services.featurebuild.build.build_features` (cold: pure Python,
  the code the scorer runs online, the merchant half on a second process; CPU time
  counts both processes);
* ``cache_load``: the backtest's feature cache (warm: a second backtest on the data);
* ``predict``: one ``Booster.predict`` over the matrix; ``decide``: decisions;
* ``features_predict_pipelined``: what ``fraudstream backtest`` does on a cache miss,
  features built in blocks, each block predicted on a second thread (one LightGBM
  thread) while the next is built; its scores are checked equal to ``predict``'s.

Headline: transactions per second for features + scoring, cold (features built, predict
overlapped) and warm (features cached), against the target of 50,000 tx/s; the
sequential sum of the stages is reported next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lightgbm
import numpy as np

from bench.timing import cpu_seconds
from services import dataset
from services.backtest import data as bt_data
from services.backtest.scoring import BlockScorer
from services.core.decision import choose_thresholds, decide_many
from services.featurebuild.build import build_features
from services.generator import cli as generate_cli

TARGET_TX_PER_S = 50_000
T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, dict[str, float]]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(cpu_seconds() - cpu, 3)}


def make_data(root: Path, cards: int, days: int, seed: int) -> Path:
    out = root / "data"
    argv = ["--out", str(out), "--cards", str(cards), "--days", str(days), "--seed", str(seed),
            "--merchants", "2000", "--log-level", "WARNING"]  # fmt: skip
    if generate_cli.main(argv) != 0:
        raise SystemExit("generating the data set failed")
    return out


def fit(X: np.ndarray, y: np.ndarray, rounds: int, seed: int) -> lightgbm.Booster:
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.05, "min_data_in_leaf": 100,
              "verbose": -1, "seed": seed, "deterministic": True, "num_threads": 2}  # fmt: skip
    return lightgbm.train(params, lightgbm.Dataset(X, y.astype(float)), num_boost_round=rounds)


@dataclass(frozen=True)
class Model:
    booster: lightgbm.Booster


def build_and_score(records: list[dict[str, Any]], booster: lightgbm.Booster) -> np.ndarray:
    """What ``fraudstream backtest`` does on a cache miss: blocks of features predicted on
    a second thread while the next block is built."""
    scorer = BlockScorer([Model(booster)])
    build_features(records, on_chunk=scorer.submit)
    return scorer.scores()[0]


def rate(rows: int, seconds: float) -> int:
    return round(rows / seconds) if seconds > 0 else 0


def run(data_dir: Path, rounds: int, seed: int) -> dict[str, Any]:
    records, read = timed(lambda: dataset.read_transactions(data_dir))
    frame, feats = timed(lambda: build_features(records))
    n = len(frame.txn_ids)
    truth = dataset.read_truth(data_dir)
    y = np.asarray([truth[t][0] for t in frame.txn_ids], dtype=bool)
    booster = fit(frame.X, y, rounds, seed)
    scores, pred = timed(lambda: np.asarray(booster.predict(frame.X), dtype=np.float64))
    piped, pipelined = timed(lambda: build_and_score(records, booster))
    assert np.array_equal(piped, scores)
    thresholds = choose_thresholds(scores)
    _, decide = timed(lambda: decide_many(scores, thresholds))
    manifest = dataset.read_manifest(data_dir)
    bt_data.write_cache(data_dir, manifest, bt_data.Frame(frame.txn_ids, frame.event_time, frame.X))
    cached, load = timed(lambda: bt_data.read_cache(data_dir, manifest))
    assert cached is not None and np.array_equal(cached.X, frame.X, equal_nan=True)
    cold = pipelined["wall_s"] + decide["wall_s"]
    cold_sequential = feats["wall_s"] + pred["wall_s"] + decide["wall_s"]
    warm = load["wall_s"] + pred["wall_s"] + decide["wall_s"]
    cold_cpu = feats["cpu_s"] + pred["wall_s"] + decide["cpu_s"]  # predict: wall (2 OpenMP threads)
    return {
        "rows": n,
        "trees": booster.num_trees(),
        "stages": {
            "read": read,
            "features": feats,
            "cache_load": load,
            "predict": pred,
            "decide": decide,
            "features_predict_pipelined": pipelined,
        },
        "rows_per_s": {
            "read": rate(n, read["wall_s"]),
            "features_wall": rate(n, feats["wall_s"]),
            "features_cpu": rate(n, feats["cpu_s"]),
            "predict": rate(n, pred["wall_s"]),
            "features_scoring_cold": rate(n, cold),
            "features_scoring_cold_sequential": rate(n, cold_sequential),
            "features_scoring_cold_cpu": rate(n, cold_cpu),
            "features_scoring_warm": rate(n, warm),
        },
        "target_tx_per_s": TARGET_TX_PER_S,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },  # fmt: skip
    }


def table(result: dict[str, Any]) -> str:
    r, s = result["rows_per_s"], result["stages"]
    target = result["target_tx_per_s"]

    def verdict(key: str) -> str:
        return "meets target" if r[key] >= target else f"below {target:,}"

    rows = [
        ("stage", "wall s", "tx/s", "note"),
        ("read avro", f"{s['read']['wall_s']:.2f}", f"{r['read']:,}", "not part of the target"),
        ("features", f"{s['features']['wall_s']:.2f}", f"{r['features_wall']:,}",
         f"{r['features_cpu']:,} tx/s per CPU second"),
        ("cache load", f"{s['cache_load']['wall_s']:.2f}", "", "instead of features, warm"),
        ("predict", f"{s['predict']['wall_s']:.2f}", f"{r['predict']:,}", f"{result['trees']} trees"),
        ("decide", f"{s['decide']['wall_s']:.2f}", "", ""),
        ("features+scoring, cold", f"{s['features_predict_pipelined']['wall_s']:.2f}",
         f"{r['features_scoring_cold']:,}", verdict("features_scoring_cold") + "; predict overlapped"),
        ("  same, one after other", "", f"{r['features_scoring_cold_sequential']:,}",
         verdict("features_scoring_cold_sequential")),
        ("  sequential, CPU time", "", f"{r['features_scoring_cold_cpu']:,}",
         verdict("features_scoring_cold_cpu")),
        ("features+scoring, warm", "", f"{r['features_scoring_warm']:,}", verdict("features_scoring_warm")),
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(cells))

    head = f"{result['rows']:,} transactions, load average {result['machine']['load_avg_1m']}"
    return "\n".join([head, *(line(row) for row in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--data", type=Path, help="a data set directory (default: generate one)")
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=400, help="trees in the model")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        data_dir = args.data or make_data(Path(tmp), args.cards, args.days, args.seed)
        if args.data is not None:
            # Work on a copy of the caller's data set: the cache is written next to it.
            import shutil

            data_dir = Path(tmp) / "data"
            shutil.copytree(args.data, data_dir, ignore=shutil.ignore_patterns(".cache"))
        result = run(data_dir, args.rounds, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
