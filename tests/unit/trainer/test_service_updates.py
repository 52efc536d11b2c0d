"""Model-update events and the ``fraudstream trainer`` / ``models promote --publish``
command lines (no broker: the failures must be one line)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services import cli
from services.core.codec import Codec
from services.registry import Registry
from services.trainer import lineage
from tests.helpers_models import register_model

AT = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)


def test_a_model_update_round_trips_through_the_codec(tmp_path: Path) -> None:
    mv = register_model(tmp_path / "models")
    record = lineage.model_update(
        event_id=lineage.update_id("trainer", "incident", "PROMOTED"), mv=mv, sha256="ab" * 32,
        action="PROMOTED", at=AT, previous_version=None, reason="  auto:\n better  ",
        retrain_event_id="incident",
    )  # fmt: skip
    codec = Codec.load()
    assert codec.decode("ModelUpdate", codec.encode("ModelUpdate", record)) == record
    assert record["at"] == 1_772_884_800_000 and record["reason"] == "auto: better"
    assert record["event_id"] == lineage.update_id("trainer", "incident", "PROMOTED")  # stable
    with pytest.raises(ValueError):
        lineage.model_update(event_id="e", mv=mv, sha256="", action="PROMOTED", at=datetime(2026, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("version", "previous", "action"),
    [("3", "2", "PROMOTED"), ("1", "2", "ROLLED_BACK"), ("1", None, "PROMOTED"), ("10", "9", "PROMOTED")],
)
def test_promoting_an_older_version_is_a_rollback(version: str, previous: str | None, action: str) -> None:
    assert lineage.promotion_action(version, previous) == action


def test_find_by_retrain_event(tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert lineage.find_by_retrain_event(Registry(root), "fraud", "x") is None  # no model yet
    register_model(root)
    mv = Registry(root).register("fraud", "text\n", {"feature_names": []}, lineage={"retrain_event_id": "x"})
    found = lineage.find_by_retrain_event(Registry(root), "fraud", "x")
    assert found is not None and found.version == mv.version == "2"
    assert lineage.find_by_retrain_event(Registry(root), "fraud", "y") is None


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's own error: its last stderr line (librdkafka may log before it)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    return err.splitlines()[-1]


def test_trainer_bad_flags_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trainer", "--holdout-min-maturity", "0"]) == 2
    assert "invalid --holdout-min-maturity='0': Input should be greater than 0" in one_line(capsys)
    assert cli.main(["trainer", "--train-window-days", "0"]) == 2
    assert "--train-window-days" in one_line(capsys)


def test_trainer_with_an_unusable_registry_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a folder")
    assert cli.main(["trainer", "--registry", str(tmp_path / "file"), "--kafka-bootstrap", "127.0.0.1:1",
                     "--kafka-timeout-s", "1"]) == 2  # fmt: skip
    assert "cannot use the registry" in one_line(capsys)


def test_trainer_without_kafka_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = [
        "trainer",
        "--kafka-bootstrap",
        "127.0.0.1:1",
        "--kafka-timeout-s",
        "1",
        "--registry",
        str(tmp_path),
    ]
    assert cli.main(argv) == 2
    assert "cannot reach Kafka at 127.0.0.1:1" in one_line(capsys)


def test_promote_publish_without_kafka_promotes_and_says_so(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:  # fmt: skip
    root = tmp_path / "models"
    register_model(root)
    register_model(root, seed=1)
    argv = ["models", "--registry", str(root), "promote", "fraud@2", "--publish",
            "--kafka-bootstrap", "127.0.0.1:1", "--kafka-timeout-s", "1"]  # fmt: skip
    assert cli.main(argv) == 1
    assert "promoted, but not announced" in one_line(capsys)
    assert Registry(root).aliases("fraud")["champion"] == "2"
