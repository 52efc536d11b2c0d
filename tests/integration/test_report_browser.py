"""The backtest report renders in a real browser: headless Chromium (Debian's ``chromium``
package, installed by ``scripts/setup.sh``) takes a screenshot, and the plots are there.

"There" means: the browser's DOM holds every chart as an ``<svg>`` with its lines, and
the screenshot is far from blank (compared with a screenshot of an empty page).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from services.backtest import cli as backtest_cli
from tests.unit.backtest.bt_helpers import make_dataset, register_model

WIDTH, HEIGHT = 1280, 2000
FIGURES = ("score-distribution", "alert-rate", "psi", "recall", "retrain-events")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "chromium is not installed: `apt-get install -y chromium` (scripts/setup.sh installs it)"
    return found


def run_chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    argv = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def screenshot(tmp: Path, html: Path, png: Path) -> bytes:
    url = html.resolve().as_uri()
    done = run_chromium(tmp, url, f"--screenshot={png}", f"--window-size={WIDTH},{HEIGHT}")
    assert png.is_file(), f"no screenshot (exit {done.returncode}):\n{done.stderr[-2000:]}"
    return png.read_bytes()


def png_size_and_ink(data: bytes) -> tuple[tuple[int, int], float]:
    """(width, height) and the share of non-zero bytes in the de-compressed scanlines:
    with PNG's row filters a flat background compresses to zeros, drawn content does not."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, size, idat = 8, (0, 0), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    return size, 1.0 - raw.count(0) / len(raw)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data = make_dataset(root / "data")
    register_model(data, root / "models", seed=0)
    register_model(data, root / "models", seed=1, rounds=10)
    html = root / "out" / "backtest.html"
    code = backtest_cli.main([str(data), "--registry", str(root / "models"), "--report", str(html),
                              "--model", "fraud@1", "--model", "fraud@2", "--window-s", "86400",
                              "--window-min-records", "100", "--log-level", "WARNING"])  # fmt: skip
    assert code == 0
    return html


def test_the_report_has_every_plot_as_svg(report: Path, tmp_path: Path) -> None:
    html = report.read_text()
    for figure in FIGURES:
        assert f'data-figure="{figure}"' in html, figure
    dom = run_chromium(tmp_path, report.resolve().as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == html.count("<svg") >= 12
    assert dom.stdout.count("<polyline") >= 20 and "<circle" in dom.stdout


def test_the_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    shot = screenshot(tmp_path, report, tmp_path / "report.png")
    blank_html = tmp_path / "blank.html"
    blank_html.write_text("<!DOCTYPE html><html><body></body></html>")
    blank = screenshot(tmp_path, blank_html, tmp_path / "blank.png")
    (size, ink), (_, blank_ink) = png_size_and_ink(shot), png_size_and_ink(blank)
    assert size == (WIDTH, HEIGHT)
    assert len(shot) > 30_000 and len(shot) > 10 * len(blank)
    assert ink > 0.01 and ink > 20 * blank_ink
