"""Evaluation of a trained model, its manifest, and the readable report.

Metric names (per split in ``manifest["metrics"][split]``):

* ``label_based``: labels known at the end of the label stream (everything the label
  feed ever said); for test this is the honest production-style evaluation.
* ``truth_based``: the generator's ground truth (``truth.avro``), which also counts
  fraud that was never reported; present only when the truth is given.
* ``fit_labels``: counts of the labels the model was fitted with (known at T).
* ``alert_shares``: the share of the split at or above the review/block thresholds.
* ``recall_by_pattern``: truth-based recall per fraud pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from services.core import decision, metrics
from services.trainer.split import iso, period

if TYPE_CHECKING:
    from services.trainer.split import TimeSplit
    from services.trainer.training import Fitted, TrainConfig

LabelSet = tuple[np.ndarray, np.ndarray, int]  # is_fraud, known, cutoff_ms

LABEL_POLICY = (
    "the model is fitted at T = start of the test period; train and validation rows use the "
    "latest label with label_time <= T, unknown = legitimate; test metrics use the whole label "
    "stream (label_based) and the generator truth (truth_based)"
)


def _scored(y: np.ndarray, scores: np.ndarray, th: decision.Thresholds) -> dict[str, Any]:
    out: dict[str, Any] = metrics.summary(y, scores)
    review, block = scores >= th.review, scores >= th.block
    positives = int(y.sum())
    out["recall_at_review_threshold"] = float(y[review].sum() / positives) if positives else None
    out["recall_at_block_threshold"] = float(y[block].sum() / positives) if positives else None
    out["precision_at_review_threshold"] = float(y[review].mean()) if review.any() else None
    return metrics.nan_to_none(out)


def _by_pattern(patterns: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, Any]]:
    out = {}
    for name in sorted({str(p) for p in patterns if p}):
        y = patterns == name
        out[name] = metrics.nan_to_none(
            {
                "rows": int(y.sum()),
                "recall_at_top_decile": metrics.recall_at_top_fraction(y, scores, 0.1),
                "recall_at_1pct_alert_rate": metrics.recall_at_alert_rate(y, scores, 0.01),
            }
        )
    return out


def evaluate(
    scores: np.ndarray,
    *,
    fit_labels: LabelSet,
    final_labels: LabelSet,
    truth: np.ndarray | None,
    patterns: np.ndarray | None,
    thresholds: decision.Thresholds,
) -> dict[str, Any]:
    """Every number reported for one split."""
    fit_y, fit_known, fit_cutoff = fit_labels
    end_y, end_known, end_cutoff = final_labels
    out: dict[str, Any] = {
        "rows": int(scores.size),
        "fit_labels": {
            "cutoff_ms": fit_cutoff,
            "known": int(fit_known.sum()),
            "fraud": int(fit_y.sum()),
        },
        "alert_shares": metrics.nan_to_none(decision.alert_shares(scores, thresholds)),
        "label_based": {
            "label_cutoff_ms": end_cutoff,
            "labels_known": int(end_known.sum()),
            **_scored(end_y, scores, thresholds),
        },
    }
    if truth is not None:
        out["truth_based"] = _scored(truth, scores, thresholds)
    if patterns is not None:
        out["recall_by_pattern"] = _by_pattern(patterns, scores)
    return out


def feature_importance(booster: Any, names: tuple[str, ...]) -> dict[str, float]:
    """Total gain per feature, rounded so the manifest stays readable."""
    gain = booster.feature_importance(importance_type="gain")
    return {name: round(float(g), 3) for name, g in zip(names, gain, strict=True)}


def schema_fingerprint() -> str:
    """Hex fingerprint of the Transaction schema the model's features were built from."""
    from services.core.codec import Codec

    return bytes(Codec.load().fingerprint("Transaction")).hex()


