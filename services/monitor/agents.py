"""The agents: batches from ``scores`` and ``labels`` into :class:`MonitorCore`.

Each agent has concurrency 1 and takes batches with ``noack_take`` so that nothing is
acknowledged before its effects exist: a batch is acked only after its dead letters
and retrain events are delivered and its table writes are queued (faust flushes the
producer before it commits offsets). An exception is never swallowed: it is logged, the
agent's liveness gauge drops to 0 and the crashing supervisor stops the worker with its
offsets uncommitted, so a restart reprocesses the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mode.supervisors import CrashingSupervisor

from services.core import topics
from services.core.codec import Codec
from services.monitor.app import STATE_TABLE, TXNS_TABLE, MonitorApp
from services.monitor.champion import Champion
from services.monitor.core import MonitorConfig, MonitorCore
from services.monitor.metrics import MonitorMetrics
from services.monitor.records import Raw, Rejected, decode_labels, decode_scores

log = logging.getLogger(__name__)

SERVICE = "monitor"
SCORES_AGENT, LABELS_AGENT = "scores", "labels"
HEARTBEAT_S = 5.0
LABELS_CHECK_S = 1.0  # how often the decision clock asks whether the labels are read to the end
FUTURE_SKEW_MS = 86_400_000  # event and label times may run this far ahead of the wall clock
CHAMPION_POLL_S = 30.0


class MonitorRuntime:
    """What the agents share: the core, the codec, the output topics, liveness."""

    def __init__(
        self,
        app: MonitorApp,
        cfg: MonitorConfig,
        champion: Champion,
        codec: Codec,
        metrics: MonitorMetrics,
        resolve_champion: Callable[[], Champion] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app, self.cfg, self.codec, self.metrics = app, cfg, codec, metrics
        self.resolve_champion, self.clock = resolve_champion, clock
        self.core = self._new_core(champion)
        self.loaded_generation: int | None = None
        self.alive = {SCORES_AGENT: False, LABELS_AGENT: False}
        self.labels_next: dict[int, int] = {}  # per labels partition: next offset not yet handled
        self._checking_labels = False
        self.out = app.monitor_topics  # type: ignore[attr-defined]

    def _new_core(self, champion: Champion) -> MonitorCore:
        tables: Any = self.app.tables  # faust Tables: the KV protocol (get, set, del, items)
        return MonitorCore(self.cfg, champion, tables[STATE_TABLE], tables[TXNS_TABLE], self.metrics)

    def ensure_loaded(self) -> None:
        """Rebuild the in-memory state after every (re)assignment: tables are recovered
        by then (faust resumes streams only after recovery)."""
        generation = self.app.consumer_generation_id
        if generation != self.loaded_generation:
            self.core.load()
            self.loaded_generation = generation
            self._check_assignment()

    def _check_assignment(self) -> None:
        for name in (topics.SCORES, topics.LABELS):
            topic = self.out[name].get_topic_name()
            owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}
            total = self.app.consumer.topic_partitions(topic)
            if total:
                self.metrics.partitions_owned.labels(name).set(len(owned) / total)
            if total is not None and len(owned) != total:
                log.error(
                    "this worker owns %d of %d partitions of %s: the monitor must run as "
                    "exactly one worker, its figures are partial",
                    len(owned),
                    total,
                    topic,
                )

    # ------------------------------------------------------------------ batches

    async def handle_scores(self, raws: Sequence[Raw]) -> None:
        started = time.perf_counter()
        self.ensure_loaded()
        core = self.core  # a champion switch during the awaits below must not mix versions
        champ = core.champion
        rows, rejected = decode_scores(
            self.codec, raws, champ.name, champ.version, champ.n_features, self.latest_ms()
        )
        await self.dead_letter(rejected, "scores")
        await self.publish(core, core.on_scores(rows))
        self.metrics.batch_seconds.labels(SCORES_AGENT).observe(time.perf_counter() - started)

    async def handle_labels(self, raws: Sequence[Raw]) -> None:
        started = time.perf_counter()
        self.ensure_loaded()
        core = self.core
        rows, rejected = decode_labels(self.codec, raws, self.latest_ms())
        await self.dead_letter(rejected, "labels")
        await self.publish(core, core.on_labels(rows))
        for raw in raws:
            self.labels_next[raw.partition] = max(self.labels_next.get(raw.partition, 0), raw.offset + 1)
        self.metrics.batch_seconds.labels(LABELS_AGENT).observe(time.perf_counter() - started)

    async def check_labels_read(self) -> None:
        """Open the decision clock when the labels topic is read to its end.

        Decisions wait for the labels' event time to pass theirs; an idle labels topic
        would hold them for ever. Every label is written before the transactions that
        come after it in event time (the replay's order; in production a chargeback is
        recorded when it happens), so once this worker has handled every label in the
        topic, none before the newest score read so far is missing. The end offsets
        are asked for after that score was read (read_committed: the last stable
        offset). A label written later than that is late and applied on arrival.

        A task of its own runs this every ``LABELS_CHECK_S``, never the agents: the
        offset requests queue behind the consumer thread's fetches, and awaited per
        batch they held the scores agent up for two thirds of its time.
        """
        core = self.core
        if self._checking_labels or not core.waiting_on_labels():
            return
        upto = core.drift.tracker.max_event_ms
        if upto is None:
            return
        self._checking_labels = True
        try:
            if not await self._labels_read_to_end():
                return
        finally:
            self._checking_labels = False
        await self.publish(core, core.labels_complete(upto))

    async def _labels_read_to_end(self) -> bool:
        consumer = self.app.consumer
        topic = self.out[topics.LABELS].get_topic_name()
        tps = [tp for tp in consumer.assignment() if tp.topic == topic]
        if not tps:  # none of ours (logged as a partial assignment): nothing to wait for
            return True
        ends = await consumer.highwaters(*tps)
        starts = await consumer.earliest_offsets(*tps)
        # faust commits only acked offsets, and a batch is acked once handled: what the
        # group had committed when this worker started is handled too.
        committed = getattr(consumer, "_committed_offset", {})
        for tp in tps:
            handled = max(self.labels_next.get(tp.partition, 0), committed.get(tp) or 0, starts.get(tp) or 0)
            if handled < (ends.get(tp) or 0):
                return False
        return True

    def latest_ms(self) -> int:
        return int(self.clock() * 1000) + FUTURE_SKEW_MS

    async def dead_letter(self, rejected: Sequence[Rejected], topic_label: str) -> None:
        """Send each rejected record, original bytes and reason headers, and wait for it."""
        if not rejected:
            return
        pending = []
        now_ms = int(self.clock() * 1000)
        for bad in rejected:
            headers = topics.dead_letter_headers(
                topic=bad.raw.topic,
                partition=bad.raw.partition,
                offset=bad.raw.offset,
                error_class=bad.error_class,
                reason=bad.reason,
                detail=bad.detail,
                service=SERVICE,
                failed_at_ms=now_ms,
            )
            pending.append(
                await self.out[topics.MONITOR_DLQ].send(key=bad.raw.key, value=bad.raw.value, headers=headers)
            )
            log.warning(
                "dead-lettered %s[%d]@%d: %s (%s)",
                bad.raw.topic,
                bad.raw.partition,
                bad.raw.offset,
                bad.reason,
                bad.detail,
            )
        await asyncio.gather(*pending)
        for bad in rejected:
            self.metrics.dead_lettered.labels(topic_label, bad.reason).inc()
            self.metrics.records.labels(topic_label, "dead_lettered").inc()

    async def publish(self, core: MonitorCore, events: Sequence[dict[str, Any]]) -> None:
        """Deliver retrain events (keyed by model name); only then persist the cooldown."""
        for event in events:
            value = self.codec.encode("RetrainEvent", event)
            fut = await self.out[topics.RETRAIN].send(key=str(event["model_name"]).encode(), value=value)
            await fut
            core.emitted(event)

    # ------------------------------------------------------------------ health

    def heartbeat(self) -> bool:
        """Publish each agent's liveness; False (and an error log) if one is down."""
        if self.app.should_stop:  # shutting down: agents stop on purpose
            return True
        now = self.clock()
        healthy = True
        for name, alive in self.alive.items():
            self.metrics.agent_alive.labels(name).set(1 if alive else 0)
            if alive:
                self.metrics.agent_heartbeat.labels(name).set(now)
            else:
                healthy = False
                log.error("agent %s is not running", name)
        return healthy

    def poll_champion(self) -> None:
        """Follow a champion promotion: state is per version, so a switch starts fresh bins."""
        if self.resolve_champion is None:
            return
        try:
            new = self.resolve_champion()
        except Exception as exc:  # a broken registry must not stop the monitoring of the old one
            log.error(
                "cannot resolve the champion, keeping %s@%s: %s",
                self.core.champion.name,
                self.core.champion.version,
                exc,
            )
            return
        if new.version != self.core.champion.version:
            log.warning(
                "champion changed %s -> %s: monitoring the new version",
                self.core.champion.version,
                new.version,
            )
            self.metrics.champion.remove(self.core.champion.name, self.core.champion.version)
            self.core = self._new_core(new)
            self.core.load()


