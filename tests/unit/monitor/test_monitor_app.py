"""The faust wiring, without a broker: codecs, isolation level, agent failure handling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from services import settings
from services.monitor import agents
from services.monitor.app import build_app
from services.monitor.metrics import MonitorMetrics
from services.monitor.records import Raw
from services.monitor.transport import check_faust_version
from services.settings import MonitorSettings


def make_settings(**over: Any) -> MonitorSettings:
    return settings.load(
        MonitorSettings, {"kafka_bootstrap": "127.0.0.1:1", "topic_prefix": "t.", **over}, environ={}
    )


def test_no_pickle_anywhere() -> None:
    app = build_app(make_settings())
    assert (app.conf.key_serializer, app.conf.value_serializer) == ("raw", "raw")
    for topic in app.monitor_topics.values():  # type: ignore[attr-defined]
        assert (topic.key_serializer, topic.value_serializer) == ("raw", "raw")
    assert set(app.tables) == {"state", "txns"}
    for table in app.tables.values():
        changelog = table.changelog_topic
        serializers = {
            table.key_serializer,
            table.value_serializer,
            changelog.key_serializer,
            changelog.value_serializer,
        }
        assert serializers == {"json"}, table.name
        assert table.use_partitioner  # a key lives in one changelog partition
    assert {t.get_topic_name() for t in app.monitor_topics.values()} == {  # type: ignore[attr-defined]
        "t.scores",
        "t.labels",
        "t.retrain",
        "t.monitor.dlq",
    }


def test_table_writes_do_not_need_the_changelog_metadata() -> None:
    """The start-up race, deterministically: the producer's metadata cache does not know
    the changelog yet (a just-created topic without an elected leader). faust's
    partitioner path then raised ``TypeError: 'NoneType' object is not iterable`` from
    aiokafka on the first ``table[key] = value``; the write must be queued instead, for
    the changelog's one partition (the real send awaits the metadata)."""
    import aiokafka

    app = build_app(make_settings())

    async def first_writes() -> list[Any]:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started
        assert producer._metadata.partitions_for_topic("t.anything") is None
        app.producer._producer = producer  # type: ignore[attr-defined]
        sent = []
        for name in ("txns", "state"):
            table: Any = app.tables[name]
            assert producer._metadata.partitions_for_topic(table.changelog_topic.get_topic_name()) is None
            table["k"] = {"r": []}
            del table["k"]
            sent += [m.message for m in list(app.producer.buffer.pending._queue)]  # type: ignore[attr-defined]
            app.producer.buffer.pending._queue.clear()  # type: ignore[attr-defined]
        await producer.stop()
        return sent

    messages = asyncio.run(first_writes())
    txns, state = (f"{app.conf.id}-{name}-changelog" for name in ("txns", "state"))
    assert [(m.channel.get_topic_name(), m.partition) for m in messages] == [
        (txns, 0),
        (txns, 0),
        (state, 0),
        (state, 0),
    ]


def test_consumer_reads_committed_only() -> None:
    app = build_app(make_settings())

    async def create() -> str:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return str(consumer._isolation_level)
        finally:
            await consumer.stop()
            thread.thread_loop.close()  # the consumer thread's own loop, never started here

    assert asyncio.run(create()) == "read_committed"
    assert app.conf.processing_guarantee.value == "at_least_once"


