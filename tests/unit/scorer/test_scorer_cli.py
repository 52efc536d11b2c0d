from __future__ import annotations

import contextlib
import gc
import io
from pathlib import Path

import pytest

from services.scorer import cli
from services.settings import ConfigError


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: --help and unparsable flags
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_help_names_every_setting_with_its_variable() -> None:
    code, out, _ = run(["--help"])
    assert code == 0
    for flag in ("--batch-max-records", "--delivery", "--poison-max-share", "--model", "--metrics-port"):
        assert flag in out
    assert "FRAUDSTREAM_BATCH_MAX_RECORDS" in out


def test_bad_setting_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAUDSTREAM_KAFKA_BOOTSTRAP", raising=False)
    code, _, err = run(["--batch-max-records", "0"])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("fraudstream scorer: error: invalid --batch-max-records=")


def test_missing_model_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = run(["--registry", str(tmp_path / "empty")])
    assert code == 2
    assert err.startswith("fraudstream scorer: error: cannot serve fraud@champion: no model named 'fraud'")
    assert err.count("\n") == 1


def test_transactional_id_is_stable_per_slot() -> None:
    assert cli.transactional_id("fs-scorer", "g1", "host-a", 0) == "fs-scorer.g1.host-a.0"


def test_instance_slots_are_exclusive_and_reused(tmp_path: Path) -> None:
    with cli.instance_slot("grp/1", tmp_path) as first:
        with cli.instance_slot("grp/1", tmp_path) as second, cli.instance_slot("other", tmp_path) as other:
            assert (first, second, other) == (0, 1, 0)
    with cli.instance_slot("grp/1", tmp_path) as again:
        assert again == 0  # released on exit (and by the kernel if the process dies)


def test_too_many_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "MAX_SLOTS", 1)
    with cli.instance_slot("g", tmp_path), pytest.raises(ConfigError, match="more than 1 scorers"):
        with cli.instance_slot("g", tmp_path):
            pass


def test_freeze_gc_takes_the_startup_heap_out_of_collections() -> None:
    before = gc.get_threshold()
    try:
        cli.freeze_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (cli.GC_GEN0_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_transactions_retry_concurrent_transactions_soon() -> None:
    # librdkafka's default (100 ms) put a 100 ms stall into most back-to-back batches.
    assert cli.TRANSACTIONAL_PRODUCER["retry.backoff.ms"] <= 10
