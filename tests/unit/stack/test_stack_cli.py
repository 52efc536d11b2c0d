"""The `fraudstream stack` CLI without servers: help, bad flags, status of nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.stack import cli


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["up", "--help"])
    assert exc.value.code == 0
    assert "--kafka-port" in capsys.readouterr().out


def test_bad_flag_value_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = cli.main(["status", "--stack-dir", str(tmp_path), "--brokers", "9"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "--brokers" in err


def test_status_of_an_empty_dir_is_stopped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["status", "--stack-dir", str(tmp_path)]) == cli.EXIT_NOT_RUNNING
    assert "stopped" in capsys.readouterr().out
    assert cli.main(["status", "--json", "--stack-dir", str(tmp_path)]) == cli.EXIT_NOT_RUNNING
    report = json.loads(capsys.readouterr().out)
    assert report["state"] == "stopped"
    assert report["running"] is False
    assert report["components"] == []


def test_down_with_nothing_running_is_fine(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["down", "--stack-dir", str(tmp_path)]) == 0
    assert "nothing running" in capsys.readouterr().out


def test_unreadable_state_is_a_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    assert cli.main(["down", "--stack-dir", str(tmp_path)]) == cli.EXIT_FAILED
    assert "state.json is unreadable" in capsys.readouterr().err
