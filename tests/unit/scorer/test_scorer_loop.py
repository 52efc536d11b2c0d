"""The loop's contract with fakes for Kafka and Redis: batch assembly, pause and retry on
Redis failures, rewind after a failed delivery, revoked partitions, flood, stop."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.core.codec import Codec
from services.core.features import READABLE
from services.registry import Registry
from services.runtime import StopFlag
from services.scorer.batch import Limits
from services.scorer.config import LoopConfig
from services.scorer.loop import PoisonFlood, Scorer, backoff_s
from services.scorer.metrics import ScorerMetrics
from services.scorer.model_watch import ModelWatch
from tests.helpers_models import register_model
from tests.unit.scorer.scorer_fakes import TP, FakeConsumer, FakeDelivery, FakeStore

T = "p.transactions"
NOW = 1_767_225_600_000


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.load()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    register_model(root)
    return root


def txn(i: int, card: int) -> dict[str, Any]:
    return {
        "txn_id": f"t{i}", "card_id": f"card-{card}", "merchant_id": "m1", "mcc": 5411,
        "amount": 10.0 + i, "currency": "EUR", "country": "DE", "channel": "POS",
        "device_id": None, "event_time": NOW - 100_000 + i,
    }  # fmt: skip


def logs(
    codec: Codec, per_partition: int, partitions: int = 2
) -> dict[TP, list[tuple[bytes | None, bytes | None]]]:
    out: dict[TP, list[tuple[bytes | None, bytes | None]]] = {}
    for p in range(partitions):
        records = [txn(p * 1000 + i, card=p) for i in range(per_partition)]
        out[(T, p)] = [(r["card_id"].encode(), codec.encode("Transaction", r)) for r in records]
    return out


def make(
    codec: Codec,
    registry: Path,
    consumer_logs: dict[TP, Any],
    *,
    batch: int = 4,
    store: FakeStore | None = None,
    delivery: FakeDelivery | None = None,
    max_consecutive: int = 1000,
) -> tuple[Scorer, FakeConsumer, FakeDelivery, FakeStore, StopFlag, ScorerMetrics]:
    stop = StopFlag()
    consumer = FakeConsumer(consumer_logs, stop)
    delivery = delivery or FakeDelivery()
    store = store or FakeStore()
    metrics = ScorerMetrics(CollectorRegistry())
    models = ModelWatch(Registry(registry), "fraud@champion", poll_s=60, metrics=metrics)
    models.start()
    cfg = LoopConfig(
        transactions=T, scores="p.scores", dead_letters="p.transactions.dlq",
        batch_max_records=batch, batch_max_s=0.05,
        limits=Limits(max_amount=1e6, max_future_skew_ms=300_000, max_event_age_ms=400 * 86_400_000),
        poison_max_share=0.5, poison_max_consecutive=max_consecutive,
    )  # fmt: skip
    scorer = Scorer(
        cfg, consumer=consumer, delivery=delivery, store=store, models=models, codec=codec,  # type: ignore[arg-type]
        readable=READABLE, metrics=metrics, stop=stop, clock_ms=lambda: NOW, backoff=lambda attempt: 0.001,
    )  # fmt: skip
    return scorer, consumer, delivery, store, stop, metrics


def delivered_offsets(delivery: FakeDelivery, codec: Codec) -> list[str]:
    ids = []
    for records, _ in delivery.delivered:
        ids += [codec.decode("Score", r.value or b"")["txn_id"] for r in records if r.topic == "p.scores"]
    return ids


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(a) for a in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff_s(10_000) == 5.0


def test_batches_take_what_is_there_without_waiting(codec: Codec, registry: Path) -> None:
    scorer, consumer, delivery, _, _, metrics = make(codec, registry, logs(codec, 5), batch=4)
    scorer.run()
    assert [len(recs) for recs, _ in delivery.delivered] == [4, 4, 2]
    assert [off for _, off in delivery.delivered] == [{(T, 0): 4}, {(T, 0): 5, (T, 1): 3}, {(T, 1): 5}]
    # One blocking poll for the first record, then a non-blocking drain of the rest.
    assert ("consume", 3, 0) in consumer.calls
    assert consumer.closed and delivery.closed
    assert metrics.registry.get_sample_value("fraudstream_scorer_batch_size_records_sum") == 10


def test_redis_outage_pauses_polls_and_retries_the_same_batch(codec: Codec, registry: Path) -> None:
    store = FakeStore(fail=3)
    scorer, consumer, delivery, _, _, metrics = make(codec, registry, logs(codec, 2), store=store)
    polls_paused: list[set[TP]] = []
    consumer.on_poll_while_paused = lambda c: polls_paused.append(set(c.paused))
    scorer.run()
    assert store.calls == 4 and delivery.attempts == 1  # nothing delivered without features
    assert len(polls_paused) >= 3 and all(p == {(T, 0), (T, 1)} for p in polls_paused)
    assert consumer.paused == set()
    assert ("resume", [(T, 0), (T, 1)]) in consumer.calls
    assert sorted(delivered_offsets(delivery, codec)) == ["t0", "t1", "t1000", "t1001"]
    get = metrics.registry.get_sample_value
    assert get("fraudstream_scorer_batch_retries_total", {"cause": "redis"}) == 3
    assert get("fraudstream_scorer_redis_up") == 1


def test_failed_delivery_rewinds_to_committed_or_batch_start(codec: Codec, registry: Path) -> None:
    scorer, consumer, delivery, _, _, metrics = make(
        codec, registry, logs(codec, 6), batch=8, delivery=FakeDelivery(fail=1)
    )
    consumer.committed_offsets[(T, 0)] = 2  # p0 committed earlier; p1 never was
    consumer.pos[(T, 0)] = 2
    scorer.run()
    assert consumer.seeks[:2] == [((T, 0), 2), ((T, 1), 0)]
    ids = delivered_offsets(delivery, codec)
    assert sorted(ids) == sorted([f"t{i}" for i in range(2, 6)] + [f"t{1000 + i}" for i in range(6)])
    assert len(ids) == len(set(ids)), "a rewound batch must not be delivered twice"
    assert (
        metrics.registry.get_sample_value("fraudstream_scorer_batch_retries_total", {"cause": "abortable"})
        == 1
    )


def test_revoked_partition_records_are_never_delivered(codec: Codec, registry: Path) -> None:
    store = FakeStore(fail=1)
    scorer, consumer, delivery, _, _, _ = make(codec, registry, logs(codec, 2), store=store)

    def revoke_once(c: FakeConsumer) -> None:
        if (T, 1) in c.assigned:
            c.revoke([(T, 1)])
            c.logs.pop((T, 1))  # its new owner scores it; here it is gone

    consumer.on_poll_while_paused = revoke_once
    scorer.run()
    [(records, offsets)] = delivery.delivered
    assert offsets == {(T, 0): 2}
    assert sorted(delivered_offsets(delivery, codec)) == ["t0", "t1"]


def test_flood_stops_before_delivering_anything(codec: Codec, registry: Path) -> None:
    bad = {(T, 0): [(b"k", b"garbage")] * 6}
    scorer, consumer, delivery, _, _, _ = make(codec, registry, bad, batch=10, max_consecutive=5)
    with pytest.raises(PoisonFlood, match="5 bad records in a row.*DecodeError bad_marker"):
        scorer.run()
    assert delivery.attempts == 0 and consumer.committed_offsets == {}
    assert consumer.closed


def test_stop_during_an_outage_leaves_the_batch_uncommitted(codec: Codec, registry: Path) -> None:
    store = FakeStore(fail=10**6)
    scorer, consumer, delivery, _, stop, _ = make(codec, registry, logs(codec, 2), store=store)
    store.on_fail = stop.set
    scorer.run()
    assert delivery.attempts == 0 and consumer.committed_offsets == {}
    assert consumer.closed and delivery.closed


def test_lag_gauge_per_partition_from_cached_watermarks(codec: Codec, registry: Path) -> None:
    scorer, consumer, _, _, _, metrics = make(codec, registry, logs(codec, 5), batch=4)
    scorer.run(max_batches=1)  # 4 of partition 0 scored; partition 1 not yet read
    consumer.pos[(T, 1)] = 1
    scorer._next_lag = 0.0
    scorer._maybe_update_lag()
    lag = "fraudstream_scorer_consumer_lag_records"
    assert metrics.registry.get_sample_value(lag, {"partition": "0"}) == 1
    assert metrics.registry.get_sample_value(lag, {"partition": "1"}) == 4


def test_trace_logs_each_batch_with_its_steps(
    codec: Codec, registry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scorer, *_ = make(codec, registry, logs(codec, 3), batch=4)
    with caplog.at_level(logging.DEBUG, logger="services.scorer.loop.trace"):
        scorer.run()
    lines = [r.getMessage() for r in caplog.records if r.name == "services.scorer.loop.trace"]
    assert [line.split()[:3] for line in lines] == [["batch", "1", "n=4"], ["batch", "2", "n=2"]]
    steps = {part.split("=")[0] for part in lines[0].split()[3:]}
    assert {"poll", "drain", "decode", "redis", "predict", "encode", "account", "lag"} <= steps
