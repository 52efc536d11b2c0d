"""One incident through the whole loop, on the real broker and Redis:

drift -> the monitor's retrain event -> ``fraudstream trainer`` trains and registers a
challenger -> the scorer shadow-scores with it -> ``fraudstream models promote --publish``
-> the scorer hot-swaps, and every later score names the new version -> a rollback.

The world (``fraudstream generate``, seeded): 72 days, amounts in five MCCs inflated
from day 63 (``amount_inflation@63``). The champion was trained on days 0-21 (labels
known on day 21) and has served since. The test starts the scorer on day 63 with a
warm feature store: history (days 0-63) is on the topics for the trainer, and was put
through the online store's own feature path (so the first live features are not cold);
the scorer's group starts after it. The monitor watches from day 63 on, with daily
windows; the retrain event closes the two-day drift run at ``T`` = day 65.

Recall on the post-drift period (day 65 on, the generator's ground truth) is computed
for both models on the very feature vectors the scorer served, and printed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import redis
from prometheus_client import CollectorRegistry

from services import cli, dataset
from services.core import metrics, topics
from services.core.offline import build_features, sort_by_event_time
from services.online.store import OnlineFeatureStore
from services.registry import Registry
from services.runtime import StopFlag
from services.scorer import cli as scorer_cli
from services.settings import ScorerSettings
from services.trainer.training import TrainConfig, train_model
from tests.helpers import wait_until
from tests.integration.trainer.conftest import DAY_MS, LoopEnv, Process, trainer_argv
from tests.unit.backtest.bt_helpers import make_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DAYS, ONSET, CHAMPION_DAYS = 72, 63, 21
T_DAY = ONSET + 2  # the monitor declares drift after two drifting daily windows
SHADOW_END_DAY = 68
HOUR_MS = 3_600_000
AMOUNT_FEATURES = {"amount", "log_amount", "amount_sum_1h", "amount_sum_24h", "amount_sum_7d",
                   "amount_to_card_mean", "amount_zscore", "merchant_mean_amount_7d",
                   "amount_to_merchant_mean"}  # fmt: skip


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = make_dataset(tmp_path_factory.mktemp("loop") / "data", days=DAYS, cards=2000, merchants=200,
                        seed=5, fraud_rate=0.03, drift=f"amount_inflation@{ONSET}")  # fmt: skip
    txns = dataset.read_transactions(data)
    day0 = txns[0]["event_time"] // DAY_MS * DAY_MS
    return {
        "data": data,
        "txns": txns,
        "labels": dataset.read_labels(data),
        "truth": dataset.read_truth(data),
        "manifest": dataset.read_manifest(data),
        "day0": day0,
    }


def register_champion(world: dict[str, Any], registry: Path) -> None:
    """The recipe on days 0-21 with the labels known on day 21 (fraud@1, champion)."""
    cutoff = world["day0"] + CHAMPION_DAYS * DAY_MS
    result = train_model(
        [t for t in world["txns"] if t["event_time"] < cutoff],
        [lb for lb in world["labels"] if lb["label_time"] <= cutoff],
        config=TrainConfig(max_rounds=300),
        dataset={"label_policy": world["manifest"]["label_policy"], "days": f"0-{CHAMPION_DAYS}"},
        clock=lambda: datetime.now(UTC),
    )  # fmt: skip
    Registry(registry).register("fraud", result.model_text, result.manifest)


@dataclass
class Scorer:
    """``fraudstream scorer`` (its ``serve``) in a thread with its own metrics registry."""

    settings: ScorerSettings
    stop: StopFlag = field(default_factory=StopFlag)
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    result: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="scorer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result["code"] = scorer_cli.serve(self.settings, self.stop, self.metrics)
        except BaseException as exc:  # surfaced by close()
            self.result["error"] = exc

    def serves(self, role: str, version: str) -> bool:
        assert self.thread.is_alive(), f"scorer stopped: {self.result}"
        samples = [s for m in self.metrics.collect() if m.name == "fraudstream_scorer_model_info"
                   for s in m.samples if s.labels.get("role") == role]  # fmt: skip
        return [s.labels["version"] for s in samples] == [version] if version else not samples

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "scorer did not stop"
        if "error" in self.result:
            raise self.result["error"]
        assert self.result["code"] == 0


@pytest.fixture
def scorer_factory(
    loop_env: LoopEnv, redis_url: str, redis_namespace: str
) -> Iterator[Callable[[str], Scorer]]:
    running: list[Scorer] = []

    def make(group: str) -> Scorer:
        settings = ScorerSettings.model_validate({
            "kafka_bootstrap": loop_env.bootstrap, "redis_url": redis_url, "redis_namespace": redis_namespace,
            "topic_prefix": loop_env.prefix, "group_id": group, "registry": loop_env.registry,
            "transactional_id_prefix": group, "batch_max_ms": 20, "model_poll_s": 0.5, "shadow": True,
            "max_event_age_days": 3650, "max_poll_interval_ms": 10_000, "log_level": "INFO",
        })  # fmt: skip
        running.append(Scorer(settings))
        return running[-1]

    yield make
    for scorer in running:
        if scorer.thread.is_alive():
            scorer.close()


def warm_feature_store(txns: list[dict[str, Any]], redis_url: str, namespace: str) -> None:
    """History through the online store's feature path, as a scorer running since day 0 left it."""
    client = redis.Redis.from_url(redis_url)
    try:
        store = OnlineFeatureStore(client, namespace)
        ordered = sort_by_event_time(txns)
        for i in range(0, len(ordered), 1000):
            store.process_batch(ordered[i : i + 1000])
    finally:
        client.close()