def build_manifest(
    *,
    config: TrainConfig,
    fitted: Fitted,
    split: TimeSplit,
    thresholds: decision.Thresholds,
    psi_reference: dict[str, Any],
    evaluation: dict[str, Any],
    dataset: Mapping[str, Any],
    content_hash: str,
    trained_at: datetime,
    timings: Mapping[str, float | None],
) -> dict[str, Any]:
    """Everything the registry stores beside the model text (it adds the identity fields)."""
    import lightgbm

    from services.core import features

    names = tuple(features.FEATURE_NAMES)
    return {
        "feature_names": list(names),
        "feature_set_fingerprint": features.FEATURE_SET_FINGERPRINT,
        "readable_features": {n: features.READABLE.get(n, n) for n in names},
        "schema_fingerprint": schema_fingerprint(),
        "lightgbm_version": lightgbm.__version__,
        "params": fitted.params,
        "best_iteration": fitted.best_iteration,
        "max_rounds": config.max_rounds,
        "early_stopping_rounds": config.early_stopping_rounds,
        "seed": config.seed,
        "thresholds": thresholds.to_dict(),
        "psi_reference": {**psi_reference, "source": "validation split: feature values and scores"},
        "metrics": evaluation,
        "feature_importance_gain": feature_importance(fitted.booster, names),
        "split": {
            **split.periods(),
            "train_fraction": config.split.train_fraction,
            "validation_fraction": config.split.validation_fraction,
            "align_to_day": config.split.align_to_day,
        },
        "training_window": period(split.start_ms, split.validation_end_ms),
        "label_policy": {
            "rule": LABEL_POLICY,
            "fit_label_cutoff_ms": split.fit_label_cutoff_ms,
            "fit_label_cutoff": iso(split.fit_label_cutoff_ms),
            "unknown_label": "legitimate",
        },
        "data": {"content_sha256": content_hash, "files": dict(dataset.get("files") or {})},
        "dataset": {k: v for k, v in dataset.items() if k != "files"},
        "trained_at": trained_at.isoformat(timespec="milliseconds"),
        "timings_s": dict(timings),
    }


# --------------------------------------------------------------------------- report

ROWS: tuple[tuple[str, str], ...] = (
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC (avg precision)"),
    ("recall_at_top_decile", "recall @ top decile"),
    ("recall_at_1pct_alert_rate", "recall @ 1% alert rate"),
    ("precision_at_k", "precision @ k"),
    ("recall_at_review_threshold", "recall @ review threshold"),
    ("recall_at_block_threshold", "recall @ block threshold"),
)
SPLITS = ("train", "validation", "test")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = [f"{{:<{widths[0]}}}", *[f"{{:>{w}}}" for w in widths[1:]]]
    lines = ["  ".join(f.format(c) for f, c in zip(fmt, header, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(f.format(c) for f, c in zip(fmt, r, strict=True)) for r in rows]
    return lines


def render_report(manifest: Mapping[str, Any]) -> str:
    """The metrics table plus thresholds and cut-offs, as printed by ``fraudstream train``."""
    m = manifest["metrics"]
    split = manifest["split"]
    rows: list[list[str]] = [
        ["period"] + [f"{split[s]['start'][:10]}..{split[s]['end'][:10]}" for s in SPLITS],
        ["rows"] + [_fmt(m[s]["rows"]) for s in SPLITS],
        ["fraud labels known at fit (T)"] + [_fmt(m[s]["fit_labels"]["fraud"]) for s in SPLITS],
    ]
    for kind in ("label_based", "truth_based"):
        if kind not in m["test"]:
            continue
        rows.append([f"fraud ({kind})"] + [_fmt(m[s][kind]["positives"]) for s in SPLITS])
        rows += [[f"{text} [{kind}]"] + [_fmt(m[s][kind][key]) for s in SPLITS] for key, text in ROWS]
    rows.append(["precision k"] + [_fmt(m[s]["label_based"]["k"]) for s in SPLITS])
    rows.append(
        ["alert share (review or block)"] + [_fmt(m[s]["alert_shares"]["review_or_block"]) for s in SPLITS]
    )
    lines = _table(["metric", *SPLITS], rows)
    by_pattern = m["test"].get("recall_by_pattern") or {}
    if by_pattern:
        lines += [
            "",
            *_table(
                ["test recall by pattern (truth)", "rows", "top decile", "1% alerts"],
                [
                    [
                        name,
                        _fmt(v["rows"]),
                        _fmt(v["recall_at_top_decile"]),
                        _fmt(v["recall_at_1pct_alert_rate"]),
                    ]
                    for name, v in by_pattern.items()
                ],
            ),
        ]
    th = manifest["thresholds"]
    lines += [
        "",
        f"thresholds: review >= {th['review']:.6f} (target {th['review_rate']:.2%} of traffic), "
        f"block >= {th['block']:.6f} (target {th['block_rate']:.2%})",
        f"best iteration {manifest['best_iteration']}; labels known at T = "
        f"{manifest['label_policy']['fit_label_cutoff']} used for fitting",
    ]
    return "\n".join(lines)
