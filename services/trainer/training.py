"""The training recipe: offline features -> time split -> leak-free labels -> LightGBM.

Used by ``fraudstream train`` and by the trainer service on retrain events, so it takes
plain records and returns text + JSON; it reads no files and no environment.

Steps (see :mod:`services.trainer.split` for the split and label policy):

1. Features come from :func:`services.featurebuild.build.build_features`, the same feature
   code the scorer runs online; nothing is recomputed here.
2. Split by event time into train / validation / test.
3. Fit labels: known at ``T = validation_end``; unknown = legitimate.
4. LightGBM, deterministic (fixed seed, ``deterministic``, 2 threads, row-wise
   histograms), early-stopped on validation ROC AUC. Choices measured on the 60-day
   seed-7 data set (test, label-based PR AUC):

   * no class reweighting (0.62) beats ``scale_pos_weight`` (0.35) and ``is_unbalance``
     (0.47): only the ranking matters, thresholds are picked on the scores.
   * stopping on AUC, not average precision: the validation labels known at T are few
     and skewed to the fast ones (confirmed account takeovers); their AP peaks after
     ~15 rounds while the truth keeps improving for ~150. AUC tracks the truth.
   * big leaves (0.4% of the train rows) and ``lambda_l2=10``: unknown labels count as
     legit, so a small leaf learns label noise (0.55 with 100-row leaves).
5. Thresholds for the target alert rates from the validation scores.
6. PSI reference from the validation split: feature values and *held-out* scores. Train
   scores are overfitted (too extreme) and early train rows have cold per-card history,
   so validation is what a healthy live window should look like.
7. Metrics on every split, label-based (and truth-based when the ground truth is given).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from services.core import decision, psi
from services.core.labels import join_labels, last_label_time
from services.trainer.report import build_manifest, evaluate, render_report
from services.trainer.split import SplitConfig, TimeSplit, split_by_time

log = logging.getLogger(__name__)

Imbalance = Literal["none", "scale_pos_weight", "is_unbalance"]
StopMetric = Literal["auc", "average_precision"]

# Truth lookup: txn_id -> (is_fraud, pattern); "" pattern = legitimate.
Truth = Mapping[str, tuple[bool, str]]


# Leaves need this share of the train rows (at least MIN_LEAF_ROWS): large leaves keep
# the trees off the label noise (unreported and not-yet-reported fraud counted as legit).
MIN_LEAF_SHARE = 0.004
MIN_LEAF_ROWS = 20


class TrainError(Exception):
    """The data cannot train a model (too short, no fraud labels...). One-line message."""


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7
    split: SplitConfig = field(default_factory=SplitConfig)
    review_rate: float = decision.DEFAULT_REVIEW_RATE
    block_rate: float = decision.DEFAULT_BLOCK_RATE
    imbalance: Imbalance = "none"
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int | None = None  # None: MIN_LEAF_SHARE of the train rows
    lambda_l2: float = 10.0
    stop_metric: StopMetric = "auc"
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    psi_bins: int = psi.DEFAULT_BINS
    progress: bool = False


@dataclass(frozen=True)
class TrainResult:
    model_text: str  # LightGBM text format, trimmed to the best iteration
    manifest: dict[str, Any]  # everything the registry needs except its identity fields
    report: str  # readable summary table


@dataclass(frozen=True)
class Fitted:
    booster: Any  # lightgbm.Booster
    best_iteration: int
    params: dict[str, Any]


def min_leaf_rows(config: TrainConfig, train_rows: int) -> int:
    if config.min_data_in_leaf is not None:
        return config.min_data_in_leaf
    return max(MIN_LEAF_ROWS, round(MIN_LEAF_SHARE * train_rows))


def lgb_params(config: TrainConfig, positives: int, negatives: int) -> dict[str, Any]:
    """LightGBM parameters; every one that affects the result is pinned."""
    params: dict[str, Any] = {
        "objective": "binary",
        "metric": config.stop_metric,  # the other metrics are computed once, after training
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": min_leaf_rows(config, positives + negatives),
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": config.lambda_l2,
        "max_bin": 255,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": 2,
        "force_row_wise": True,
        "verbose": -1,
    }
    if config.imbalance == "scale_pos_weight":
        params["scale_pos_weight"] = round(negatives / max(positives, 1), 6)
    elif config.imbalance == "is_unbalance":
        params["is_unbalance"] = True
    return params


def _progress_callback(total: int, enabled: bool) -> tuple[Callable[[Any], None], Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc="boosting", unit="round", disable=not enabled, leave=False)

    def step(env: Any) -> None:
        bar.update(1)

    return step, bar.close


def fit(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    feature_names: Sequence[str],
    config: TrainConfig,
) -> Fitted:
    """Train with early stopping on the validation split."""
    import lightgbm as lgb

    positives = int(y_train.sum())
    params = lgb_params(config, positives, int(y_train.size - positives))
    names = list(feature_names)
    train_set = lgb.Dataset(X_train, label=y_train.astype(np.float64), feature_name=names, free_raw_data=True)
    val_set = lgb.Dataset(
        X_val, label=y_val.astype(np.float64), feature_name=names, reference=train_set, free_raw_data=True
    )
    step, close = _progress_callback(config.max_rounds, config.progress)
    try:
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=config.max_rounds,
            valid_sets=[val_set],
            valid_names=["validation"],
            callbacks=[
                lgb.early_stopping(config.early_stopping_rounds, verbose=False),
                step,
            ],
        )
    finally:
        close()
    best = int(booster.best_iteration) or int(booster.current_iteration())
    return Fitted(booster=booster, best_iteration=best, params=params)


def content_sha256(
    dataset: Mapping[str, Any], txns: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]]
) -> str:
    """Hash of the training data: from the data set's file hashes, else of the records."""
    files = dataset.get("files")
    digest = hashlib.sha256()
    if isinstance(files, Mapping) and files:
        digest.update(json.dumps(files, sort_keys=True).encode())
        return digest.hexdigest()
    for record in (*txns, *labels):
        digest.update(json.dumps(record, sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def frame_sha256(dataset: Mapping[str, Any], frame: Any, labels: Sequence[Mapping[str, Any]]) -> str:
    """Like :func:`content_sha256`, from a feature frame when the data set has no file hashes."""
    if dataset.get("files"):
        return content_sha256(dataset, (), ())
    digest = hashlib.sha256()
    digest.update("\n".join(frame.txn_ids).encode())
    digest.update(np.ascontiguousarray(frame.event_time, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(frame.X, dtype=np.float64).tobytes())
    digest.update(content_sha256({}, (), labels).encode())
    return digest.hexdigest()


def first_occurrences(txn_ids: Sequence[str]) -> np.ndarray:
    """Row indices of the first row of each transaction id, in order."""
    seen: set[str] = set()
    keep = []
    for i, txn_id in enumerate(txn_ids):
        if txn_id not in seen:
            seen.add(txn_id)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _check_trainable(y_train: np.ndarray, y_val: np.ndarray, split: TimeSplit) -> None:
    if not y_train.any():
        raise TrainError(
            "no fraud label in the train split was known at the fit cutoff; "
            "use a longer data set (more days) or a larger fraud rate"
        )
    if not y_val.any():
        raise TrainError(
            "no fraud label in the validation split was known at the fit cutoff; early stopping "
            "needs some: use a longer data set or a larger --validation-fraction"
        )


def train_on_features(
    frame: Any,
    labels: Sequence[Mapping[str, Any]],
    *,
    config: TrainConfig,
    dataset: Mapping[str, Any],
    clock: Callable[[], datetime],
    truth: Truth | None = None,
    feature_seconds: float | None = None,
    content_hash: str | None = None,
) -> TrainResult:
    """The recipe after feature building (``frame`` is an offline ``FeatureFrame``).

    ``content_hash`` identifies the data; by default the data set's file hashes, or else
    a hash of the frame (ids, times, feature values) and the labels.
    """
    from services.core import features

    started = time.perf_counter()
    names = tuple(features.FEATURE_NAMES)
    first = first_occurrences(frame.txn_ids)  # a redelivered transaction is one row
    X = np.asarray(frame.X, dtype=np.float64)[first]
    event_time = np.asarray(frame.event_time, dtype=np.int64)[first]
    txn_ids = [frame.txn_ids[i] for i in first]
    if len(txn_ids) < len(frame.txn_ids):
        log.info("dropped %d duplicate transaction rows", len(frame.txn_ids) - len(txn_ids))
    try:
        split = split_by_time(event_time, config.split)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    masks = dict(zip(("train", "validation", "test"), split.masks(event_time), strict=True))
    fit_labels = join_labels(txn_ids, labels, split.fit_label_cutoff_ms)
    y_fit = fit_labels.is_fraud
    tr, va = masks["train"], masks["validation"]
    _check_trainable(y_fit[tr], y_fit[va], split)

    fitted = fit(X[tr], y_fit[tr], X[va], y_fit[va], names, config)
    scores = fitted.booster.predict(X, num_iteration=fitted.best_iteration)
    thresholds = decision.choose_thresholds(scores[va], config.review_rate, config.block_rate)
    psi_reference = psi.build_references(
        X[va], names, scores[va], config.psi_bins, exempt=features.DRIFT_EXEMPT
    )

    end_cutoff = last_label_time(labels)
    eval_labels = join_labels(txn_ids, labels, split.end_ms if end_cutoff is None else end_cutoff)
    truth_y, patterns = _truth_arrays(txn_ids, truth)
    evaluation = {
        name: evaluate(
            scores[mask],
            fit_labels=(y_fit[mask], fit_labels.known[mask], split.fit_label_cutoff_ms),
            final_labels=(eval_labels.is_fraud[mask], eval_labels.known[mask], eval_labels.cutoff_ms),
            truth=None if truth_y is None else truth_y[mask],
            patterns=None if patterns is None else patterns[mask],
            thresholds=thresholds,
        )
        for name, mask in masks.items()
    }
    timings = {"features_s": feature_seconds, "train_s": round(time.perf_counter() - started, 3)}
    manifest = build_manifest(
        config=config,
        fitted=fitted,
        split=split,
        thresholds=thresholds,
        psi_reference=psi_reference,
        evaluation=evaluation,
        dataset=dataset,
        content_hash=content_hash or frame_sha256(dataset, frame, labels),
        trained_at=clock(),
        timings=timings,
    )
    model_text = fitted.booster.model_to_string(num_iteration=fitted.best_iteration)
    return TrainResult(model_text=model_text, manifest=manifest, report=render_report(manifest))


def _truth_arrays(txn_ids: Sequence[str], truth: Truth | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    if truth is None:
        return None, None
    missing = sum(1 for t in txn_ids if t not in truth)
    if missing:
        raise TrainError(f"ground truth lacks {missing} of {len(txn_ids)} transactions")
    y = np.fromiter((truth[t][0] for t in txn_ids), dtype=bool, count=len(txn_ids))
    patterns = np.array([truth[t][1] for t in txn_ids], dtype=object)
    return y, patterns


def _in_event_time_order(txns: Sequence[Mapping[str, Any]]) -> bool:
    keys = [(t["event_time"], t["txn_id"]) for t in txns]
    return all(a <= b for a, b in zip(keys, keys[1:], strict=False))


def train_model(
    txns: Sequence[Mapping[str, Any]],
    labels: Sequence[Mapping[str, Any]],
    *,
    config: TrainConfig,
    dataset: Mapping[str, Any],
    clock: Callable[[], datetime],
    truth: Truth | None = None,
) -> TrainResult:
    """Build offline features for ``txns`` and run the recipe; see the module doc."""
    from tqdm import tqdm

    from services.core import offline
    from services.featurebuild.build import build_features

    if not txns:
        raise TrainError("no transactions to train on")
    started = time.perf_counter()
    if not _in_event_time_order(txns):
        txns = offline.sort_by_event_time(txns)  # the canonical replay order
    with tqdm(total=len(txns), desc="features", unit=" row", disable=not config.progress, leave=False) as bar:
        frame = build_features(txns, on_chunk=lambda block: bar.update(len(block)))
    feature_seconds = round(time.perf_counter() - started, 3)
    log.info("built %d feature rows in %.1f s", len(frame.txn_ids), feature_seconds)
    return train_on_features(
        frame,
        labels,
        config=config,
        dataset=dataset,
        clock=clock,
        truth=truth,
        feature_seconds=feature_seconds,
        content_hash=content_sha256(dataset, txns, labels),
    )
