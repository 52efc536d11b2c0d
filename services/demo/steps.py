"""The demo's steps that are not about running services: the stack, the data set, the
champion, the backtest and the live-vs-backtest comparison. Each returns plain values;
:mod:`services.demo.pipeline` strings them together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.settings import DemoSettings, MonitorSettings, StackSettings

log = logging.getLogger(__name__)

MODEL = "fraud"
CARDS = 5_000  # ~105k transactions in 60 days: the whole demo in a few minutes on 2 cores
MERCHANTS = 500
FRAUD_RATE = 0.01
MAX_ROUNDS = 400
# The monitor's policy in the demo, for the live monitor and the backtest alike: daily
# windows (the data set has ~1,750 transactions a day; the default hourly windows would
# hold too few to be tested).
MONITOR_POLICY: dict[str, Any] = {"window_s": 86_400, "window_min_records": 500}


class DemoError(Exception):
    """A step failed; the message says which and where its log is."""


@dataclass(frozen=True)
class Paths:
    root: Path
    data: Path
    models: Path
    report: Path
    logs: Path
    stack: Path
    monitor_state: Path

    @classmethod
    def of(cls, cfg: DemoSettings) -> Paths:
        root = cfg.workdir
        stack = cfg.stack_dir if "stack_dir" in cfg.model_fields_set else root / ".stack"
        return cls(root, root / "data", root / "models", root / "report" / "backtest.html", root / "logs",
                   stack, root / ".monitor")  # fmt: skip


def stack_settings(cfg: DemoSettings, paths: Paths) -> StackSettings:
    """The demo's stack: its own directory and, unless ports were given, free ports (so
    it never collides with a Kafka or Redis already running here)."""
    values = {name: getattr(cfg, name) for name in StackSettings.model_fields}
    values["stack_dir"] = paths.stack
    for port in ("kafka_port", "redis_port"):
        if port not in cfg.model_fields_set:
            values[port] = 0
    return StackSettings.model_validate(values)


def drift_onset_day(days: int) -> int:
    """Where the trainer's validation split ends (80% of the days): the champion's PSI
    reference is the world just before the drift."""
    return max(1, min(days - 1, round(days * 0.8)))


@contextlib.contextmanager
def _output_to(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        path.open("a", encoding="utf-8") as fh,
        contextlib.redirect_stdout(fh),
        contextlib.redirect_stderr(fh),
    ):
        yield


def _run_cli(main: Callable[[list[str]], int], argv: list[str], log_path: Path, what: str) -> None:
    with _output_to(log_path):
        code = main(argv)
    if code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
        raise DemoError(f"{what} failed (exit {code}); from {log_path}:\n{tail}")


def generate(cfg: DemoSettings, paths: Paths) -> dict[str, Any]:
    """A fresh data set with amount inflation and a new fraud pattern from the onset day."""
    from services import dataset
    from services.generator import cli as generate_cli

    onset = drift_onset_day(cfg.days)
    argv = ["--out", str(paths.data), "--days", str(cfg.days), "--seed", str(cfg.seed),
            "--cards", str(CARDS), "--merchants", str(MERCHANTS), "--fraud-rate", str(FRAUD_RATE),
            "--drift", f"amount_inflation@{onset}", "--drift", f"new_pattern@{onset}",
            "--force", "--log-level", "WARNING"]  # fmt: skip
    _run_cli(generate_cli.main, argv, paths.logs / "generate.log", "generating the data set")
    return dataset.read_manifest(paths.data)


def train(cfg: DemoSettings, paths: Paths) -> str:
    """Train on the data set (the recipe's time split keeps the drift out of the fit and
    the reference) and register the model as champion; returns NAME@VERSION."""
    from services.registry import Registry
    from services.trainer import train_cli

    argv = ["--data", str(paths.data), "--registry", str(paths.models), "--name", MODEL, "--promote",
            "--seed", str(cfg.seed), "--max-rounds", str(MAX_ROUNDS), "--log-level", "WARNING"]  # fmt: skip
    _run_cli(train_cli.main, argv, paths.logs / "train.log", "training the champion")
    mv = Registry(paths.models).resolve(f"{MODEL}@champion")
    return f"{mv.name}@{mv.version}"


def backtest(paths: Paths) -> tuple[dict[str, Any], dict[str, float]]:
    """The backtest of the champion (manifest thresholds, and a 1% alert budget as a
    what-if) with the monitor policy the live monitor ran with; writes the report."""
    from services.backtest import report
    from services.backtest.cli import load_models
    from services.backtest.engine import ThresholdPlan, run_backtest
    from services.backtest.scoring import load_scored
    from services.monitor.core import MonitorConfig

    models = load_models(paths.models, [f"{MODEL}@champion"])
    data, scores = load_scored(paths.data, [m.serving for m in models])
    policy = MonitorConfig.from_settings(MonitorSettings.model_validate(MONITOR_POLICY))
    plans = [ThresholdPlan(), ThresholdPlan("alert_rate", 0.01, 0.0025)]
    logging.getLogger("services.monitor.core").setLevel(logging.ERROR)  # retrain news is the report's
    result, _ = run_backtest(data, models, plans, policy, scores=scores)
    report.write(result, paths.report)
    return result, dict(zip(data.frame.txn_ids, scores[0].tolist(), strict=True))


@dataclass(frozen=True)
class Comparison:
    transactions: int
    same_scores: int
    missing: int
    live_events: list[tuple[str, str]]  # (reason, event id) in emission order
    backtest_events: list[tuple[str, str]]

    @property
    def scores_agree(self) -> bool:
        return self.same_scores == self.transactions and self.missing == 0

    @property
    def events_agree(self) -> bool:
        return self.live_events == self.backtest_events


def compare(
    live_scores: Sequence[Mapping[str, Any]],
    live_events: Sequence[Mapping[str, Any]],
    backtest_scores: Mapping[str, float],
    result: Mapping[str, Any],
) -> Comparison:
    """Live scores (champion, not shadow) and retrain events against the backtest's."""
    live = {s["txn_id"]: s["score"] for s in live_scores if not s["shadow"]}
    same = sum(1 for txn_id, score in backtest_scores.items() if live.get(txn_id) == score)
    missing = sum(1 for txn_id in backtest_scores if txn_id not in live)
    expected = result["scenarios"][0]["retrain_events"]
    return Comparison(
        transactions=len(backtest_scores),
        same_scores=same,
        missing=missing,
        live_events=[(str(e["reason"]), str(e["event_id"])) for e in live_events],
        backtest_events=[(str(e["reason"]), str(e["event_id"])) for e in expected],
    )
