"""``fraudstream generate``: happy path and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import dataset
from services.generator.cli import main

SMALL = ["--cards", "150", "--merchants", "40", "--days", "5", "--seed", "9"]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("fraudstream generate: error: ")
    return err[0]


def test_generate_writes_a_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    rc = main(
        [
            "--out",
            str(out),
            *SMALL,
            "--drift",
            "new_pattern@2",
            "--patterns",
            "ato,card_testing",
            "--log-level",
            "WARNING",
        ]
    )
    assert rc == 0
    assert "transactions" in capsys.readouterr().out
    dataset.verify_dataset(out)
    manifest = dataset.read_manifest(out)
    assert manifest["patterns"] == ["card_testing", "ato"]
    assert manifest["days"] == 5 and manifest["cards"] == 150
    assert manifest["drift"][0]["name"] == "new_pattern"


def test_generate_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRAUDSTREAM_OUT", str(tmp_path / "env"))
    monkeypatch.setenv("FRAUDSTREAM_DAYS", "3")
    assert main(["--cards", "100", "--merchants", "30", "--log-level", "ERROR"]) == 0
    assert dataset.read_manifest(tmp_path / "env")["days"] == 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--days", "-3"], "--days"),
        (["--days", "abc"], "--days"),
        (["--drift", "bogus@2"], "unknown drift scenario 'bogus'"),
        (["--drift", "merchant_mix@9"], "onset day must be between 1 and 4"),
        (["--drift", "merchant_mix"], "NAME@DAY"),
        (["--patterns", "ato,nope"], "unknown fraud pattern 'nope'"),
        (["--start", "2026-02-30"], "invalid start"),
        (["--merchants", "12"], "--merchants"),
        (["--fraud-rate", "0.5"], "--fraud-rate"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    rc = main(["--out", str(tmp_path / "ds"), "--days", "5", "--cards", "100", *args])
    assert rc == 2
    assert needle in _error_line(capsys)
    assert not (tmp_path / "ds").exists()


def test_refuses_a_non_empty_directory_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("x")
    assert main(["--out", str(tmp_path), *SMALL]) == 2
    assert "--force" in _error_line(capsys)
    assert main(["--out", str(tmp_path), *SMALL, "--force", "--log-level", "ERROR"]) == 0
    dataset.verify_dataset(tmp_path)


def test_out_must_not_be_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["--out", str(target), *SMALL]) == 2
    assert "not a directory" in _error_line(capsys)


def test_help_mentions_drift_and_patterns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "NAME@DAY" in text and "amount_inflation" in text and "FRAUDSTREAM_SEED" in text
