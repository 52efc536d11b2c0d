"""``fraudstream backtest DIR --model NAME@ALIAS|VERSION [--model ...] --report OUT``.

Runs a data set through the same feature, scoring, PSI, recall and retrain-decision
code as the live services, offline (no Kafka, no Redis) and deterministically, for one
or more models side by side, with optional what-if thresholds; writes an HTML report
with plots and, beside it, a JSON file with every figure.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services import settings
from services.runtime import configure_logging, run_command
from services.settings import BacktestSettings, ConfigError, MonitorPolicySettings

if TYPE_CHECKING:
    from tqdm import tqdm

PROG = "fraudstream backtest"
log = logging.getLogger(__name__)

EPILOG = """\
what-if thresholds: --threshold review=0.3,block=0.8 scores each model with those
cut-offs; --alert-rate 0.01 (or review=0.01,block=0.0025) picks the cut-offs that alert
on that share of the backtest's own scores (hindsight). Each adds a scenario per model
next to the manifest's thresholds. exit status: 0 report written; 2 bad flags, data set
or model.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Backtest models on a data set from `fraudstream generate`: the live services' "
        "features, scores, decisions, PSI windows, recall cohorts and retrain decisions, offline; "
        "an HTML report with plots and a JSON of every figure.",
        epilog=EPILOG,
    )
    parser.add_argument("dir", nargs="?", help="the data set directory (same as --data)")
    settings.add_flags(parser, BacktestSettings)
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME@ALIAS|VERSION",
        help="model to backtest (repeatable) [default fraud@champion]",
    )
    parser.add_argument(
        "--threshold",
        action="append",
        metavar="review=R,block=B",
        help="what-if score thresholds for every model (repeatable)",
    )
    parser.add_argument(
        "--alert-rate",
        action="append",
        metavar="RATE|review=R,block=B",
        help="what-if: thresholds that alert on this share of the scores (repeatable)",
    )
    parser.add_argument(
        "--feature-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse/write the feature matrix in DIR/.cache [default on]",
    )
    return parser


def parse_pairs(text: str, flag: str, single: str | None = None) -> dict[str, float]:
    """``review=0.3,block=0.8`` (or a bare number for ``single``) -> floats."""
    out: dict[str, float] = {}
    try:
        if single is not None and "=" not in text:
            return {single: float(text)}
        for part in text.split(","):
            key, _, value = part.partition("=")
            out[key.strip()] = float(value)
    except ValueError:
        raise ConfigError(f"invalid {flag} {text!r}: use review=R,block=B with numbers") from None
    if set(out) != {"review", "block"} or not all(math.isfinite(v) for v in out.values()):
        raise ConfigError(f"invalid {flag} {text!r}: give both review= and block=, e.g. review=0.3,block=0.8")
    return out


def threshold_plans(args: argparse.Namespace) -> list[Any]:
    from services.backtest.engine import ThresholdPlan

    plans = [ThresholdPlan()]
    for text in args.threshold or []:
        p = parse_pairs(text, "--threshold")
        if not 0 <= p["review"] <= p["block"] <= 1:
            raise ConfigError(f"invalid --threshold {text!r}: need 0 <= review <= block <= 1")
        plans.append(ThresholdPlan("fixed", p["review"], p["block"]))
    for text in args.alert_rate or []:
        p = parse_pairs(text, "--alert-rate", single="review")
        review = p["review"]
        block = p.get("block", review / 4)  # the recipe's default ratio (2% review, 0.5% block)
        if not 0 < block <= review < 1:
            raise ConfigError(f"invalid --alert-rate {text!r}: need 0 < block <= review < 1")
        plans.append(ThresholdPlan("alert_rate", review, block))
    return plans


