"""The demo's pieces without servers: status line, flags, paths and ports, comparison,
child-process lifecycle and cleanup. (The whole demo takes minutes: it is run by hand,
see the README.)"""

from __future__ import annotations

import io
import math
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from services import settings
from services.demo import progress, steps
from services.demo.pipeline import Demo
from services.demo.services import Metrics, Service, ServiceFailed, flags, stop_all
from services.runtime import StopFlag
from services.settings import DemoSettings


def metrics(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Metrics:
    return Metrics(samples)


def test_status_line_from_both_services_metrics() -> None:
    scorer = metrics({
        (progress.SCORED, (("decision", "ALLOW"),)): 900.0,
        (progress.SCORED, (("decision", "REVIEW"),)): 80.0,
        (progress.SCORED, (("decision", "BLOCK"),)): 20.0,
    })  # fmt: skip
    monitor = metrics({
        (progress.MONITOR_RECORDS, (("outcome", "counted"), ("topic", "scores"))): 990.0,
        (progress.MONITOR_RECORDS, (("outcome", "pending"), ("topic", "labels"))): 7.0,
        (progress.WINDOWS, (("state", "evaluated"),)): 4.0,
        (progress.PSI, (("feature", "score"),)): 0.25,
        (progress.DRIFTING, (("feature", "amount"),)): 1.0,
        (progress.DRIFTING, (("feature", "mcc_risk_group"),)): 0.0,
        (progress.RETRAIN, (("reason", "DRIFT"),)): 1.0,
    })  # fmt: skip
    s = progress.snapshot(scorer, monitor, replayed=1500, to_replay=2000, scored_per_s=123.4)
    assert s.scored == 1000 and s.decisions["REVIEW"] == 80
    assert s.monitor_scores == 990 and s.monitor_labels == 7 and s.windows == 4
    assert s.drifting == ("amount",) and s.score_psi == 0.25 and s.retrain == {"DRIFT": 1}
    line = progress.render(s)
    assert "replayed 1,500/2,000" in line and "scored 1,000 (123/s, 80 review, 20 block)" in line
    assert "score PSI 0.250" in line and "drifting: amount" in line and "retrain events: 1 DRIFT" in line


def test_status_line_before_anything_happened() -> None:
    s = progress.snapshot(Metrics(), Metrics(), 0, 10, 0.0)
    assert math.isnan(s.score_psi)
    assert progress.render(s).endswith("retrain events: none")


def test_rate_between_readings() -> None:
    rate = progress.Rate()
    assert rate.update(10.0, 100) == 0.0
    assert rate.update(12.0, 500) == 200.0
    assert rate.update(12.0, 900) == 200.0  # no time passed: keep the last rate


def test_flags_from_settings_values() -> None:
    assert flags({"topic_prefix": "x.", "shadow": False, "batch_max_records": 2000, "labels": True}) == [
        "--topic-prefix", "x.", "--no-shadow", "--batch-max-records", "2000", "--labels",
    ]  # fmt: skip


def test_paths_and_a_private_stack_on_free_ports(tmp_path: Path) -> None:
    cfg = settings.load(DemoSettings, {"workdir": tmp_path / "w"}, environ={})
    paths = steps.Paths.of(cfg)
    assert paths.stack == tmp_path / "w" / ".stack" and paths.report.name == "backtest.html"
    stack = steps.stack_settings(cfg, paths)
    assert (stack.kafka_port, stack.redis_port, stack.stack_dir) == (0, 0, paths.stack)
    values = {"workdir": tmp_path, "kafka_port": 19092, "stack_dir": tmp_path / "s"}
    given = settings.load(DemoSettings, values, environ={})
    stack = steps.stack_settings(given, steps.Paths.of(given))
    assert (stack.kafka_port, stack.redis_port, stack.stack_dir) == (19092, 0, tmp_path / "s")


@pytest.mark.parametrize(("days", "onset"), [(60, 48), (7, 6), (10, 8)])
def test_drift_starts_where_validation_ends(days: int, onset: int) -> None:
    assert steps.drift_onset_day(days) == onset


def test_compare_live_with_backtest() -> None:
    result: dict[str, Any] = {"scenarios": [{"retrain_events": [{"reason": "DRIFT", "event_id": "e1"}]}]}
    live = [{"txn_id": "a", "score": 0.5, "shadow": False}, {"txn_id": "b", "score": 0.25, "shadow": False},
            {"txn_id": "b", "score": 0.9, "shadow": True}]  # fmt: skip
    same = steps.compare(live, [{"reason": "DRIFT", "event_id": "e1"}], {"a": 0.5, "b": 0.25}, result)
    assert same.scores_agree and same.events_agree and same.same_scores == 2
    differ = steps.compare(live[:1], [], {"a": 0.5000001, "b": 0.25}, result)
    assert not differ.scores_agree and differ.missing == 1 and not differ.events_agree


def sleeper(tmp_path: Path, name: str = "sleeper") -> Service:
    service = Service(name, "scorer", {}, tmp_path)
    service.argv = [sys.executable, "-c", "import signal; print('up', flush=True); signal.pause()"]
    return service


def test_a_service_is_started_checked_and_stopped(tmp_path: Path) -> None:
    service = sleeper(tmp_path)
    service.start()
    try:
        assert service.running
        service.check()
    finally:
        code = service.stop(grace_s=10)
    assert code == -signal.SIGTERM and not service.running
    assert Service("never", "scorer", {}, tmp_path).stop() is None


def test_a_dead_service_is_reported_with_its_log(tmp_path: Path) -> None:
    service = Service("crasher", "scorer", {}, tmp_path)
    service.argv = [sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(2)"]
    service.start()
    assert service.proc is not None
    service.proc.wait(30)
    with pytest.raises(ServiceFailed, match="boom: bad config"):
        service.check()


def test_stop_all_stops_every_service(tmp_path: Path) -> None:
    services = [sleeper(tmp_path, "a"), sleeper(tmp_path, "b")]
    for s in services:
        s.start()
    stop_all(services)
    assert not any(s.running for s in services)


class FakeStack:
    def __init__(self) -> None:
        self.downs: list[bool] = []

    def down(self, wipe: bool = False) -> list[str]:
        self.downs.append(wipe)
        return ["kafka-1", "redis"]


def test_cleanup_stops_the_services_then_the_stack(tmp_path: Path) -> None:
    cfg = settings.load(DemoSettings, {"workdir": tmp_path}, environ={})
    demo = Demo(cfg, StopFlag(), out=io.StringIO())
    service = sleeper(tmp_path)
    service.start()
    stack = FakeStack()
    demo.run_state.services.append(service)
    demo.run_state.stack = stack
    demo.cleanup()
    assert not service.running and stack.downs == [True]
    assert demo.run_state.replay_stop.is_set()


def test_a_signal_before_the_first_step_stops_cleanly(tmp_path: Path) -> None:
    cfg = settings.load(DemoSettings, {"workdir": tmp_path}, environ={})
    stop = StopFlag()
    stop.set()
    out = io.StringIO()
    demo = Demo(cfg, stop, out=out)

    def no_stack() -> Any:
        raise AssertionError("the stack must not be started")

    demo.start_stack = no_stack  # type: ignore[method-assign]
    assert demo.run() == 130
    assert "stopping on a signal" in out.getvalue()
