"""``fraudstream replay`` refuses bad input with one line and exit code 2 (no Kafka needed:
the checks come before any connection)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.replay import cli
from tests.unit.backtest.bt_helpers import make_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(
        tmp_path_factory.mktemp("replay-cli") / "data", days=7, cards=50, merchants=20, drift=None
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--start", "yesterday"], "invalid --start/--end"),
        (["--start", "2026-01-05", "--end", "2026-01-05"], "is not after --start"),
        (["--speed", "-1"], "--speed"),
    ],
)
def test_bad_flags_are_one_line(
    data_dir: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main([str(data_dir), "--kafka-bootstrap", "127.0.0.1:1", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_missing_or_broken_data_set_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{}")
    assert cli.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "invalid data set" in err and len(err.strip().splitlines()) == 1


def test_help_lists_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "FRAUDSTREAM_SPEED" in out and "--topic-prefix" in out and "--no-labels" in out
