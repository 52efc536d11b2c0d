"""A small, dependency-free SVG line-chart helper for the backtest report.

Inline SVG renders in any browser and in CI without matplotlib. One chart type covers
the report: series of (x, y) points drawn as lines, steps or dots, on linear axes,
with horizontal and vertical reference lines and a legend. NaN points break a line.
Output is deterministic text (fixed number formatting), so reports diff cleanly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Literal

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
DAY_MS = 86_400_000
Style = Literal["line", "step", "dots", "line+dots"]


@dataclass(frozen=True)
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = PALETTE[0]
    style: Style = "line"
    dash: str | None = None  # e.g. "4 3"
    hollow: Sequence[bool] | None = None  # per point, for dots: hollow marker (e.g. provisional)


@dataclass(frozen=True)
class Rule:
    """A reference line: horizontal at ``at`` (y) or vertical (x)."""

    at: float
    label: str = ""
    color: str = "#777"
    dash: str | None = "5 4"


@dataclass(frozen=True)
class Chart:
    title: str
    series: Sequence[Series]
    x_label: str = ""
    y_label: str = ""
    hrules: Sequence[Rule] = ()
    vrules: Sequence[Rule] = ()
    x_time: bool = False  # x is epoch ms: ticks are dates
    x_fmt: Callable[[float], str] | None = None
    y_range: tuple[float, float] | None = None
    x_range: tuple[float, float] | None = None
    width: int = 560
    height: int = 240
    css_class: str = "chart"
    extra: dict[str, str] = field(default_factory=dict)  # data-* attributes


MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 56, 12, 28, 40


def _fmt(v: float) -> str:
    """Compact, stable number text for coordinates."""
    return f"{v:.1f}".rstrip("0").rstrip(".") if math.isfinite(v) else "0"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def time_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Midnights (UTC) at a round day step covering ``[lo, hi]`` epoch ms."""
    days = max((hi - lo) / DAY_MS, 1e-9)
    step = next((s for s in (1, 2, 7, 14, 28, 56, 91, 182, 364) if days / s <= n), 728) * DAY_MS
    first = math.ceil(lo / step) * step
    return [float(t) for t in range(int(first), int(hi) + 1, int(step))] or [lo]


def date_label(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%b %d")


def number_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.3g}"
    return f"{v:.4g}"


def _extent(values: Sequence[float], pad_zero: bool = False) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if pad_zero:
        lo = min(lo, 0.0)
    if hi == lo:
        hi = lo + (abs(lo) or 1.0)
    return lo, hi


def render(chart: Chart) -> str:
    """The chart as one ``<svg>`` element (with a ``<title>`` for accessibility)."""
    w, h = chart.width, chart.height
    pw, ph = w - MARGIN_L - MARGIN_R, h - MARGIN_T - MARGIN_B
    xs = [x for s in chart.series for x in s.xs] + [r.at for r in chart.vrules]
    ys = [y for s in chart.series for y in s.ys] + [r.at for r in chart.hrules]
    x0, x1 = chart.x_range or _extent(xs)
    y0, y1 = chart.y_range or _extent(ys, pad_zero=True)
    if chart.y_range is None:
        y1 += (y1 - y0) * 0.05

    def sx(x: float) -> float:
        return MARGIN_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return MARGIN_T + ph - (y - y0) / (y1 - y0) * ph

    attrs = "".join(f' data-{escape(k)}="{escape(v)}"' for k, v in chart.extra.items())
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{chart.css_class}" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img"{attrs}>',
        f"<title>{escape(chart.title)}</title>",
        f'<text x="{MARGIN_L}" y="16" class="ct">{escape(chart.title)}</text>',
        f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{pw}" height="{ph}" fill="#fff" stroke="#ccc"/>',
    ]
    out += _axes(chart, sx, sy, (x0, x1), (y0, y1))
    for rule in chart.hrules:
        if y0 <= rule.at <= y1:
            out.append(_line(MARGIN_L, sy(rule.at), MARGIN_L + pw, sy(rule.at), rule.color, rule.dash))
            if rule.label:
                out.append(
                    f'<text x="{_fmt(MARGIN_L + pw - 4)}" y="{_fmt(sy(rule.at) - 3)}" '
                    f'class="rl" text-anchor="end" fill="{rule.color}">{escape(rule.label)}</text>'
                )
    for rule in chart.vrules:
        if x0 <= rule.at <= x1:
            out.append(_line(sx(rule.at), MARGIN_T, sx(rule.at), MARGIN_T + ph, rule.color, rule.dash))
            if rule.label:
                out.append(
                    f'<text x="{_fmt(sx(rule.at) + 3)}" y="{MARGIN_T + 10}" class="rl" '
                    f'fill="{rule.color}">{escape(rule.label)}</text>'
                )
    for s in chart.series:
        out += _series(s, sx, sy)
    out += _legend(chart.series, MARGIN_L + 4, h - 6)
    out.append("</svg>")
    return "\n".join(out)


