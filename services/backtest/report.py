"""The backtest report: one self-contained HTML file with inline SVG charts, and the
JSON with every figure next to it (``report.html`` -> ``report.json``).

The HTML is a view of the JSON: every plotted number is in it. No scripts, no external
files, no timestamps, so the same backtest gives byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.backtest.report_sections import (
    alert_section,
    header_section,
    psi_section,
    recall_section,
    retrain_section,
    score_section,
    summary_section,
)

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1240px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:8px}
svg text{font-family:system-ui,sans-serif}.ct{font-size:13px;font-weight:600}.tk{font-size:10px;fill:#555}
.al{font-size:11px;fill:#444}.lg{font-size:11px;fill:#333}.rl{font-size:10px}.note{color:#666;font-size:12px}
"""


def json_path(html_path: Path) -> Path:
    return html_path.with_suffix(".json")


def write(result: Mapping[str, Any], html_path: Path) -> tuple[Path, Path]:
    """Write the HTML report and its JSON; returns both paths."""
    html_path.parent.mkdir(parents=True, exist_ok=True)
    jpath = json_path(html_path)
    jpath.write_text(json.dumps(result, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(result, jpath.name), encoding="utf-8")
    return html_path, jpath


def render_html(result: Mapping[str, Any], json_name: str) -> str:
    body = [
        header_section(result, json_name),
        summary_section(result),
        score_section(result),
        alert_section(result),
        psi_section(result),
        recall_section(result),
        retrain_section(result),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>fraudstream backtest</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
