"""``fraudstream train`` end to end: data set directory in, verified registry version out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services import cli
from services.registry import loader
from services.registry.store import Registry
from tests.helpers import STAGE_DIED, break_feature_stage

FAST = ["--max-rounds", "60", "--log-level", "WARNING"]


def train(*args: str) -> int:
    return cli.main(["train", *args, *FAST])


def test_train_registers_a_loadable_champion_then_a_challenger(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "models"
    assert train("--data", str(small_dataset), "--registry", str(registry)) == 0
    out = capsys.readouterr().out
    assert "ROC AUC [label_based]" in out and "recall @ top decile [truth_based]" in out
    assert "registered fraud@1 (champion)" in out

    loaded = loader.load(Registry(registry).resolve("fraud@champion"))
    assert loaded.manifest["lineage"] == {"trigger": "cli", "data": str(small_dataset)}
    assert loaded.manifest["metrics"]["test"]["rows"] > 0
    assert loaded.booster.num_trees() == loaded.manifest["best_iteration"]

    assert train("--data", str(small_dataset), "--registry", str(registry), "--name", "fraud") == 0
    assert "registered fraud@2 (challenger)" in capsys.readouterr().out
    again = Registry(registry).resolve("fraud@challenger")
    assert again.model_path.read_text() == loaded.version.model_path.read_text()  # deterministic


def test_promote_makes_the_new_version_champion(small_dataset: Path, tmp_path: Path) -> None:
    registry = tmp_path / "models"
    assert train("--data", str(small_dataset), "--registry", str(registry), "--name", "x") == 0
    assert train("--data", str(small_dataset), "--registry", str(registry), "--name", "x", "--promote") == 0
    assert Registry(registry).resolve("x@champion").version == "2"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_a_failed_feature_build_is_a_one_line_error(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    break_feature_stage(monkeypatch)
    assert train("--data", str(small_dataset), "--registry", str(tmp_path / "m")) == 1
    assert one_line_error(capsys) == f"fraudstream train: feature build failed: {STAGE_DIED}"


def test_missing_data_dir_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train("--data", str(tmp_path / "nope"), "--registry", str(tmp_path / "m")) == 2
    assert "is not a directory" in one_line_error(capsys)


def test_dir_without_data_set_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train("--data", str(tmp_path), "--registry", str(tmp_path / "m")) == 2
    assert "manifest.json not found" in one_line_error(capsys)


def test_tampered_data_set_is_a_one_line_error(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(small_dataset, copy)
    with (copy / "labels.avro").open("ab") as fh:
        fh.write(b"x")
    assert train("--data", str(copy), "--registry", str(tmp_path / "m")) == 2
    assert "does not match its manifest sha256" in one_line_error(capsys)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--review-rate", "0.001"], "must not exceed the review rate"),
        (["--train-fraction", "0.9"], "--train-fraction"),
        (["--imbalance", "smote"], "--imbalance"),
    ],
)
def test_bad_recipe_flags_are_one_line_errors(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert train("--data", str(small_dataset), "--registry", str(tmp_path), *flags) == 2
    assert message in one_line_error(capsys)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--data" in out and "--review-rate" in out and "FRAUDSTREAM_REGISTRY" in out