def _axes(
    chart: Chart,
    sx: Callable[[float], float],
    sy: Callable[[float], float],
    xr: tuple[float, float],
    yr: tuple[float, float],
) -> list[str]:
    out = []
    base = MARGIN_T + chart.height - MARGIN_T - MARGIN_B
    x_ticks = time_ticks(*xr) if chart.x_time else nice_ticks(*xr)
    x_text = chart.x_fmt or (date_label if chart.x_time else number_label)
    for t in x_ticks:
        if xr[0] <= t <= xr[1]:
            out.append(_line(sx(t), base, sx(t), base + 4, "#999"))
            out.append(
                f'<text x="{_fmt(sx(t))}" y="{base + 15}" class="tk" text-anchor="middle">'
                f"{escape(x_text(t))}</text>"
            )
    for t in nice_ticks(*yr):
        if yr[0] <= t <= yr[1]:
            out.append(_line(MARGIN_L, sy(t), chart.width - MARGIN_R, sy(t), "#eee"))
            out.append(
                f'<text x="{MARGIN_L - 5}" y="{_fmt(sy(t) + 3)}" class="tk" text-anchor="end">'
                f"{escape(number_label(t))}</text>"
            )
    if chart.y_label:
        out.append(
            f'<text x="12" y="{_fmt(MARGIN_T + (base - MARGIN_T) / 2)}" class="al" '
            f'transform="rotate(-90 12 {_fmt(MARGIN_T + (base - MARGIN_T) / 2)})" '
            f'text-anchor="middle">{escape(chart.y_label)}</text>'
        )
    if chart.x_label:
        out.append(
            f'<text x="{chart.width - MARGIN_R}" y="{base + 28}" class="al" text-anchor="end">'
            f"{escape(chart.x_label)}</text>"
        )
    return out


def _line(x1: float, y1: float, x2: float, y2: float, color: str, dash: str | None = None) -> str:
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="{_fmt(x1)}" y1="{_fmt(y1)}" x2="{_fmt(x2)}" y2="{_fmt(y2)}" stroke="{color}"{d}/>'


def _runs(points: Sequence[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """Split at NaN points: a gap in the data is a gap in the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if math.isfinite(x) and math.isfinite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def _series(s: Series, sx: Callable[[float], float], sy: Callable[[float], float]) -> list[str]:
    out = []
    points = list(zip(s.xs, s.ys, strict=True))
    if s.style in ("line", "step", "line+dots"):
        for run in _runs(points):
            coords: list[str] = []
            for i, (x, y) in enumerate(run):
                if s.style == "step" and i > 0:
                    coords.append(f"{_fmt(sx(x))},{_fmt(sy(run[i - 1][1]))}")
                coords.append(f"{_fmt(sx(x))},{_fmt(sy(y))}")
            dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
            out.append(
                f'<polyline class="series" fill="none" stroke="{s.color}" stroke-width="1.6"{dash} '
                f'points="{" ".join(coords)}"><title>{escape(s.name)}</title></polyline>'
            )
    if s.style in ("dots", "line+dots"):
        for i, (x, y) in enumerate(points):
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            hollow = bool(s.hollow[i]) if s.hollow is not None else False
            fill = "#fff" if hollow else s.color
            out.append(
                f'<circle cx="{_fmt(sx(x))}" cy="{_fmt(sy(y))}" r="3" fill="{fill}" stroke="{s.color}"/>'
            )
    return out


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out, cursor = [], x
    for s in series:
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(
            f'<line x1="{_fmt(cursor)}" y1="{_fmt(y - 4)}" x2="{_fmt(cursor + 16)}" y2="{_fmt(y - 4)}" '
            f'stroke="{s.color}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{_fmt(cursor + 20)}" y="{_fmt(y)}" class="lg">{escape(s.name)}</text>')
        cursor += 28 + 6.2 * len(s.name)
    return out