def load_models(registry: Path, refs: Sequence[str]) -> list[Any]:
    from services.backtest.engine import ModelUnderTest
    from services.registry import Registry, RegistryError, loader
    from services.scorer.model_watch import ServingModel, load_serving

    models = []
    for ref in refs:
        try:
            mv = Registry(registry).resolve(ref)
            serving: ServingModel = load_serving(mv)
            manifest = loader.verify(mv)
        except RegistryError as exc:
            raise ConfigError(f"--model {ref}: {exc}") from None
        models.append(ModelUnderTest(ref, serving, manifest))
    return models


def policy(cfg: MonitorPolicySettings) -> Any:
    """The monitor's config, built by the monitor's own code from the shared policy settings."""
    from services.monitor.core import MonitorConfig

    return MonitorConfig.from_settings(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.data is None and args.dir is not None:
        args.data = args.dir

    def body() -> int:
        cfg = settings.load(BacktestSettings, args)
        configure_logging(cfg.log_level)
        return run(cfg, args)

    return run_command(PROG, body)


def run(cfg: BacktestSettings, args: argparse.Namespace) -> int:
    from services import dataset
    from services.backtest import report
    from services.backtest.engine import run_backtest
    from services.backtest.scoring import load_scored
    from services.featurebuild.build import StageError

    # The monitor core logs each retrain request at WARNING for operators; in a backtest
    # those requests are the report's content, not news.
    logging.getLogger("services.monitor.core").setLevel(max(logging.ERROR, log.getEffectiveLevel()))
    plans = threshold_plans(args)
    monitor_policy = policy(cfg)
    models = load_models(cfg.registry, args.model or ["fraud@champion"])
    if not cfg.data.is_dir():
        raise ConfigError(f"--data {cfg.data} is not a directory; create one with `fraudstream generate`")
    started = time.perf_counter()
    print(f"backtest: reading {cfg.data} and building features", file=sys.stderr)
    try:
        with feature_progress(cfg.data) as bar:
            data, scores = load_scored(
                cfg.data, [m.serving for m in models], use_cache=args.feature_cache, on_rows=bar.update
            )
    except dataset.DatasetError as exc:
        raise ConfigError(f"invalid data set {cfg.data}: {exc}") from None
    except StageError as exc:
        print(f"backtest: feature build failed: {exc}", file=sys.stderr)
        return 1
    if data.cache_hit:
        print("backtest: features from the cache", file=sys.stderr)
    result, timings = run_backtest(
        data,
        models,
        plans,
        monitor_policy,
        on_step=lambda step: print(f"backtest: {step}", file=sys.stderr),
        scores=scores,
    )
    html, js = report.write(result, cfg.report)
    elapsed = time.perf_counter() - started
    for name, seconds in timings.items():
        log.info("timing %s %.2f s", name, seconds)
    print(render_summary(result))
    n = len(data.frame)
    print(f"\n{n:,} transactions, {len(result['scenarios'])} scenarios in {elapsed:.1f} s")
    print(f"report:  {html}\nfigures: {js}")
    return 0


def feature_progress(directory: Path) -> tqdm[Any]:
    """A progress bar for the feature build on a terminal; its total from the data set's
    manifest (none if the manifest does not say)."""
    from tqdm import tqdm

    from services import dataset

    try:
        total = int(dataset.read_manifest(directory)["counts"]["transactions"])
    except (dataset.DatasetError, KeyError, TypeError, ValueError):
        total = None
    return tqdm(total=total, desc="features", unit=" row", disable=not sys.stderr.isatty(), leave=False)


def render_summary(result: dict[str, Any]) -> str:
    rows = [("scenario", "alert share", "recall (truth)", "retrain events")]
    for s in result["scenarios"]:
        truth = s["quality"]["truth"] or {}
        recall = truth.get("recall_at_review_threshold")
        reasons = [e["reason"] for e in s["retrain_events"]]
        rows.append(
            (
                s["key"],
                f"{100 * s['alert_share']:.2f}%" if s["alert_share"] is not None else "-",
                "-" if recall is None else f"{100 * recall:.1f}%",
                f"{reasons.count('DRIFT')} drift, {reasons.count('RECALL_DECAY')} recall decay",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


if __name__ == "__main__":
    sys.exit(main())
