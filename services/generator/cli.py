"""``fraudstream generate``: write a synthetic transaction + label data set.

Example::

    fraudstream generate --out data/demo --days 60 --seed 7 \\
        --drift amount_inflation@40 --drift new_pattern@45 --patterns card_testing,ato
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from services import settings
from services.generator.build import generate
from services.generator.catalog import CATEGORIES
from services.generator.config import (
    DRIFT_SCENARIOS,
    PATTERNS,
    GeneratorConfig,
    parse_drift,
    parse_patterns,
    parse_start,
)
from services.generator.writer import write_dataset
from services.runtime import configure_logging, run_command
from services.settings import ConfigError, GenerateSettings

PROG = "fraudstream generate"
MIN_MERCHANTS = len(CATEGORIES)
log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Generate a synthetic card-transaction data set with late labels and drift.",
    )
    settings.add_flags(parser, GenerateSettings)
    parser.add_argument(
        "--drift",
        action="append",
        metavar="NAME@DAY",
        help="start a drift scenario on day DAY (repeatable); NAME is one of "
        + ", ".join(f"{k} ({v})" for k, v in DRIFT_SCENARIOS.items()),
    )
    parser.add_argument(
        "--patterns",
        metavar="LIST",
        help=f"comma-separated fraud patterns to enable [default: all: {','.join(PATTERNS)}]",
    )
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out directory")
    return parser


def build_config(s: GenerateSettings, patterns: str | None, drift: list[str] | None) -> GeneratorConfig:
    """Settings plus the generator's own flags -> config; ConfigError on bad values."""
    if s.merchants < MIN_MERCHANTS:
        raise ConfigError(
            f"invalid --merchants={s.merchants}: need at least {MIN_MERCHANTS}, one per merchant category"
        )
    try:
        return GeneratorConfig(
            seed=s.seed,
            days=s.days,
            start_ms=parse_start(s.start),
            cards=s.cards,
            merchants=s.merchants,
            fraud_rate=s.fraud_rate,
            patterns=parse_patterns(patterns),
            drift=parse_drift(drift, s.days),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out} is not empty; pass --force to overwrite its data set")


def _run(args: argparse.Namespace) -> int:
    s = settings.load(GenerateSettings, args)
    configure_logging(s.log_level)
    config = build_config(s, args.patterns, args.drift)
    check_out_dir(s.out, args.force)
    began = time.perf_counter()
    with tqdm(total=4, desc="generating", unit=" stage", file=sys.stderr, leave=False, disable=None) as bar:

        def step(stage: str) -> None:  # called as each of the 4 stages starts
            bar.set_postfix_str(stage)
            bar.update(1)

        try:
            world = generate(config, progress=step)
        except ValueError as exc:  # e.g. too few merchants for a pattern's pool
            raise ConfigError(str(exc)) from None
    try:
        manifest = write_dataset(s.out, world, progress=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the data set to {s.out}: {exc.strerror or exc}") from None
    elapsed = time.perf_counter() - began
    log.info("wrote %s in %.1f s", s.out, elapsed)
    print(summary(s.out, manifest, elapsed))
    return 0


def summary(out: Path, manifest: dict[str, Any], elapsed_s: float) -> str:
    counts = manifest["counts"]
    rows = [
        ("data set", str(out)),
        ("days", f"{manifest['days']} from {manifest['start']}"),
        ("transactions", f"{counts['transactions']:,}"),
        ("fraud", f"{counts['fraud_transactions']:,} ({manifest['fraud_rate']:.3%})"),
        *((f"  {k}", f"{v:,}") for k, v in counts["fraud_by_pattern"].items()),
        ("labels", f"{counts['labels']:,} ({counts['labels_after_end']:,} after the end)"),
        *((f"  {k}", f"{v:,}") for k, v in counts["labels_by_source"].items()),
        ("drift", ", ".join(f"{d['name']}@{d['onset_day']}" for d in manifest["drift"]) or "none"),
        ("time", f"{elapsed_s:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
