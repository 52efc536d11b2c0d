"""``fraudstream trainer`` killed with SIGKILL while it trains, then restarted: the retrain
event gives exactly one registered challenger, and a re-delivered copy of the event
trains nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services import dataset
from services.core import topics
from services.registry import Registry
from services.trainer.lineage import find_by_retrain_event
from tests.helpers import wait_until
from tests.helpers_models import register_model
from tests.integration.trainer.conftest import DAY_MS, LoopEnv, Process, trainer_argv
from tests.unit.backtest.bt_helpers import make_dataset
from tests.unit.trainer.retrain_fakes import retrain_event


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("crash") / "data", days=21, cards=3000, merchants=300,
                        seed=3, drift=None)  # fmt: skip


def test_a_trainer_killed_mid_training_registers_one_challenger_after_restart(
    loop_env: LoopEnv, data: Path, start: Callable[[list[str], Path], Process], unique: Callable[[str], str]
) -> None:
    env = loop_env
    env.replay(data)
    register_model(env.registry, max_rounds=200, early_stopping_rounds=30)  # fraud@1, the champion
    first_day = dataset.read_transactions(data)[0]["event_time"] // DAY_MS * DAY_MS
    event = retrain_event("incident-crash", first_day + 21 * DAY_MS)
    env.produce(topics.RETRAIN, "RetrainEvent", [event], key="model_name")
    group = unique("trainer")
    argv = trainer_argv(env, group, train_window_days=10, feature_warmup_days=3, auto_promote_margin=1)

    doomed = start(argv, env.tmp / "trainer-1.log")
    # Both topics are read: features and LightGBM are under way. Kill it there.
    doomed.wait_for_log(rf"read {env.topic(topics.LABELS)}: \d+ records", timeout=90)
    doomed.kill9()
    assert "registered fraud@" not in doomed.text()
    registry = Registry(env.registry)
    assert [mv.version for mv in registry.versions("fraud")] == ["1"]
    assert env.committed(group, topics.RETRAIN) == 0

    survivor = start(argv, env.tmp / "trainer-2.log")
    # The killed member's session (10 s) expires, the partition moves, the event comes back.
    wait_until(lambda: env.committed(group, topics.RETRAIN) == 1, timeout=120, interval=0.5,
               message=f"the restarted trainer handled the event (log {survivor.log})")  # fmt: skip
    trained = find_by_retrain_event(registry, "fraud", "incident-crash")
    assert trained is not None and trained.version == "2"
    assert registry.aliases("fraud") == {"champion": "1", "challenger": "2"}

    # The monitor delivers the same event again (at least once): nothing is trained.
    mark = len(survivor.text())
    env.produce(topics.RETRAIN, "RetrainEvent", [event], key="model_name")
    wait_until(lambda: env.committed(group, topics.RETRAIN) == 2, timeout=60, interval=0.2,
               message="the duplicate event was handled")  # fmt: skip
    survivor.wait_for_log("was trained already as fraud@2", after=mark)
    assert survivor.stop() == 0

    assert [mv.version for mv in registry.versions("fraud")] == ["1", "2"]
    assert sorted(p.name for p in (env.registry / "fraud").iterdir() if p.name.isdigit()) == ["1", "2"]
    lineage = trained.manifest()["lineage"]
    assert lineage["retrain_event_id"] == "incident-crash"
    assert lineage["data_window"]["transactions"]["kept"] > 0
    updates = env.updates()
    assert {(u["action"], u["version"], u["retrain_event_id"]) for u in updates} == {
        ("CHALLENGER_SET", "2", "incident-crash")
    }
    assert len({u["event_id"] for u in updates}) == 1  # a re-announcement has the same id
