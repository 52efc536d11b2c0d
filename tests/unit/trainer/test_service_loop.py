"""The trainer's consumer loop: commit only after the job, rewind on transient failures."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.core.codec import Codec
from services.featurebuild.build import StageError
from services.trainer.job import JobResult, JobStopped
from services.trainer.lineage import PublishError
from services.trainer.service import KafkaFatal, TrainerMetrics, TrainerService
from services.trainer.sources import SourceError
from tests.unit.trainer.retrain_fakes import (
    PARTITION_EOF,
    FakeConsumer,
    FakeError,
    FakeMessage,
    Flag,
    retrain_event,
)

CODEC = Codec.load()


class ScriptedJob:
    """Returns or raises the scripted outcomes in turn; records the event ids it ran."""

    def __init__(self, *script: JobResult | Exception) -> None:
        self.script = list(script)
        self.ran: list[str] = []

    def run(self, event: dict[str, Any]) -> JobResult:
        self.ran.append(event["event_id"])
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def message(offset: int, event_id: str = "e") -> FakeMessage:
    return FakeMessage(CODEC.encode("RetrainEvent", retrain_event(event_id, 1_767_225_600_000)), offset)


def run(messages: list[FakeMessage], job: ScriptedJob) -> tuple[FakeConsumer, CollectorRegistry]:
    stop = Flag()
    consumer = FakeConsumer(messages, stop)
    metrics = TrainerMetrics(CollectorRegistry())
    TrainerService(consumer, job, CODEC, "retrain", stop, metrics).run()  # type: ignore[arg-type]
    assert consumer.closed
    return consumer, metrics.registry


def count(registry: CollectorRegistry, outcome: str) -> float:
    return registry.get_sample_value("fraudstream_trainer_events_total", {"outcome": outcome}) or 0.0


def test_each_event_is_committed_after_its_job() -> None:
    job = ScriptedJob(JobResult("trained", "2", "hold"), JobResult("duplicate", "2", "hold"))
    consumer, registry = run([message(0, "a"), message(1, "a")], job)
    assert job.ran == ["a", "a"] and consumer.commits == [1, 2]
    assert count(registry, "trained") == count(registry, "duplicate") == 1
    assert registry.get_sample_value("fraudstream_trainer_verdicts_total", {"action": "hold"}) == 1


def test_an_undecodable_event_is_skipped_and_committed() -> None:
    job = ScriptedJob(JobResult("trained", "2", "promote"))
    consumer, registry = run([FakeMessage(b"\x00garbage", 0), message(1)], job)
    assert consumer.commits == [1, 2] and job.ran == ["e"]
    assert count(registry, "invalid") == 1


@pytest.mark.parametrize(
    "failure", [SourceError("kafka down"), PublishError("not acknowledged"), StageError("stage died")]
)
def test_a_transient_failure_rewinds_and_retries(failure: Exception) -> None:
    job = ScriptedJob(failure, JobResult("trained", "2", "hold"))
    consumer, registry = run([message(5)], job)
    assert consumer.seeks == [5] and consumer.commits == [6] and job.ran == ["e", "e"]
    kind = type(failure).__name__
    assert registry.get_sample_value("fraudstream_trainer_retries_total", {"kind": kind}) == 1


def test_a_stopped_job_is_not_committed() -> None:
    job = ScriptedJob(JobStopped("stopped"))
    stop = Flag()
    consumer = FakeConsumer([message(0), message(1)], stop)
    original = job.run

    def stop_then_run(event: dict[str, Any]) -> JobResult:
        stop.set()  # SIGTERM arrives while the job runs
        return original(event)

    job.run = stop_then_run  # type: ignore[method-assign]
    TrainerService(consumer, job, CODEC, "retrain", stop, TrainerMetrics(CollectorRegistry())).run()  # type: ignore[arg-type]
    assert consumer.commits == [] and consumer.position == 1 and consumer.closed


def test_partition_eof_is_not_an_error_but_a_fatal_error_stops() -> None:
    eof = FakeMessage(None, 0, error_=FakeError(PARTITION_EOF))
    consumer, _ = run([eof, message(0)], ScriptedJob(JobResult("other_model")))
    assert consumer.commits == [1]
    with pytest.raises(KafkaFatal):
        run([FakeMessage(None, 0, error_=FakeError(-150, fatal_=True))], ScriptedJob())