def test_stream_partitions_are_fetched_only_after_the_seek_and_the_flow_resume() -> None:
    """faust's order after an assignment: resume the stream partitions, seek them to
    their committed offsets, resume the flow. Records fetched before the seek were
    counted twice or lost (see services.monitor.transport); so a stream partition only
    becomes fetchable at the flow resume that follows a seek covering it."""
    scores, labels = TP("t.scores", 0), TP("t.labels", 0)

    async def active_after_each_step() -> list[set[TP]]:
        app = build_app(make_settings())  # in the running loop, which asyncio.run closes
        consumer: Any = app.consumer
        changelog = TP(f"{app.conf.id}-state-changelog", 0)
        assigned = {scores, labels, changelog}
        consumer.assignment = lambda: assigned

        async def seek_to_committed() -> dict[TP, int]:
            return {tp: 0 for tp in assigned}

        consumer.seek_to_committed = seek_to_committed
        consumer._thread.thread_loop.close()  # the consumer thread's own loop, never started here
        seen = []
        consumer.pause_partitions(assigned)  # as faust does on an assignment
        consumer.resume_partitions({changelog})  # table recovery
        consumer.resume_flow()  # ... which reads the changelog with the flow resumed
        seen.append(set(consumer._get_active_partitions()))
        consumer.resume_partitions({scores, labels})
        seen.append(set(consumer._get_active_partitions()))
        consumer.resume_flow()  # no seek yet: still held
        seen.append(set(consumer._get_active_partitions()))
        await consumer.perform_seek()
        seen.append(set(consumer._get_active_partitions()))
        consumer.resume_flow()
        seen.append(set(consumer._get_active_partitions()))
        # Paused again (a rebalance) while held: the next flow resume must not wake it.
        consumer.pause_partitions({scores, labels})
        consumer.resume_partitions({scores, labels})
        consumer.pause_partitions({scores})
        await consumer.perform_seek()
        consumer.resume_flow()
        seen.append(set(consumer._get_active_partitions()) - {changelog})
        return seen

    changelog_only = {TP("fraudstream-monitor-state-changelog", 0)}
    assert asyncio.run(active_after_each_step()) == [
        changelog_only,
        changelog_only,
        changelog_only,
        changelog_only,
        changelog_only | {scores, labels},
        {labels},
    ]


def test_faust_version_guard() -> None:
    check_faust_version("0.15.3")
    with pytest.raises(RuntimeError, match="0.16.0"):
        check_faust_version("0.16.0")


def test_credentials_from_settings() -> None:
    from services.monitor.app import broker_urls, credentials

    assert broker_urls("a:1, b:2") == ["kafka://a:1", "kafka://b:2"]
    assert credentials(make_settings()) is None
    sasl = credentials(
        make_settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert sasl is not None and sasl.protocol.value == "SASL_PLAINTEXT"


# --------------------------------------------------------------------------- agent body


@dataclass
class Msg:
    topic: str = "t.scores"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    value: bytes | None = b"v"
    headers: list = field(default_factory=list)


@dataclass
class Event:
    message: Msg


class FakeStream:
    def __init__(self, batches: list[list[Event]]) -> None:
        self.batches = batches
        self.acked: list[int] = []

    async def noack_take(self, n: int, within: float) -> AsyncIterator[list[Event]]:
        for batch in self.batches:
            yield batch

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.message.offset)
        return True


class FakeRuntime:
    def __init__(self) -> None:
        self.alive = {"scores": False}
        self.metrics = MonitorMetrics(CollectorRegistry())
        self.app = type("App", (), {"should_stop": False})()

    heartbeat = agents.MonitorRuntime.heartbeat
    clock = staticmethod(lambda: 1_000.0)


def test_agent_acks_only_after_the_batch_is_handled() -> None:
    seen: list[list[int]] = []

    async def handle(raws: list[Raw]) -> None:
        seen.append([r.offset for r in raws])

    stream = FakeStream([[Event(Msg(offset=o)) for o in (0, 1)], [Event(Msg(offset=2))]])
    runtime = FakeRuntime()
    body = agents.agent_body(runtime, "scores", handle, 10, 0.1)  # type: ignore[arg-type]
    asyncio.run(body(stream))  # type: ignore[arg-type]
    assert seen == [[0, 1], [2]] and stream.acked == [0, 1, 2]


def test_agent_failure_is_raised_not_acked_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def handle(raws: list[Raw]) -> None:
        if raws[0].offset == 2:
            raise RuntimeError("boom")

    stream = FakeStream(
        [[Event(Msg(offset=0)), Event(Msg(offset=1))], [Event(Msg(offset=2))], [Event(Msg(offset=3))]]
    )
    runtime = FakeRuntime()
    body = agents.agent_body(runtime, "scores", handle, 10, 0.1)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(body(stream))  # type: ignore[arg-type]
    assert stream.acked == [0, 1]  # the failed batch and what follows stay unacknowledged
    assert runtime.alive["scores"] is False
    reg = runtime.metrics.registry
    assert reg.get_sample_value("fraudstream_monitor_agent_alive", {"agent": "scores"}) == 0
    assert "agent scores failed" in caplog.text and "agent scores is not running" in caplog.text
