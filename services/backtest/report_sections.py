"""The sections of the backtest report: a table or a few SVG charts each, from the
result JSON (see :mod:`services.backtest.report`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from services.backtest.svg import PALETTE, Chart, Rule, Series, render
from services.core.drift import SCORE
from services.core.replay_plan import iso

TOP_FEATURES = 8  # PSI charts: the score plus the features that came closest to drifting
REASON_COLOR = {"DRIFT": "#d62728", "RECALL_DECAY": "#9467bd", "MANUAL": "#7f7f7f"}


def _pct(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{100 * float(v):.{digits}f}%"


def _num(v: Any, digits: int = 4) -> str:
    return "–" if v is None else f"{float(v):.{digits}f}"


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{escape(h)}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"l" if i < left else ""}">{escape(c)}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _models(result: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Scenarios grouped by model version, in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in result["scenarios"]:
        groups.setdefault(f"{s['model']['name']}@{s['model']['version']}", []).append(s)
    return list(groups.items())


def _onsets(result: Mapping[str, Any]) -> list[Rule]:
    """One orange line per drift onset time, naming every scenario that starts there."""
    names: dict[float, list[str]] = {}
    for d in result["dataset"]["drift"]:
        if d.get("onset_ms") is not None:
            names.setdefault(float(d["onset_ms"]), []).append(str(d["name"]))
    return [Rule(at, f"{', '.join(n)} onset", "#ff7f0e") for at, n in sorted(names.items())]


# --------------------------------------------------------------------------- sections


def summary_section(result: Mapping[str, Any]) -> str:
    rows = []
    for s in result["scenarios"]:
        truth, labels = s["quality"]["truth"] or {}, s["quality"]["labels"] or {}
        reasons = [e["reason"] for e in s["retrain_events"]]
        th = s["thresholds"]
        rows.append(
            [
                s["key"],
                f"{th['review']:.6g} / {th['block']:.6g}",
                _pct(s["alert_share"]),
                _pct(s["decisions"]["BLOCK"] / s["n"] if s["n"] else None),
                _num(truth.get("roc_auc")),
                _num(truth.get("pr_auc")),
                _pct(truth.get("recall_at_review_threshold"), 1),
                _pct(truth.get("precision_at_review_threshold"), 1),
                _pct(labels.get("recall_at_review_threshold"), 1),
                f"{reasons.count('DRIFT')} drift, {reasons.count('RECALL_DECAY')} recall",
            ]
        )
    header = [
        "scenario",
        "review / block",
        "alert share",
        "block share",
        "ROC AUC (truth)",
        "PR AUC (truth)",
        "recall (truth)",
        "precision (truth)",
        "recall (labels)",
        "retrain events",
    ]
    return "<h2>Summary</h2>" + _table(header, rows)


def score_section(result: Mapping[str, Any]) -> str:
    charts = []
    for model, scenarios in _models(result):
        hist = scenarios[0]["score_histogram"]
        xs = hist["log10_edges"][:-1]
        series = [
            Series(f"{name} (n={hist[name]['n']:,})", xs, hist[name]["share"], color, "step")
            for name, color in (("legit", PALETTE[0]), ("fraud", PALETTE[1]), ("all", PALETTE[0]))
            if name in hist
        ]
        rules = []
        for i, s in enumerate(scenarios):
            color = PALETTE[(i + 2) % len(PALETTE)]
            for which in ("review", "block"):
                t = s["thresholds"][which]
                if t and t > 0:
                    rules.append(Rule(math.log10(min(max(t, 1e-6), 1.0)), f"{which} #{i + 1}", color))
        charts.append(
            render(
                Chart(
                    f"Score distribution, {model}",
                    series,
                    x_label="score (log10)",
                    y_label="share of class",
                    vrules=rules,
                    x_fmt=lambda v: f"1e{v:g}" if v < 0 else "1",
                    x_range=(-6.0, 0.0),
                    width=600,
                    extra={"figure": "score-distribution"},
                )
            )
        )
    note = '<p class="note">Thresholds: #n is the n-th scenario of the model (see the summary).</p>'
    return "<h2>Score distributions</h2>" + note + '<div class="grid">' + "".join(charts) + "</div>"


def alert_section(result: Mapping[str, Any]) -> str:
    series, targets = [], set()
    for i, s in enumerate(result["scenarios"]):
        d = s["daily"]
        series.append(
            Series(
                s["key"],
                [float(x) for x in d["day_ms"]],
                [_nan(v) for v in d["alert_share"]],
                PALETTE[i % len(PALETTE)],
                "line+dots",
            )
        )
        if s["thresholds"].get("review_rate") is not None:
            targets.add(float(s["thresholds"]["review_rate"]))
    hrules = [Rule(t, f"target {t:.2%}") for t in sorted(targets)]
    chart = render(
        Chart(
            "Daily alert rate (review or block)",
            series,
            y_label="share of transactions",
            hrules=hrules,
            vrules=_onsets(result),
            x_time=True,
            width=1180,
            height=280,
            extra={"figure": "alert-rate"},
        )
    )
    return "<h2>Alert rate</h2>" + chart


def _top_features(windows: Sequence[Mapping[str, Any]]) -> list[str]:
    closest: dict[str, float] = {}
    for w in windows:
        if not w["evaluated"]:
            continue
        for name, value in w["psi"].items():
            limit = w["threshold"].get(name)
            if name != SCORE and value is not None and limit:
                closest[name] = max(closest.get(name, 0.0), float(value) / float(limit))
    ranked = sorted(closest, key=lambda n: (-closest[n], n))
    return [SCORE, *ranked[:TOP_FEATURES]]


def psi_section(result: Mapping[str, Any]) -> str:
    out = [
        "<h2>PSI timeline</h2>",
        '<p class="note">Per closed window: PSI against the model\'s frozen reference bins (dots: '
        "filled = above the threshold) and the size-aware threshold (dashed). Shown: the score and "
        f"the {TOP_FEATURES} features closest to their threshold; every feature is in the JSON. "
        "Red lines: drift retrain events.</p>",
    ]
    for model, scenarios in _models(result):
        windows = [w for w in scenarios[0]["psi_windows"] if w["evaluated"]]
        if not windows:
            out.append(f"<p>{escape(model)}: no window had enough records to be evaluated.</p>")
            continue
        xs = [float(w["start"]) for w in windows]
        drift_rules = [
            Rule(float(e["emitted_at"]), "retrain", REASON_COLOR["DRIFT"])
            for e in scenarios[0]["retrain_events"]
            if e["reason"] == "DRIFT"
        ]
        charts = []
        for name in _top_features(windows):
            psi = [_nan(w["psi"].get(name)) for w in windows]
            limit = [_nan(w["threshold"].get(name)) for w in windows]
            above = [not (p > t) for p, t in zip(psi, limit, strict=True)]
            charts.append(
                render(
                    Chart(
                        f"{name} — {model}",
                        [
                            Series("PSI", xs, psi, PALETTE[0], "line+dots", hollow=above),
                            Series("threshold", xs, limit, "#888", "line", dash="4 3"),
                        ],
                        vrules=[*drift_rules, *_onsets(result)],
                        x_time=True,
                        width=390,
                        height=200,
                        extra={"figure": "psi", "feature": name},
                    )
                )
            )
        out.append('<div class="grid">' + "".join(charts) + "</div>")
    return "".join(out)


def recall_section(result: Mapping[str, Any]) -> str:
    out = [
        "<h2>Recall by cohort</h2>",
        '<p class="note">One point per event day, as the monitor sees it when the last transaction '
        "is scored: recall on the labels arrived by then (filled = mature cohort, hollow = provisional: "
        "too few of its labels can have arrived) and the expected label maturity; for comparison, the "
        "recall once every label is in, and on the ground truth.</p>",
        '<div class="grid">',
    ]
    for i, s in enumerate(result["scenarios"]):
        cohorts = s["cohorts"]
        if not cohorts:
            continue
        xs = [float(c["day_ms"]) for c in cohorts]
        series = [
            Series(
                "recall (labels)",
                xs,
                [_nan(c["recall"]) for c in cohorts],
                PALETTE[i % len(PALETTE)],
                "dots",
                hollow=[not c["mature"] for c in cohorts],
            ),
            Series("maturity", xs, [_nan(c["maturity"]) for c in cohorts], "#999", "line"),
        ]
        if any(c.get("final_label_recall") is not None for c in cohorts):
            series.append(
                Series(
                    "recall (all labels)",
                    xs,
                    [_nan(c["final_label_recall"]) for c in cohorts],
                    "#ff7f0e",
                    "line",
                    dash="6 3",
                )
            )
        if any(c.get("truth_frauds") is not None for c in cohorts):
            series.append(
                Series(
                    "recall (truth)",
                    xs,
                    [_nan(c["truth_recall"]) for c in cohorts],
                    "#2ca02c",
                    "line",
                    dash="3 3",
                )
            )
        hrules = []
        base = s.get("baseline")
        if base:
            margin = result["policy"]["recall_margin"]
            hrules = [
                Rule(base["value"], f"baseline {base['metric']}", "#444"),
                Rule(base["value"] - margin, "retrain below", "#d62728"),
            ]
        title = f"Recall by cohort — {s['key']}, as of {s['cohorts_as_of']}"
        out.append(
            render(
                Chart(
                    title,
                    series,
                    y_range=(0.0, 1.05),
                    hrules=hrules,
                    vrules=_onsets(result),
                    x_time=True,
                    width=585,
                    height=250,
                    extra={"figure": "recall"},
                )
            )
        )
    return "".join(out) + "</div>"


def retrain_section(result: Mapping[str, Any]) -> str:
    series, rows = [], []
    for i, s in enumerate(result["scenarios"]):
        for reason, color in REASON_COLOR.items():
            times = [float(e["emitted_at"]) for e in s["retrain_events"] if e["reason"] == reason]
            if times:
                series.append(Series(f"#{i + 1} {reason}", times, [float(i + 1)] * len(times), color, "dots"))
        for e in s["retrain_events"]:
            rows.append(
                [
                    f"#{i + 1} {s['key']}",
                    e["reason"],
                    iso(int(e["emitted_at"])),
                    f"{iso(int(e['window_start']))} .. {iso(int(e['window_end']))}",
                    str(e["event_id"])[:12],
                    str(e["details"])[:160],
                ]
            )
    n = len(result["scenarios"])
    chart = render(
        Chart(
            "When retrain events would have fired (one row per scenario)",
            series,
            y_range=(0.5, n + 0.5),
            y_label="scenario #",
            vrules=_onsets(result),
            x_time=True,
            x_range=_time_range(result),
            width=1180,
            height=120 + 30 * n,
            extra={"figure": "retrain-events"},
        )
    )
    table = (
        _table(
            ["scenario", "reason", "emitted at (event time)", "evidence window", "event id", "details"],
            rows,
            left=6,
        )
        if rows
        else "<p>No retrain event would have fired.</p>"
    )
    return "<h2>Retrain events</h2>" + chart + table


def _time_range(result: Mapping[str, Any]) -> tuple[float, float] | None:
    times = [float(d) for s in result["scenarios"] for d in s["daily"]["day_ms"]]
    times += [float(e["emitted_at"]) for s in result["scenarios"] for e in s["retrain_events"]]
    return (min(times), max(times) + 86_400_000) if times else None


def header_section(result: Mapping[str, Any], json_name: str) -> str:
    d, p = result["dataset"], result["policy"]
    drift = ", ".join(f"{x['name']} from {x['onset']}" for x in d["drift"]) or "none"
    facts = [
        ("data set", f"{d['directory']} (seed {d['seed']}, {d['days']} days from {d['start']})"),
        (
            "rows",
            f"{d['transactions']:,} transactions, {d['labels']:,} labels; ground truth: "
            f"{'yes' if d['truth'] else 'no'}",
        ),
        ("event time", f"{d['first_event']} .. {d['last_event']}"),
        ("drift scenarios", drift),
        ("monitor policy", ", ".join(f"{k}={v}" for k, v in p.items())),
        ("figures", json_name),
    ]
    items = "".join(
        f"<tr><th class='l'>{escape(k)}</th><td class='l'>{escape(v)}</td></tr>" for k, v in facts
    )
    return f"<h1>Backtest report</h1><table>{items}</table>"
