"""Benchmark ``fraudstream generate``: time to generate and write N transactions, peak RSS.

    python -m bench.generate --out bench-generate.json [--transactions 1000000]

Cards are scaled so that ``--days`` days hold about ``--transactions`` transactions.
The data set goes to a temporary directory (or ``--data-dir``) and is removed after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.generator.build import generate
from services.generator.config import GeneratorConfig, parse_start
from services.generator.legit import day_weights
from services.generator.world import MEAN_TXNS_PER_CARD_DAY
from services.generator.writer import write_dataset


def cards_for(transactions: int, days: int, start_ms: int) -> int:
    per_card = MEAN_TXNS_PER_CARD_DAY * float(np.sum(day_weights(start_ms, days)))
    return max(10, round(transactions / per_card))


def peak_rss_bytes() -> int:
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def run(transactions: int, days: int, seed: int, data_dir: Path) -> dict[str, Any]:
    start_ms = parse_start("2026-01-01")
    config = GeneratorConfig(
        seed=seed,
        days=days,
        start_ms=start_ms,
        cards=cards_for(transactions, days, start_ms),
        merchants=max(2_000, transactions // 200),
        fraud_rate=0.005,
    )
    t0 = time.perf_counter()
    world = generate(config)
    t1 = time.perf_counter()
    manifest = write_dataset(data_dir, world)
    t2 = time.perf_counter()
    n = manifest["counts"]["transactions"]
    sizes = {p.name: p.stat().st_size for p in sorted(data_dir.glob("*.avro"))}
    return {
        "benchmark": "generate",
        "requested_transactions": transactions,
        "transactions": n,
        "labels": manifest["counts"]["labels"],
        "cards": config.cards,
        "merchants": config.merchants,
        "days": days,
        "seed": seed,
        "generate_s": round(t1 - t0, 3),
        "write_s": round(t2 - t1, 3),
        "total_s": round(t2 - t0, 3),
        "transactions_per_s": round(n / (t2 - t0)),
        "peak_rss_bytes": peak_rss_bytes(),
        "file_bytes": sizes,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        ("transactions", f"{result['transactions']:,} ({result['cards']:,} cards x {result['days']} days)"),
        ("generate", f"{result['generate_s']:.2f} s"),
        ("write (Avro)", f"{result['write_s']:.2f} s"),
        ("total", f"{result['total_s']:.2f} s"),
        ("throughput", f"{result['transactions_per_s']:,} txn/s"),
        ("peak RSS", f"{result['peak_rss_bytes'] / 2**20:,.0f} MiB"),
        *((f"  {name}", f"{size / 2**20:,.1f} MiB") for name, size in result["file_bytes"].items()),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, help="keep the data set here (default: temp)")
    args = parser.parse_args(argv)
    if args.transactions < 1 or args.days < 1:
        parser.error("--transactions and --days must be positive")
    if args.data_dir is not None:
        result = run(args.transactions, args.days, args.seed, args.data_dir)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
        try:
            result = run(args.transactions, args.days, args.seed, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