Scores = dict[str, dict[str, dict[str, Any]]]


def scores_by_txn(env: LoopEnv) -> Scores:
    """txn_id -> {"live": score, "shadow": score} from the scores topic."""
    out: Scores = {}
    for score in env.read(topics.SCORES, "Score"):
        role = "shadow" if score["shadow"] else "live"
        assert role not in out.setdefault(score["txn_id"], {}), "a transaction scored twice"
        out[score["txn_id"]][role] = score
    return out


def wait_for_scores(env: LoopEnv, txn_ids: set[str], what: str) -> Scores:
    """The scores topic once every one of ``txn_ids`` has its score there."""
    seen: Scores = {}

    def complete() -> bool:
        seen.clear()
        seen.update(scores_by_txn(env))
        return txn_ids <= set(seen)

    wait_until(complete, timeout=120, interval=0.5, message=f"scores for {what}")
    return seen


def recall_figures(world: dict[str, Any], scored: list[dict[str, Any]], boosters: dict[str, Any],
                   thresholds: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """Truth-based recall of each model on the same served feature vectors."""
    X = np.asarray([s["features"] for s in scored], dtype=np.float64)
    y = np.asarray([world["truth"][s["txn_id"]][0] for s in scored], dtype=bool)
    scores = {name: np.asarray(b.predict(X), dtype=np.float64) for name, b in boosters.items()}
    share = float(np.mean(scores["champion"] >= thresholds["champion"]))
    out: dict[str, Any] = {
        "rows": int(y.size),
        "frauds": int(y.sum()),
        "champion_alert_share": round(share, 4),
    }
    for name, s in scores.items():
        out[name] = {
            "recall_at_own_review_threshold": round(float(y[s >= thresholds[name]].sum() / y.sum()), 4),
            "alert_share_at_own_review_threshold": round(float(np.mean(s >= thresholds[name])), 4),
            "recall_at_champion_alert_share": round(metrics.recall_at_alert_rate(y, s, share), 4),
            "pr_auc": round(metrics.pr_auc(y, s), 4),
        }  # fmt: skip
    return out


def before_drift(world: dict[str, Any], onset: int) -> list[dict[str, Any]]:
    """The week before the onset as the scorer would have served it (offline features)."""
    frame = build_features(sort_by_event_time([t for t in world["txns"] if t["event_time"] < onset]))
    week = np.flatnonzero(frame.event_time >= onset - 7 * DAY_MS)
    return [{"txn_id": frame.txn_ids[i], "features": frame.X[i]} for i in week.tolist()]


def test_drift_retrain_shadow_promote_swap_rollback(
    loop_env: LoopEnv,
    world: dict[str, Any],
    redis_url: str,
    redis_namespace: str,
    unique: Callable[[str], str],
    scorer_factory: Callable[[str], Scorer],
    start: Callable[[list[str], Path], Process],
) -> None:
    env, day0 = loop_env, world["day0"]
    onset, as_of = day0 + ONSET * DAY_MS, day0 + T_DAY * DAY_MS
    register_champion(world, env.registry)
    registry = Registry(env.registry)

    # History on the topics; the scorer goes live at the onset with warm features.
    env.replay(world["data"], end=iso(onset))
    scorer_group = unique("scorer")
    env.commit_to_end(scorer_group, topics.TRANSACTIONS)
    warm_feature_store([t for t in world["txns"] if t["event_time"] < onset], redis_url, redis_namespace)
    monitor = start(["monitor", *env.kafka_flags(), "--registry", str(env.registry), "--model-name", "fraud",
                     "--app-id", env.prefix + "monitor", "--data-dir", str(env.tmp / "monitor"),
                     "--window-s", "86400", "--window-min-records", "200", "--drift-consecutive", "2",
                     "--drift-warmup-s", "0"],  # the feature store is warm: no cold-start warm-up
                    env.tmp / "monitor.log")  # fmt: skip
    scorer = scorer_factory(scorer_group)
    wait_until(lambda: scorer.serves("champion", "1"), timeout=60, message="the scorer serves fraud@1")

    # 1. Drift: two days after the onset the monitor asks for a retrain.
    env.replay(world["data"], start=iso(onset), end=iso(as_of + 2 * HOUR_MS))
    events = wait_until(lambda: env.read(topics.RETRAIN, "RetrainEvent"), timeout=180, interval=0.5,
                        message=f"a retrain event (monitor log {monitor.log})")  # fmt: skip
    assert len(events) == 1, events
    event = events[0]
    assert (event["reason"], event["model_version"], event["window_end"]) == ("DRIFT", "1", as_of)
    assert AMOUNT_FEATURES & set(event["drifted_features"]), event["drifted_features"]

    # 2. The trainer trains and registers a challenger for it (promotion left to a person).
    trainer = start(trainer_argv(env, unique("trainer"), auto_promote_margin=1), env.tmp / "trainer.log")
    wait_until(lambda: env.updates(), timeout=180, interval=0.5, message=f"an update (log {trainer.log})")
    [update] = env.updates()
    assert (update["action"], update["version"], update["retrain_event_id"]) == (
        "CHALLENGER_SET", "2", event["event_id"])  # fmt: skip
    assert registry.aliases("fraud") == {"champion": "1", "challenger": "2"}
    lineage = registry.resolve("fraud@2").manifest()["lineage"]
    assert lineage["retrain_event_id"] == event["event_id"] and lineage["data_window"]["as_of_ms"] == as_of
    assert lineage["holdout"]["frauds"] >= 20 and set(lineage["evaluation"]) == {"champion", "challenger"}
    assert lineage["decision"]["action"] == "hold"

    # 3. Shadow scores flow while the challenger is set.
    wait_until(lambda: scorer.serves("shadow", "2"), timeout=30, message="the scorer shadow-scores fraud@2")
    shadow_end = day0 + SHADOW_END_DAY * DAY_MS
    env.replay(world["data"], start=iso(as_of + 2 * HOUR_MS), end=iso(shadow_end))
    shadow_txns = {t["txn_id"] for t in world["txns"] if as_of + 2 * HOUR_MS <= t["event_time"] < shadow_end}
    scores = wait_for_scores(env, shadow_txns, "the shadow period")
    for txn_id in shadow_txns:
        live, shadow = scores[txn_id]["live"], scores[txn_id]["shadow"]
        assert (live["model_version"], shadow["model_version"]) == ("1", "2")
        assert np.array_equal(live["features"], shadow["features"], equal_nan=True)  # one feature vector

    # 4. A person promotes it; the scorers swap.
    promote = ["models", "--registry", str(env.registry), "promote", "fraud@challenger", "--publish",
               *env.kafka_flags()]  # fmt: skip
    assert cli.main(promote) == 0
    assert [(u["action"], u["version"], u["previous_version"]) for u in env.updates()][1:] == [
        ("PROMOTED", "2", "1")]  # fmt: skip
    wait_until(lambda: scorer.serves("champion", "2") and scorer.serves("shadow", ""), timeout=30,
               message="the scorer serves fraud@2, no shadow")  # fmt: skip
    env.replay(world["data"], start=iso(shadow_end))
    after = {t["txn_id"] for t in world["txns"] if t["event_time"] >= shadow_end}
    scores = wait_for_scores(env, after, "after the swap")
    assert {scores[t]["live"]["model_version"] for t in after} == {"2"}
    assert not any("shadow" in scores[t] for t in after)

    # 5. Recall on the post-drift period, both models on the served feature vectors.
    post = [s["live"] for t, s in scores.items() if s["live"]["event_time"] >= as_of]
    boosters = {name: lightgbm.Booster(model_str=registry.resolve(f"fraud@{v}").model_path.read_text())
                for name, v in (("champion", "1"), ("challenger", "2"))}  # fmt: skip
    thresholds = {name: registry.resolve(f"fraud@{v}").manifest()["thresholds"]["review"]
                  for name, v in (("champion", "1"), ("challenger", "2"))}  # fmt: skip
    figures = recall_figures(world, post, boosters, thresholds)
    figures["week_before_drift"] = recall_figures(world, before_drift(world, onset), boosters, thresholds)
    figures["holdout"] = {"window": lineage["holdout"], "evaluation": lineage["evaluation"]}
    (env.tmp / "loop_figures.json").write_text(json.dumps(figures, indent=2))
    print("\nclosed loop figures:", json.dumps(figures, indent=2))
    assert (
        figures["challenger"]["recall_at_champion_alert_share"]
        > figures["champion"]["recall_at_champion_alert_share"]
    )

    # 6. Rollback: the old version comes back by promoting it; the new one is kept.
    assert cli.main(["models", "--registry", str(env.registry), "promote", "fraud@1", "--publish",
                     *env.kafka_flags()]) == 0  # fmt: skip
    assert env.updates()[-1]["action"] == "ROLLED_BACK" and env.updates()[-1]["version"] == "1"
    assert registry.aliases("fraud")["champion"] == "1" and registry.resolve("fraud@2").status == "retired"
    wait_until(lambda: scorer.serves("champion", "1"), timeout=30, message="the scorer serves fraud@1 again")
    assert trainer.stop() == 0 and monitor.stop() == 0
    scorer.close()
