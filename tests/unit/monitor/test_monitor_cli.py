from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.core.recall import Pooled
from services.monitor import cli
from services.monitor.champion import champion_from_manifest, delay_prior
from services.monitor.metrics import PREFIX, MonitorMetrics
from services.settings import ConfigError


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse --help
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_help_names_every_setting() -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    for flag in ("--window-s", "--drift-alpha", "--recall-min-maturity", "--retrain-cooldown-s"):
        assert flag in out


def test_missing_champion_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("FRAUDSTREAM_")]:
        monkeypatch.delenv(key)
    code, _, err = run_cli("--registry", str(tmp_path / "none"), "--kafka-bootstrap", "127.0.0.1:1")
    assert code == 2
    assert err.count("\n") == 1 and "no model named 'fraud'" in err and "Traceback" not in err


def test_bad_setting_is_one_line() -> None:
    code, _, err = run_cli("--drift-alpha", "2")
    assert code == 2 and err.startswith("fraudstream monitor: error: invalid --drift-alpha")


def test_champion_without_psi_reference_is_refused() -> None:
    with pytest.raises(ConfigError, match="psi_reference"):
        champion_from_manifest({"name": "fraud", "version": "2", "feature_names": ["a"], "psi_reference": {}})


def test_delay_prior_comes_from_the_manifest_when_present() -> None:
    assert delay_prior({}).median_days == 21.0
    manifest = {"dataset": {"label_policy": {"chargeback_delay": {"median_days": 14, "sigma": 0.5}}}}
    prior = delay_prior(manifest)
    assert (prior.median_days, prior.sigma) == (14.0, 0.5)


def test_metric_names_and_bounded_labels() -> None:
    m = MonitorMetrics(CollectorRegistry())
    m.recall_figures({("0-7d", "provisional"): Pooled(1, 10, 2, 0.5, 0.5, 0.3)})
    names = set()
    for family in m.registry.collect():
        assert family.name.startswith(PREFIX)
        for sample in family.samples:
            names.add(sample.name)
            assert not {"txn_id", "card_id"} & set(sample.labels)
    assert PREFIX + "recall" in names and PREFIX + "label_maturity" in names
    value = m.registry.get_sample_value(
        PREFIX + "recall", {"kind": "flagged", "age_bucket": "0-7d", "maturity": "provisional"}
    )
    assert value == 0.5
    missing = m.registry.get_sample_value(
        PREFIX + "recall", {"kind": "flagged", "age_bucket": "60d+", "maturity": "mature"}
    )
    assert missing is not None and math.isnan(missing)
    counters = [f for f in m.registry.collect() if f.type == "counter"]
    assert counters and all(s.name.endswith(("_total", "_created")) for f in counters for s in f.samples)
