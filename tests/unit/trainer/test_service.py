"""The retrain job: one event, at most one challenger, lineage, verdict, announcements.

Runs the real recipe on the shared 21-day data set (``small_dataset``) served from lists
instead of Kafka; the champion is a tiny stand-in (``tests.helpers_models``) that knows
only "large amount = fraud", so a real challenger beats it on any holdout.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services import dataset
from services.registry import Registry
from services.trainer import job as jobmod
from services.trainer.job import JobConfig, JobStopped, RetrainJob
from services.trainer.lineage import PublishError, find_by_retrain_event
from services.trainer.promotion import PolicyConfig
from services.trainer.split import SplitConfig
from services.trainer.training import TrainConfig
from tests.helpers_models import register_model
from tests.unit.trainer.retrain_fakes import DAY_MS, Announcements, Flag, ListSource, retrain_event

FAST: dict[str, Any] = {"max_rounds": 60, "early_stopping_rounds": 20}
HOLD = PolicyConfig(margin=1.0)  # never automatic
# Fast labels count as mature early, so a 21-day data set has a holdout.
AUTO = PolicyConfig(margin=0.02, min_frauds=5, holdout_days=3, min_maturity=0.2)


@pytest.fixture(scope="module")
def data(small_dataset: Path) -> dict[str, Any]:
    txns = dataset.read_transactions(small_dataset)
    start = txns[0]["event_time"] // DAY_MS * DAY_MS
    return {"txns": txns, "labels": dataset.read_labels(small_dataset), "start": start}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    register_model(tmp_path / "models", **FAST)  # fraud@1, the champion
    return Registry(tmp_path / "models")


MakeJob = Callable[..., tuple[RetrainJob, Announcements, Flag]]


@pytest.fixture
def make_job(data: dict[str, Any], registry: Registry) -> MakeJob:
    def make(
        policy: PolicyConfig = HOLD, source: ListSource | None = None
    ) -> tuple[RetrainJob, Announcements, Flag]:
        cfg = JobConfig("fraud", "p.transactions", "p.labels", train_window_days=10, feature_warmup_days=3,
                        policy=policy)  # fmt: skip
        announce, stop = Announcements(), Flag()
        src = source or ListSource(data["txns"], data["labels"])
        return (
            RetrainJob(cfg, registry, src, announce, clock=lambda: datetime.now(UTC), stop=stop),
            announce,
            stop,
        )

    return make


def event_at(data: dict[str, Any], day: int, event_id: str = "incident-1") -> dict[str, Any]:
    return retrain_event(event_id, data["start"] + day * DAY_MS)


def test_an_event_gives_a_challenger_with_its_lineage(make_job: MakeJob, registry: Registry,
                                                      data: dict[str, Any]) -> None:  # fmt: skip
    job, announced, _ = make_job()
    result = job.run(event_at(data, 21))
    assert (result.outcome, result.version, result.action) == ("trained", "2", "hold")
    assert registry.aliases("fraud") == {"champion": "1", "challenger": "2"}

    manifest = registry.resolve("fraud@2").manifest()
    lineage = manifest["lineage"]
    as_of = data["start"] + 21 * DAY_MS
    assert lineage["retrain_event_id"] == "incident-1" and lineage["trigger"] == "retrain_event"
    assert lineage["retrain_event"]["window_end"] == as_of
    assert lineage["champion"]["version"] == "1"
    window = lineage["data_window"]
    assert (window["train"]["start_ms"], window["train"]["end_ms"]) == (as_of - 10 * DAY_MS, as_of)
    assert window["label_cutoff_ms"] == as_of
    assert window["transactions"]["kept"] == len(data["txns"])  # the read reaches back to day 0
    assert window["labels"]["kept"] == sum(1 for lb in data["labels"] if lb["label_time"] <= as_of)
    assert lineage["decision"]["action"] == "hold" and lineage["decision"]["margin"] == 1.0
    # The recipe's own split covers exactly the training window.
    assert manifest["split"]["train"]["start_ms"] >= as_of - 10 * DAY_MS
    assert manifest["dataset"]["source"] == "kafka" and manifest["dataset"]["label_cutoff_ms"] == as_of
    assert manifest["max_rounds"] == 60 and manifest["early_stopping_rounds"] == 20  # the champion's recipe

    assert announced.actions() == [("CHALLENGER_SET", "2")]
    update = announced[0]
    assert update["retrain_event_id"] == "incident-1" and update["previous_version"] is None
    assert update["sha256"] == manifest["model_sha256"]


def test_the_same_event_twice_trains_once(
    make_job: MakeJob, registry: Registry, data: dict[str, Any]
) -> None:
    job, announced, _ = make_job()
    first = job.run(event_at(data, 21))
    source = ListSource(data["txns"], data["labels"])
    again, announced_again, _ = make_job(source=source)
    second = again.run(event_at(data, 21))
    assert (first.outcome, second.outcome) == ("trained", "duplicate")
    assert second.version == first.version == "2"
    assert [mv.version for mv in registry.versions("fraud")] == ["1", "2"]
    assert source.reads == []  # nothing read, nothing trained
    # Re-announced with the same event id: consumers dedupe.
    assert announced_again[0]["event_id"] == announced[0]["event_id"]


def test_auto_promotion_when_the_challenger_wins(make_job: MakeJob, registry: Registry,
                                                 data: dict[str, Any]) -> None:  # fmt: skip
    job, announced, _ = make_job(AUTO)
    result = job.run(event_at(data, 21))
    assert (result.outcome, result.action) == ("trained", "promote")
    lineage = registry.resolve("fraud@2").manifest()["lineage"]
    figures = lineage["evaluation"]
    assert figures["challenger"]["pr_auc"] >= figures["champion"]["pr_auc"] + 0.02
    assert figures["challenger"]["rows"] == figures["champion"]["rows"] == lineage["holdout"]["rows"] > 0
    holdout = lineage["holdout"]
    assert holdout["end_ms"] <= lineage["data_window"]["train"]["start_ms"]  # never trained on
    assert holdout["min_maturity"] >= 0.2 and holdout["frauds"] >= 5
    assert registry.aliases("fraud") == {"champion": "2", "challenger": None}
    assert registry.resolve("fraud@1").status == "retired"
    assert announced.actions() == [("CHALLENGER_SET", "2"), ("PROMOTED", "2")]
    assert announced[1]["previous_version"] == "1" and announced[1]["reason"].startswith("auto:")


def test_a_crash_after_registering_is_finished_on_redelivery(
    make_job: MakeJob, registry: Registry, data: dict[str, Any]
) -> None:
    job, announced, _ = make_job(AUTO)
    announced.fail = 1  # Kafka down right after the registry write
    with pytest.raises(PublishError):
        job.run(event_at(data, 21))
    assert registry.aliases("fraud") == {"champion": "1", "challenger": "2"}  # verdict not carried out yet

    result = job.run(event_at(data, 21))  # the event is re-delivered: nothing is trained again
    assert (result.outcome, result.version) == ("duplicate", "2")
    assert [mv.version for mv in registry.versions("fraud")] == ["1", "2"]
    assert registry.aliases("fraud")["champion"] == "2"
    assert announced.actions() == [("CHALLENGER_SET", "2"), ("PROMOTED", "2")]


def test_stop_before_registering_writes_nothing(make_job: MakeJob, registry: Registry,
                                                data: dict[str, Any]) -> None:  # fmt: skip
    job, announced, stop = make_job()
    stop.set()
    with pytest.raises(JobStopped):
        job.run(event_at(data, 21))
    assert [mv.version for mv in registry.versions("fraud")] == ["1"] and announced == []


def test_a_trainer_holding_the_event_makes_another_wait(make_job: MakeJob, registry: Registry,
                                                        data: dict[str, Any]) -> None:  # fmt: skip
    digest = hashlib.sha256(b"incident-1").hexdigest()[:24]
    with (registry.root / "fraud" / f".retrain-{digest}.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        job, _, stop = make_job()
        stop.set()  # it would wait for the other trainer; stop instead
        with pytest.raises(JobStopped, match="waiting for another trainer"):
            job.run(event_at(data, 21))


def test_events_for_other_models_are_not_trained(make_job: MakeJob, data: dict[str, Any]) -> None:
    job, announced, _ = make_job()
    result = job.run(retrain_event("x", data["start"] + 21 * DAY_MS, model_name="other"))
    assert result.outcome == "other_model" and announced == []


def test_a_window_without_data_cannot_train(
    make_job: MakeJob, registry: Registry, data: dict[str, Any]
) -> None:
    job, announced, _ = make_job()
    result = job.run(event_at(data, -5))
    assert (result.outcome, result.detail) == ("cannot_train", "no transactions to split")
    assert find_by_retrain_event(registry, "fraud", "incident-1") is None and announced == []


def test_the_first_model_of_a_name_becomes_champion(data: dict[str, Any], tmp_path: Path) -> None:
    registry = Registry(tmp_path / "empty")
    announced = Announcements()
    cfg = JobConfig("fraud", "t", "l", train_window_days=10, feature_warmup_days=0, policy=HOLD)
    job = RetrainJob(cfg, registry, ListSource(data["txns"], data["labels"]), announced,
                     clock=lambda: datetime.now(UTC), stop=Flag())  # fmt: skip
    result = job.run(event_at(data, 21))
    assert result.outcome == "trained" and registry.aliases("fraud")["champion"] == "1"
    assert announced.actions() == [("PROMOTED", "1")] and announced[0]["reason"] == "first model of the name"
    assert registry.resolve("fraud@1").manifest()["lineage"]["champion"] is None


def test_recipe_comes_from_the_champion_manifest() -> None:
    manifest = {
        "seed": 11, "max_rounds": 300, "early_stopping_rounds": 50,
        "params": {"learning_rate": 0.1, "num_leaves": 31, "lambda_l2": 1.0, "metric": "average_precision",
                   "scale_pos_weight": 40.0},
        "split": {"train_fraction": 0.7, "validation_fraction": 0.15, "align_to_day": False},
        "thresholds": {"review_rate": 0.03, "block_rate": 0.01},
    }  # fmt: skip
    assert jobmod.recipe_from_manifest(manifest) == TrainConfig(
        seed=11, split=SplitConfig(0.7, 0.15, False), review_rate=0.03, block_rate=0.01,
        imbalance="scale_pos_weight", learning_rate=0.1, num_leaves=31, lambda_l2=1.0,
        stop_metric="average_precision", max_rounds=300, early_stopping_rounds=50,
    )  # fmt: skip
    garbage = {"seed": "x", "split": {"train_fraction": 0.9, "validation_fraction": 0.5},
               "thresholds": {"review_rate": float("nan")}, "params": {"metric": "rmse"}}  # fmt: skip
    assert jobmod.recipe_from_manifest(garbage) == TrainConfig() == jobmod.recipe_from_manifest({})


def test_the_read_reaches_back_for_holdout_and_warmup() -> None:
    cfg = JobConfig("fraud", "t", "l", train_window_days=30, feature_warmup_days=7)
    as_of = 1_000 * DAY_MS
    fresh = jobmod.plan_window(as_of, cfg, fit_end=as_of - 40 * DAY_MS)  # champion fitted 40 days ago
    assert (fresh.train_start, fresh.read_start) == (as_of - 30 * DAY_MS, as_of - 47 * DAY_MS)
    old = jobmod.plan_window(as_of, cfg, fit_end=as_of - 400 * DAY_MS)  # capped by the lookback
    assert old.read_start == as_of - (30 + jobmod.HOLDOUT_LOOKBACK_DAYS + 7) * DAY_MS
    young = jobmod.plan_window(as_of, cfg, fit_end=as_of - 5 * DAY_MS)  # no holdout possible
    assert young.read_start == as_of - 37 * DAY_MS
    unknown = jobmod.plan_window(as_of, cfg, fit_end=None)
    assert unknown.read_start == old.read_start


def test_a_second_incident_replaces_the_challenger(make_job: MakeJob, registry: Registry,
                                                   data: dict[str, Any]) -> None:  # fmt: skip
    job, announced, _ = make_job()
    assert job.run(event_at(data, 21, "incident-1")).outcome == "trained"
    assert job.run(event_at(data, 22, "incident-2")).outcome == "trained"
    assert registry.aliases("fraud") == {"champion": "1", "challenger": "3"}
    assert [(u["action"], u["version"], u["previous_version"]) for u in announced] == [
        ("CHALLENGER_SET", "2", None),
        ("CHALLENGER_SET", "3", "2"),
    ]
    assert registry.resolve("fraud@2").status == "staged"  # replaced, kept
