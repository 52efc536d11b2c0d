"""``fraudstream train``: train a LightGBM model on a generated data set and register it.

Reads ``--data DIR`` (from ``fraudstream generate``), verifies its files against the
data set manifest, runs :func:`services.trainer.training.train_model`, prints the metric
table and registers the model (first version = champion; later ones challenger unless
``--promote``). Errors in the input are one line on stderr and exit code 2; data that
cannot train a model (no fraud labels yet...) is one line and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import settings as cfg
from services.runtime import configure_logging, run_command

PROG = "fraudstream train"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a LightGBM fraud model on a data set from `fraudstream generate` "
        "(time-based split, labels as known at training time) and register it.",
    )
    cfg.add_flags(parser, cfg.TrainSettings)
    return parser


def train_config(settings: cfg.TrainSettings, progress: bool) -> Any:
    """The recipe's :class:`TrainConfig`; a bad combination is a one-line ConfigError."""
    from services.trainer.split import SplitConfig
    from services.trainer.training import TrainConfig

    review, block = settings.review_rate, settings.block_rate
    if not block <= review:
        raise cfg.ConfigError(
            f"invalid --review-rate={review} / --block-rate={block}: the block rate must not exceed "
            f"the review rate"
        )
    try:
        split = SplitConfig(settings.train_fraction, settings.validation_fraction)
    except ValueError as exc:
        raise cfg.ConfigError(f"invalid --train-fraction/--validation-fraction: {exc}") from None
    return TrainConfig(
        max_rounds=settings.max_rounds,
        seed=settings.seed,
        split=split,
        review_rate=review,
        block_rate=block,
        imbalance=settings.imbalance,
        progress=progress,
    )


def _with_progress(records: Iterator[dict[str, Any]], desc: str, enabled: bool) -> list[dict[str, Any]]:
    from tqdm import tqdm

    return list(tqdm(records, desc=desc, unit=" rec", disable=not enabled, leave=False))


def load_dataset(
    directory: Path, progress: bool
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], dict[str, tuple[bool, str]]]:
    """Manifest, transactions, labels and truth of a verified data set directory."""
    from services import dataset

    if not directory.is_dir():
        raise cfg.ConfigError(
            f"--data {directory} is not a directory; create one with `fraudstream generate`"
        )
    try:
        manifest = dataset.read_manifest(directory)
        dataset.verify_dataset(directory)
        txns = _with_progress(dataset.iter_transactions(directory), "transactions", progress)
        labels = _with_progress(dataset.iter_labels(directory), "labels", progress)
        truth = dataset.read_truth(directory)
    except dataset.DatasetError as exc:
        raise cfg.ConfigError(f"invalid --data {directory}: {exc}") from None
    except (OSError, ValueError) as exc:  # fastavro raises ValueError on a corrupt container
        raise cfg.ConfigError(f"cannot read data set {directory}: {exc}") from None
    return manifest, txns, labels, truth


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from services.featurebuild.build import StageError
        from services.registry.errors import RegistryError
        from services.registry.store import Registry
        from services.trainer.training import TrainError, train_model

        settings = cfg.load(cfg.TrainSettings, args)
        configure_logging(settings.log_level)
        progress = sys.stderr.isatty()
        config = train_config(settings, progress)
        manifest, txns, labels, truth = load_dataset(settings.data, progress)
        try:
            result = train_model(
                txns, labels, config=config, dataset=manifest, clock=lambda: datetime.now(UTC), truth=truth
            )
        except TrainError as exc:
            print(f"{PROG}: cannot train: {exc}", file=sys.stderr)
            return 1
        except StageError as exc:
            print(f"{PROG}: feature build failed: {exc}", file=sys.stderr)
            return 1
        print(result.report)
        try:
            mv = Registry(settings.registry).register(
                settings.name,
                result.model_text,
                result.manifest,
                promote=settings.promote,
                lineage={"trigger": "cli", "data": str(settings.data)},
            )
        except RegistryError as exc:
            print(f"{PROG}: cannot register: {exc}", file=sys.stderr)
            return 1
        role = ",".join(mv.aliases) or mv.status
        print(f"\nregistered {mv.name}@{mv.version} ({role}) in {settings.registry}")
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
