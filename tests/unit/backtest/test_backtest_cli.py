"""``fraudstream backtest`` end to end on a small seeded data set (no servers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest

from services import dataset
from services.backtest import cli
from services.backtest import data as bt_data
from services.core.decision import Thresholds, decide_many
from services.featurebuild.build import build_features
from services.registry import Registry
from tests.helpers import STAGE_DIED, break_feature_stage


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def world(bt_world: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the data set (the feature cache writes into it)."""
    data, registry = bt_world
    copy = tmp_path / "data"
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns(".cache"))
    return copy, registry


def backtest(
    capsys: pytest.CaptureFixture[str], data: Path, registry: Path, report: Path, *extra: str
) -> dict[str, Any]:
    code, out, err = run_cli(
        capsys,
        str(data),
        "--registry",
        str(registry),
        "--report",
        str(report),
        "--window-s",
        "86400",
        "--window-min-records",
        "100",
        "--log-level",
        "WARNING",
        *extra,
    )
    assert code == 0, err
    assert f"report:  {report}" in out
    loaded: dict[str, Any] = json.loads(report.with_suffix(".json").read_text())
    return loaded


def test_two_models_side_by_side_with_what_if_thresholds(
    world: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, registry = world
    report = tmp_path / "out" / "bt.html"
    result = backtest(
        capsys,
        data,
        registry,
        report,
        "--model",
        "fraud@champion",
        "--model",
        "fraud@2",
        "--threshold",
        "review=0.2,block=0.6",
        "--alert-rate",
        "0.01",
    )
    keys = [s["key"] for s in result["scenarios"]]
    assert len(keys) == 6 and keys[0].startswith("fraud@1 |") and keys[3].startswith("fraud@2 |")
    fixed = result["scenarios"][1]
    assert fixed["threshold_source"] == "fixed" and fixed["thresholds"]["review"] == 0.2
    rate = result["scenarios"][2]
    assert rate["alert_share"] <= 0.01
    for s in result["scenarios"]:
        assert sum(s["decisions"].values()) == s["n"] == result["dataset"]["transactions"]
        assert s["psi_windows"] and s["cohorts"] and s["daily"]["day_ms"]
    html = report.read_text()
    assert html.count("<svg") >= 10
    for figure in ("score-distribution", "alert-rate", "psi", "recall", "retrain-events"):
        assert f'data-figure="{figure}"' in html


def test_scores_and_decisions_are_the_models_own(world: tuple[Path, Path], tmp_path: Path) -> None:
    """The engine's scores are exactly booster.predict on the offline features, row by row,
    and its decisions follow the manifest thresholds."""
    from services.backtest.cli import load_models
    from services.backtest.engine import predict

    data, registry = world
    model = load_models(registry, ["fraud@champion"])[0]
    loaded = bt_data.load(data)
    X = build_features(dataset.read_transactions(data)).X
    expected = np.asarray(model.serving.booster.predict(X, num_threads=1))
    got = predict(model.serving, loaded.frame.X)
    assert np.array_equal(got, expected)
    one_by_one = np.asarray(
        [model.serving.booster.predict(X[i : i + 1], num_threads=1)[0] for i in range(50)]
    )
    assert np.array_equal(got[:50], one_by_one)
    th = Thresholds.from_dict(Registry(registry).resolve("fraud@champion").manifest()["thresholds"])
    assert (decide_many(got, th) == decide_many(expected, th)).all()
    assert isinstance(model.serving.booster, lightgbm.Booster)


def test_same_inputs_same_files_and_the_feature_cache(
    world: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, registry = world
    first = tmp_path / "a" / "r.html"
    backtest(capsys, data, registry, first)
    assert bt_data.cache_path(data).is_file()
    second = tmp_path / "b" / "r.html"
    backtest(capsys, data, registry, second)
    assert bt_data.load(data).cache_hit
    assert first.with_suffix(".json").read_bytes() == second.with_suffix(".json").read_bytes()
    assert first.read_text().replace("r.json", "") == second.read_text().replace("r.json", "")
    uncached = tmp_path / "c" / "r.html"
    backtest(capsys, data, registry, uncached, "--no-feature-cache")
    assert uncached.with_suffix(".json").read_bytes() == first.with_suffix(".json").read_bytes()


def test_a_stale_cache_is_ignored(world: tuple[Path, Path]) -> None:
    data, _ = world
    fresh = bt_data.load(data)
    manifest = dataset.read_manifest(data)
    wrong = bt_data.Frame(fresh.frame.txn_ids, fresh.frame.event_time, fresh.frame.X + 1.0)
    bt_data.write_cache(data, {"files": {"transactions.avro": {"sha256": "0" * 64}}}, wrong)
    assert bt_data.read_cache(data, manifest) is None
    reloaded = bt_data.load(data)
    assert not reloaded.cache_hit and np.array_equal(reloaded.frame.X, fresh.frame.X, equal_nan=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "fraud@7"], "fraud@7 does not exist"),
        (["--model", "Bad Name"], "bad model reference"),
        (["--threshold", "review=0.5"], "give both review= and block="),
        (["--threshold", "review=0.9,block=0.1"], "need 0 <= review <= block <= 1"),
        (["--alert-rate", "abc"], "invalid --alert-rate"),
        (["--drift-consecutive", "0"], "--drift-consecutive"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    world: tuple[Path, Path],
    tmp_path: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, registry = world
    code, _, err = run_cli(
        capsys, str(data), "--registry", str(registry), "--report", str(tmp_path / "r.html"), *argv
    )
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_data_set_is_one_line(
    tmp_path: Path, bt_world: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, registry = bt_world
    code, _, err = run_cli(capsys, str(tmp_path / "nope"), "--registry", str(registry))
    assert code == 2 and "is not a directory" in err and len(err.strip().splitlines()) == 1


def test_a_failed_feature_build_is_one_line_and_exit_1(
    world: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    break_feature_stage(monkeypatch)
    data, registry = world
    report = str(tmp_path / "r.html")
    code, _, err = run_cli(capsys, str(data), "--registry", str(registry), "--report", report)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"backtest: feature build failed: {STAGE_DIED}"


def test_scores_of_blocks_built_and_predicted_in_parallel_equal_one_predict(world: tuple[Path, Path]) -> None:
    """The backtest predicts each block of rows on a second thread while the next block
    is built; joined, the scores equal a predict over the whole matrix, bit for bit."""
    from services.backtest.cli import load_models
    from services.backtest.engine import predict
    from services.backtest.scoring import BlockScorer

    data, registry = world
    models = load_models(registry, ["fraud@champion", "fraud@champion"])
    scorer = BlockScorer([m.serving for m in models])
    X = build_features(dataset.read_transactions(data), processes=2, on_chunk=scorer.submit, chunk_rows=97).X
    blocks = scorer.scores()
    whole = predict(models[0].serving, X)
    assert len(blocks) == 2 and all(np.array_equal(b, whole) for b in blocks)
    assert BlockScorer([m.serving for m in models]).scores()[0].shape == (0,)


def test_the_feature_progress_bar_counts_to_the_manifests_transactions(world: tuple[Path, Path]) -> None:
    data, _ = world
    with cli.feature_progress(data) as bar:
        assert bar.total == dataset.read_manifest(data)["counts"]["transactions"]
    (data / dataset.MANIFEST_FILE).write_text("{}", encoding="utf-8")
    with cli.feature_progress(data) as bar:
        assert bar.total is None  # an unknown total: a bar that only counts
