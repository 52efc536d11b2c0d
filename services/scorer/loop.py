"""The scorer's consume -> score -> deliver loop.

One thread, one micro-batch at a time:

1. **fetch**: ``poll(batch_max_ms)`` blocks only while nothing is there; the records
   already fetched are then drained with ``consume(n, 0)``, so a batch never waits for
   records that have not arrived. Under load the batch fills up to ``batch_max_records``.
2. **decode + validate** (errors are values), then the poison-flood check: a flood stops
   the scorer *before* anything of the batch is delivered or committed.
3. **features** from Redis, idempotent per txn id. A Redis failure pauses the assigned
   partitions and retries the same batch with exponential backoff, polling the
   consumer meanwhile so the group keeps it. Nothing is dead-lettered for it.
4. **predict + encode**, then **deliver** scores, dead letters and offsets (one Kafka
   transaction, or produce-flush-commit). A failed delivery rewinds the consumer to the
   committed offsets, so the batch is read and scored again: same features (idempotent
   store), same scores.

Rebalances: callbacks run only inside ``poll``/``consume``/``close``, and the loop never
holds an open transaction across those calls (a transaction begins and ends inside
``deliver``), so a revoke has nothing to commit. What it must do is make sure that no
record of a revoked (or lost) partition that this loop still holds is ever delivered or
its offset committed: the new owner starts from the committed offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.core.codec import Codec
from services.online.store import StoreError, StoreUnavailable
from services.runtime import StopFlag
from services.scorer import batch as B
from services.scorer.config import LoopConfig
from services.scorer.delivery import Delivery, DeliveryError
from services.scorer.dlq import PoisonDetector, flood_message
from services.scorer.metrics import ScorerMetrics
from services.scorer.model_watch import ModelWatch

log = logging.getLogger(__name__)
# One DEBUG line per committed batch with the wall time of every step (enable this logger
# alone to find where latency goes; the stage histograms only hold the sums).
trace = logging.getLogger(__name__ + ".trace")

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0
PAUSED_POLL_S = 0.2
LAG_REFRESH_S = 1.0
COMMITTED_TIMEOUT_S = 10.0
ERROR_LOG_INTERVAL_S = 10.0

TP = tuple[str, int]


class PoisonFlood(Exception):
    """Too many bad records: stop without committing the batch that showed it."""


class KafkaFatal(Exception):
    """The consumer hit an error it cannot recover from (authorization, fencing, ...)."""


def backoff_s(attempt: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Exponential backoff: base, 2*base, 4*base, ... capped at ``cap`` seconds."""
    return min(cap, base * (2 ** min(attempt, 30)))


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def to_raw(msg: Message) -> B.Raw:
    # A data message always has topic, partition and offset; headers come as a list.
    return B.Raw(
        cast(str, msg.topic()),
        cast(int, msg.partition()),
        cast(int, msg.offset()),
        cast("bytes | None", msg.key()),
        msg.value(),
        cast("list[tuple[str, bytes | None]] | None", msg.headers()),
    )


