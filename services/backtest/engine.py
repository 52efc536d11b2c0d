"""The backtest: a data set through the live services' code, offline, deterministically.

Per data set: features once (:mod:`services.backtest.data`, the trainer's and the
scorer's feature function). Per model: one LightGBM predict over the whole matrix (a
tree ensemble scores a row the same whatever the batch, so the scores equal the
scorer's, bit for bit). Per scenario (a model with a set of thresholds): decisions with
:func:`services.core.decision.decide_many`, then the monitor's own core
(:mod:`services.backtest.monitor_pass`) for PSI windows, recall cohorts and retrain
decisions. Nothing reads the wall clock or Kafka, so the same inputs give the same JSON.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from services.backtest import figures
from services.backtest.data import BacktestData
from services.backtest.monitor_pass import LabelColumns, MonitorOutcome, ScoredRows, run_monitor
from services.backtest.scoring import predict
from services.core.decision import Thresholds, choose_thresholds, decide_many
from services.core.labels import join_labels
from services.core.replay_plan import iso
from services.monitor.champion import champion_from_manifest
from services.monitor.core import MonitorConfig
from services.scorer.model_watch import ServingModel

log = logging.getLogger(__name__)

PlanKind = Literal["manifest", "fixed", "alert_rate"]


@dataclass(frozen=True)
class ThresholdPlan:
    """Where a scenario's thresholds come from: the manifest, fixed values (what-if), or
    target alert rates chosen on the backtest's own scores (what-if, in hindsight)."""

    kind: PlanKind = "manifest"
    review: float = math.nan  # a threshold (fixed) or a rate (alert_rate)
    block: float = math.nan

    @property
    def label(self) -> str:
        if self.kind == "fixed":
            return f"what-if review>={self.review:g}, block>={self.block:g}"
        if self.kind == "alert_rate":
            return f"what-if alert rate {self.review:g} (block {self.block:g}), hindsight"
        return "manifest thresholds"

    def resolve(self, model: ServingModel, scores: npt.NDArray[np.float64]) -> Thresholds:
        if self.kind == "fixed":
            return Thresholds(self.review, self.block, math.nan, math.nan)
        if self.kind == "alert_rate":
            return choose_thresholds(scores, self.review, self.block)
        return model.thresholds


@dataclass(frozen=True)
class ModelUnderTest:
    ref: str  # as given on the command line, e.g. fraud@champion
    serving: ServingModel
    manifest: dict[str, Any]

    @property
    def label(self) -> str:
        return self.serving.label


def final_labels(data: BacktestData) -> npt.NDArray[np.bool_] | None:
    """Every label known by the end of the labels file, aligned to the rows."""
    if len(data.labels) == 0:
        return None
    cutoff = int(data.labels.label_ms.max())
    return join_labels(data.frame.txn_ids, data.labels.records, cutoff).is_fraud


def run_scenario(
    data: BacktestData,
    model: ModelUnderTest,
    scores: npt.NDArray[np.float64],
    plan: ThresholdPlan,
    policy: MonitorConfig,
    labelled: npt.NDArray[np.bool_] | None,
) -> dict[str, Any]:
    frame = data.frame
    thresholds = plan.resolve(model.serving, scores)
    decisions = decide_many(scores, thresholds)
    flagged = decisions != "ALLOW"
    champion = champion_from_manifest(model.manifest)
    rows = ScoredRows(frame.txn_ids, frame.event_time, scores, flagged, frame.X)
    labels = LabelColumns(data.labels.txn_id, data.labels.label_ms, data.labels.is_fraud)
    outcome: MonitorOutcome = run_monitor(champion, policy, rows, labels)
    truth = data.truth.is_fraud if data.truth is not None else None
    return {
        "key": f"{model.label} | {plan.label}",
        "model": {
            "ref": model.ref,
            "name": model.serving.name,
            "version": model.serving.version,
            "sha256": model.serving.sha256,
        },
        "threshold_source": plan.kind,
        "threshold_label": plan.label,
        "thresholds": figures.thresholds_dict(thresholds),
        "n": len(frame),
        "decisions": figures.decision_counts(decisions),
        "alert_share": float(flagged.mean()) if len(frame) else math.nan,
        "quality": {
            "truth": figures.quality(scores, truth, decisions),
            "labels": figures.quality(scores, labelled, decisions),
        },
        "score_histogram": figures.score_histogram(scores, truth if truth is not None else labelled),
        "daily": figures.daily(frame.event_time, decisions),
        "psi_windows": figures.windows(outcome.windows),
        "cohorts": figures.cohorts(outcome.cohorts, frame.event_time, flagged, truth, labelled),
        "cohorts_as_of": None if outcome.now_ms is None else iso(outcome.now_ms),
        "baseline": None
        if champion.baseline is None
        else {"metric": champion.baseline.metric, "value": champion.baseline.value},
        "retrain_events": outcome.events,
    }