def to_raw(event: Any) -> Raw:
    m = event.message
    headers = m.headers.items() if isinstance(m.headers, dict) else (m.headers or ())
    return Raw(m.topic, m.partition, m.offset, m.key, m.value, tuple(headers))


def agent_body(
    runtime: MonitorRuntime,
    name: str,
    handle: Callable[[Sequence[Raw]], Awaitable[None]],
    batch_max: int,
    batch_within_s: float,
) -> Callable[[Any], Awaitable[None]]:
    """The agent coroutine: batch, handle, then ack; a failure is logged and re-raised."""

    async def agent(stream: Any) -> None:
        runtime.alive[name] = True
        try:
            async for events in stream.noack_take(batch_max, within=batch_within_s):
                await handle([to_raw(e) for e in events])
                for event in events:
                    await stream.ack(event)
        except Exception:
            log.exception("agent %s failed; the worker stops with the batch unacknowledged", name)
            runtime.alive[name] = False
            runtime.heartbeat()
            raise
        finally:
            runtime.alive[name] = False

    agent.__name__ = agent.__qualname__ = f"monitor_{name}"
    return agent


def register_agents(app: MonitorApp, runtime: MonitorRuntime, batch_max: int, batch_within_s: float) -> None:
    """Declare the two agents, the timers and the labels check on ``app``."""
    handlers = {
        SCORES_AGENT: (topics.SCORES, runtime.handle_scores),
        LABELS_AGENT: (topics.LABELS, runtime.handle_labels),
    }
    for name, (topic, handle) in handlers.items():
        app.agent(
            runtime.out[topic], name=f"monitor-{name}", concurrency=1, supervisor_strategy=CrashingSupervisor
        )(agent_body(runtime, name, handle, batch_max, batch_within_s))

    def ready() -> bool:
        return not app.rebalancing and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]

    @app.timer(interval=HEARTBEAT_S, name="monitor-heartbeat")
    async def heartbeat() -> None:
        runtime.heartbeat()
        # Load the recovered state without waiting for a record, so gauges are right
        # after a restart on a quiet topic.
        if ready():
            runtime.ensure_loaded()
        runtime.core.refresh_figures()

    @app.task
    async def labels_check() -> None:
        while not app.should_stop:
            if ready():
                runtime.ensure_loaded()
                await runtime.check_labels_read()
            await app.sleep(LABELS_CHECK_S)

    @app.timer(interval=CHAMPION_POLL_S, name="monitor-champion-poll")
    async def champion_poll() -> None:
        runtime.poll_champion()