class Scorer:
    """Runs the loop until ``stop`` is set; see the module docstring for the contract."""

    def __init__(
        self,
        cfg: LoopConfig,
        *,
        consumer: Consumer,
        delivery: Delivery,
        store: B.FeatureStore,
        models: ModelWatch,
        codec: Codec,
        readable: Mapping[str, str],
        metrics: ScorerMetrics,
        stop: StopFlag,
        clock_ms: Callable[[], int] = wall_ms,
        backoff: Callable[[int], float] = backoff_s,
    ) -> None:
        self.cfg = cfg
        self.consumer = consumer
        self.delivery = delivery
        self.store = store
        self.models = models
        self.codec = codec
        self.readable = readable
        self.metrics = metrics
        self.stop = stop
        self.clock_ms = clock_ms
        self.backoff = backoff
        self.poison = PoisonDetector(
            max_share=cfg.poison_max_share, max_consecutive=cfg.poison_max_consecutive
        )
        self._gone: set[TP] = set()  # revoked or lost since the batch in hand was fetched
        self._paused = False
        self._next_lag = 0.0
        self._logged_errors: dict[int, float] = {}
        self._steps: dict[str, float] = {}  # this iteration's step -> seconds (the trace)
        self.batches_done = 0

    # ------------------------------------------------------------------ lifecycle

    def run(self, *, max_batches: int | None = None) -> None:
        """Score until stopped (SIGTERM) or ``max_batches`` were committed; then leave
        the group and close the producer. Raises PoisonFlood or KafkaFatal."""
        self.consumer.subscribe(
            [self.cfg.transactions],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self.stop.is_set():
                if max_batches is not None and self.batches_done >= max_batches:
                    break
                self._steps = {}
                t0 = time.perf_counter()
                self.models.maybe_refresh()
                self._steps["models"] = time.perf_counter() - t0
                raws = self._fetch()
                if raws:
                    self._process(raws)
                t0 = time.perf_counter()
                self._maybe_update_lag()
                self._steps["lag"] = time.perf_counter() - t0
                if raws and trace.isEnabledFor(logging.DEBUG):
                    trace.debug(
                        "batch %d n=%d %s", self.batches_done, len(raws),
                        " ".join(f"{k}={v * 1000:.2f}" for k, v in self._steps.items()),
                    )  # fmt: skip
        finally:
            self._close()

    def _close(self) -> None:
        try:
            self.consumer.close()  # leaves the group now: its partitions move at once
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", exc)
        try:
            self.delivery.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the producer: %s", exc)

    # ------------------------------------------------------------------ fetching

    def _fetch(self) -> list[B.Raw]:
        self._gone.clear()
        t0 = time.perf_counter()
        first = self.consumer.poll(self.cfg.batch_max_s)
        t1 = time.perf_counter()
        self._steps["poll"] = t1 - t0
        if first is None:
            return []
        msgs = [first]
        if self.cfg.batch_max_records > 1:
            msgs += self.consumer.consume(self.cfg.batch_max_records - 1, 0)
        self._steps["drain"] = time.perf_counter() - t1
        raws = [to_raw(m) for m in msgs if self._usable(m)]
        # A revoke served inside this very call may follow records it collected before.
        raws = [r for r in raws if (r.topic, r.partition) not in self._gone]
        self.metrics.consumed.inc(len(raws))
        return raws

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.fatal():
            raise KafkaFatal(f"consumer: {err.str()}")
        if err.code() == KafkaError._PARTITION_EOF:
            return False
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.metrics.kafka_up.set(0)
        # The same error repeats on every poll while it lasts: say it once per interval.
        now = time.monotonic()
        if self._logged_errors.get(err.code(), 0.0) <= now:
            self._logged_errors[err.code()] = now + ERROR_LOG_INTERVAL_S
            log.warning("consumer: %s", err.str())
        return False

    # ------------------------------------------------------------------ one batch

    def _process(self, raws: list[B.Raw]) -> None:
        consumed_at = self.clock_ms()
        t0 = time.perf_counter()
        decoded = B.decode_batch(raws, self.codec, self.cfg.limits, consumed_at)
        self._steps["decode"] = time.perf_counter() - t0
        self.metrics.time_stage("decode", self._steps["decode"])
        flood = self.poison.check(decoded.bad_flags)
        if flood is not None:
            raise PoisonFlood(flood_message(flood, decoded.bads[-1][1] if decoded.bads else None))
        offsets, firsts = B.next_offsets(raws), B.first_offsets(raws)
        attempt = 0
        while True:
            if self._gone:
                decoded = decoded.without_partitions(self._gone)
                offsets = {tp: o for tp, o in offsets.items() if tp not in self._gone}
                firsts = {tp: o for tp, o in firsts.items() if tp not in self._gone}
                if not offsets:  # every partition of the batch moved to another scorer
                    self._resume()
                    return
            try:
                scored = B.score_batch(
                    decoded,
                    store=self.store,
                    champion=self.models.champion,
                    shadow=self.models.shadow,
                    codec=self.codec,
                    readable=self.readable,
                    scores_topic=self.cfg.scores,
                    dlq_topic=self.cfg.dead_letters,
                    consumed_at_ms=consumed_at,
                    clock_ms=self.clock_ms,
                )
            except StoreError as exc:
                # Unavailable (down, timing out, loading) or a write conflict with another
                # writer: not the records' fault, so never dead-lettered; retry the batch.
                unavailable = isinstance(exc, StoreUnavailable)
                self.metrics.redis_up.set(0 if unavailable else 1)
                self.metrics.batch_retries.labels("redis" if unavailable else "redis_conflict").inc()
                log.warning("feature store: %s; retrying the batch (attempt %d)", exc, attempt + 1)
                if not self._wait_paused(self.backoff(attempt)):
                    return  # stopping: the batch is not committed and will be redelivered
                attempt += 1
                continue
            self.metrics.redis_up.set(1)
            for stage, seconds in scored.seconds.items():
                self.metrics.time_stage(stage, seconds)
            self._steps.update(scored.seconds)
            if self._deliver(scored.out, offsets, firsts, attempt):
                break
            return  # rewound: the records come again in later batches
        self._resume()
        t0 = time.perf_counter()
        self._account(decoded, scored, consumed_at)
        self._steps["account"] = time.perf_counter() - t0

    def _deliver(
        self, out: list[B.OutRecord], offsets: dict[TP, int], firsts: dict[TP, int], attempt: int
    ) -> bool:
        t0 = time.perf_counter()
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            steps = self.delivery.deliver(out, tps, self.consumer)
        except DeliveryError as exc:
            self.metrics.kafka_up.set(0)
            self.metrics.batch_retries.labels(exc.cause).inc()
            log.warning("delivery failed (%s); rewinding to the committed offsets", exc)
            self._rewind(firsts, attempt)
            return False
        self.metrics.kafka_up.set(1)
        self.metrics.time_stage("produce", time.perf_counter() - t0)
        self._steps.update(steps)
        return True

    def _account(self, decoded: B.Decoded, scored: B.Scored, consumed_at: int) -> None:
        """Metrics and flood-window bookkeeping for a committed batch."""
        self.poison.record(decoded.bad_flags)
        self.metrics.poison_share.set(self.poison.share)
        self.metrics.record_batch(
            size=len(decoded.goods) + len(decoded.bads),
            decisions=scored.decisions,
            dead_letter_reasons=[failure.reason for _raw, failure in decoded.bads],
            shadow_scores=scored.shadow_scores,
            event_times_ms=scored.event_times,
            scored_at_ms=scored.scored_at_ms,
            consumed_at_ms=consumed_at,
            committed_at_ms=self.clock_ms(),
            feature_ages_s=scored.feature_ages_s,
        )
        self.batches_done += 1

    # ------------------------------------------------------------------ transient failures

    def _wait_paused(self, seconds: float) -> bool:
        """Pause every assigned partition and keep polling for ``seconds`` (the group keeps
        us: max.poll.interval.ms is honoured, rebalances are served). False if stopping."""
        if not self._paused:
            self.consumer.pause(self.consumer.assignment())
            self._paused = True
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.is_set():
                return False
            msg = self.consumer.poll(min(left, PAUSED_POLL_S))
            if msg is not None and msg.error() is None:
                # Paused partitions return nothing; a record here is one we must not skip.
                # Rewind its partition so that it comes again after the resume.
                raw = to_raw(msg)
                self._seek(TopicPartition(raw.topic, raw.partition, raw.offset))
        return not self.stop.is_set()

    def _resume(self) -> None:
        if self._paused:
            self.consumer.resume(self.consumer.assignment())
            self._paused = False

    def _rewind(self, firsts: dict[TP, int], attempt: int) -> None:
        """Seek each partition of the failed batch back to its committed offset (or the
        batch's first offset where nothing was ever committed), backing off first."""
        tries = attempt
        while self._wait_paused(self.backoff(tries)):
            owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            wanted = [
                TopicPartition(t, p) for (t, p) in firsts if (t, p) in owned and (t, p) not in self._gone
            ]
            try:
                committed = self.consumer.committed(wanted, timeout=COMMITTED_TIMEOUT_S) if wanted else []
                failed = next((tp.error for tp in committed if tp.error is not None), None)
                if failed is not None:
                    raise KafkaException(failed)
            except KafkaException as exc:
                log.warning("cannot read committed offsets (%s); retrying", exc)
                tries += 1
                continue
            for tp in committed:
                offset = tp.offset if tp.offset >= 0 else firsts[(tp.topic, tp.partition)]
                self._seek(TopicPartition(tp.topic, tp.partition, offset))
            self._resume()
            return

    def _seek(self, tp: TopicPartition) -> None:
        try:
            self.consumer.seek(tp)
        except KafkaException as exc:
            # Not assigned any more (revoked meanwhile): its new owner starts from the
            # committed offset, which is exactly where we wanted to go.
            log.info("seek %s[%d] to %d skipped: %s", tp.topic, tp.partition, tp.offset, exc)

    # ------------------------------------------------------------------ rebalance callbacks

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)
        self.metrics.rebalances.labels("assigned").inc()
        if self._paused and partitions:
            consumer.pause(partitions)  # joining mid-outage: wait with the others
        log.info("assigned %s", _describe(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        self.metrics.rebalances.labels("revoked").inc()
        log.info("revoked %s", _describe(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        self.metrics.rebalances.labels("lost").inc()
        log.warning("lost %s (session timed out); their records in hand are dropped", _describe(partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        self._gone |= {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.forget_partitions([tp.partition for tp in partitions])

    # ------------------------------------------------------------------ lag

    def _maybe_update_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + LAG_REFRESH_S
        assigned = self.consumer.assignment()
        if not assigned:
            return
        lags: dict[int, int] = {}
        for tp in self.consumer.position(assigned):
            # cached=True: the watermark from the last fetch response, no broker round trip.
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                lags[tp.partition] = max(0, high - tp.offset)
        self.metrics.set_lag(lags)


def _describe(partitions: Sequence[TopicPartition]) -> str:
    if not partitions:
        return "no partitions"
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return ", ".join(f"{t}{sorted(ps)}" for t, ps in by_topic.items())