def policy_dict(policy: MonitorConfig) -> dict[str, Any]:
    return {
        "window_s": policy.window.window_ms // 1000,
        "allowed_lateness_s": policy.window.allowed_lateness_ms // 1000,
        "window_min_records": policy.window.min_records,
        "drift_alpha": policy.drift.alpha,
        "drift_min_psi": policy.drift.min_psi,
        "drift_consecutive": policy.drift.consecutive,
        "label_horizon_days": policy.horizon_days,
        "recall_min_maturity": policy.min_maturity,
        "recall_margin": policy.recall_margin,
        "retrain_cooldown_s": policy.cooldown_ms // 1000,
        "recall_pool_days": policy.pool_days,
        "recall_min_frauds": policy.min_frauds,
        "drift_warmup_s": policy.drift.warmup_ms // 1000,
        "label_wait_max_s": None if policy.label_wait_max_ms is None else policy.label_wait_max_ms // 1000,
    }


def dataset_dict(data: BacktestData) -> dict[str, Any]:
    m = data.manifest
    times = data.frame.event_time
    return {
        "directory": str(data.directory),
        "seed": m.get("seed"),
        "days": m.get("days"),
        "start": m.get("start"),
        "transactions": len(data.frame),
        "labels": len(data.labels),
        "first_event": iso(int(times.min())) if times.size else None,
        "last_event": iso(int(times.max())) if times.size else None,
        "fraud_rate": m.get("fraud_rate"),
        "drift": [
            {"name": d.get("name"), "onset": d.get("onset"), "onset_ms": d.get("onset_ms")}
            for d in m.get("drift", [])
        ],
        "truth": data.truth is not None,
    }


def run_backtest(
    data: BacktestData,
    models: Sequence[ModelUnderTest],
    plans: Sequence[ThresholdPlan],
    policy: MonitorConfig,
    *,
    num_threads: int = 0,
    on_step: Callable[[str], None] = lambda step: None,
    scores: Sequence[npt.NDArray[np.float64]] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Every (model, threshold plan) scenario; returns the JSON-ready result and timings.
    ``scores``: each model's scores of every row, if already predicted (while the
    features were built, :mod:`services.backtest.scoring`)."""
    timings: dict[str, float] = dict(data.timings)
    labelled = final_labels(data)
    scenarios = []
    for i, model in enumerate(models):
        on_step(f"scoring {model.label}")
        began = time.perf_counter()
        model_scores = scores[i] if scores is not None else predict(model.serving, data.frame.X, num_threads)
        timings[f"predict_s[{model.label}]"] = time.perf_counter() - began
        for plan in plans:
            on_step(f"monitor pass {model.label} ({plan.label})")
            began = time.perf_counter()
            scenarios.append(run_scenario(data, model, model_scores, plan, policy, labelled))
            timings[f"scenario_s[{model.label}|{plan.kind}]"] = time.perf_counter() - began
    result = {
        "generated_by": "fraudstream backtest",
        "dataset": dataset_dict(data),
        "policy": policy_dict(policy),
        "scenarios": scenarios,
    }
    return figures.clean(result), timings
