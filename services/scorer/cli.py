"""``fraudstream scorer``: score every transaction on ``transactions`` exactly once.

Start-up refuses, with one line and exit code 2, a configuration it cannot serve: no
champion model, a model that fails verification (sha256, feature fingerprint), missing
topics. At run time a poison flood or a fatal Kafka error stops it with one line and
exit code 1; SIGTERM stops it cleanly (exit 0) after the batch in hand.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import redis
from confluent_kafka import Consumer, KafkaException, Producer
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from services import settings as cfg
from services.core.codec import Codec
from services.core.features import READABLE
from services.kafka import consumer_config, producer_config
from services.online.store import OnlineFeatureStore
from services.registry import Registry, RegistryError
from services.runtime import StopFlag, configure_logging, run_command
from services.scorer import metrics as scorer_metrics
from services.scorer.config import LoopConfig
from services.scorer.delivery import AtLeastOnceDelivery, DeliveryError, TransactionalDelivery, describe
from services.scorer.loop import KafkaFatal, PoisonFlood, Scorer
from services.scorer.model_watch import ModelWatch
from services.settings import ConfigError, ScorerSettings

PROG = "fraudstream scorer"
log = logging.getLogger(__name__)

# Short transactions (one micro-batch); a crashed scorer's open transaction is aborted by
# the broker after this long if no successor with the same transactional.id fences it.
TRANSACTION_TIMEOUT_MS = 10_000
TRANSACTIONAL_PRODUCER = {
    "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
    # A transaction begun right after the previous commit meets the coordinator still
    # writing that commit's markers: it answers CONCURRENT_TRANSACTIONS and librdkafka
    # retries after retry.backoff.ms, 100 ms by default, on AddPartitionsToTxn and
    # AddOffsetsToTxn alike: ~100 ms per batch. Markers take a few ms, so retry soon
    # (the backoff still grows exponentially up to retry.backoff.max.ms when a broker is
    # really down).
    "retry.backoff.ms": 5,
}
REDIS_TIMEOUT_S = 2.0
MAX_SLOTS = 64
# Young-generation threshold of the cyclic GC (CPython's default is 700). A batch of
# 500 allocates tens of thousands of short-lived containers (decoded records, scores),
# nearly all freed by reference counting; at 700 the collector runs dozens of times per
# batch and keeps promoting the batch in hand into older generations.
GC_GEN0_THRESHOLD = 50_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read transactions from Kafka, compute online features in Redis, score "
        "them with the champion LightGBM model and write one score per transaction to the "
        "scores topic (bad records go to the dead-letter topic).",
    )
    cfg.add_flags(parser, ScorerSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        settings = cfg.load(ScorerSettings, args)
        configure_logging(settings.log_level)
        return serve(settings, StopFlag().install(), tune_gc=True)

    return run_command(PROG, body)


def serve(
    settings: ScorerSettings,
    stop: StopFlag,
    registry: CollectorRegistry | None = None,
    *,
    tune_gc: bool = False,
) -> int:
    """Build the scorer from ``settings`` and run it until ``stop``; returns the exit code.

    ``tune_gc`` (the command does it; it is process-wide, so callers that embed the scorer
    decide): see :func:`freeze_gc`."""
    metrics = scorer_metrics.ScorerMetrics(registry)
    models = ModelWatch(
        Registry(settings.registry),
        settings.model,
        poll_s=settings.model_poll_s,
        metrics=metrics,
        shadow=settings.shadow,
    )
    try:
        models.start()
    except RegistryError as exc:
        raise ConfigError(f"cannot serve {settings.model}: {exc}") from None
    codec = Codec.load()
    loop_cfg = LoopConfig.from_settings(settings)
    with contextlib.ExitStack() as stack:
        slot = stack.enter_context(instance_slot(settings.group_id))
        delivery = make_delivery(settings, slot, metrics)
        stack.callback(_close_quietly, delivery)  # Scorer.run closes both; this covers
        consumer = make_consumer(settings)  # a failure before the loop starts
        stack.callback(_close_quietly, consumer)
        check_topics(
            consumer,
            [loop_cfg.transactions, loop_cfg.scores, loop_cfg.dead_letters],
            settings.kafka_timeout_s,
        )
        try:
            delivery.start()
        except DeliveryError as exc:
            print(f"{PROG}: error: cannot start the Kafka producer: {exc.detail}", file=sys.stderr)
            return 1
        metrics.kafka_up.set(1)
        store, redis_client = make_store(settings)
        stack.callback(redis_client.close)
        metrics.redis_up.set(1 if redis_answers(redis_client) else 0)
        scorer_metrics.serve(settings.metrics_port, metrics.registry)
        scorer = Scorer(
            loop_cfg,
            consumer=consumer,
            delivery=delivery,
            store=store,
            models=models,
            codec=codec,
            readable=READABLE,
            metrics=metrics,
            stop=stop,
        )
        log.info(
            "scoring %s -> %s (%s, group %s, model %s)",
            loop_cfg.transactions, loop_cfg.scores, settings.delivery, settings.group_id,
            models.champion.label,
        )  # fmt: skip
        if tune_gc:
            freeze_gc()
        try:
            scorer.run()
        except (PoisonFlood, KafkaFatal) as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
    log.info("stopped")
    return 0


def freeze_gc() -> None:
    """Keep the cyclic GC's pauses out of the scoring loop.

    A full collection walks every tracked object: modules, codec, model, clients and, in
    a benchmark, whatever the host process holds. Measured 50-90 ms every few seconds at
    2,000 tx/s, which was the p99 latency. What is alive after start-up stays alive, so
    it moves to the permanent generation (``gc.freeze``), which no collection walks
    (reference counting still frees what does go, e.g. a hot-swapped model). The loop's
    own garbage is young and nearly all freed by reference counting.
    """
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def make_consumer(settings: ScorerSettings) -> Consumer:
    overrides = {
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        # librdkafka refuses a poll interval below the session timeout.
        "session.timeout.ms": min(settings.session_timeout_ms, settings.max_poll_interval_ms),
    }
    try:
        return Consumer(consumer_config(settings, settings.group_id, read_committed=True, **overrides))
    except KafkaException as exc:
        raise ConfigError(f"bad Kafka consumer settings: {describe(exc)}") from None


def make_delivery(
    settings: ScorerSettings, slot: int, metrics: scorer_metrics.ScorerMetrics
) -> TransactionalDelivery | AtLeastOnceDelivery:
    if settings.delivery == "at-least-once":
        conf = producer_config(settings)
        return AtLeastOnceDelivery(factory=lambda: Producer(conf))
    txn_id = transactional_id(settings.transactional_id_prefix, settings.group_id, socket.gethostname(), slot)
    conf = producer_config(settings, transactional_id=txn_id, **TRANSACTIONAL_PRODUCER)
    log.info("transactional.id %s", txn_id)
    return TransactionalDelivery(factory=lambda: Producer(conf), on_recreate=metrics.producer_recreated.inc)


def transactional_id(prefix: str, group_id: str, host: str, slot: int) -> str:
    """Stable per running instance, so a restarted scorer fences its crashed predecessor
    (and aborts its open transaction) at once, and unique among instances running now."""
    return f"{prefix}.{group_id}.{host}.{slot}"


@contextlib.contextmanager
def instance_slot(group_id: str, lock_dir: Path | None = None) -> Iterator[int]:
    """The lowest slot number no other scorer of ``group_id`` on this host holds.

    A slot is an ``flock`` on a file, released by the kernel when the process dies (even
    by SIGKILL), so a restart gets its predecessor's slot and transactional.id back.
    """
    folder = lock_dir or Path(tempfile.gettempdir()) / "fraudstream-scorer"
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in group_id)
    for slot in range(MAX_SLOTS):
        handle: IO[str] = (folder / f"{safe}.{slot}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            yield slot
        finally:
            handle.close()
        return
    raise ConfigError(f"more than {MAX_SLOTS} scorers of group {group_id!r} on this host")


def check_topics(consumer: Consumer, names: Sequence[str], timeout_s: float) -> None:
    try:
        meta = consumer.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ConfigError(f"cannot reach Kafka: {exc.args[0] if exc.args else exc}") from None
    missing = [n for n in names if n not in meta.topics or meta.topics[n].error is not None]
    if missing:
        raise ConfigError(
            f"topic {missing[0]} does not exist; create the topics first "
            f"(`fraudstream topics` with the same --topic-prefix)"
        )


def make_store(settings: ScorerSettings) -> tuple[OnlineFeatureStore, redis.Redis]:
    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        # One immediate retry (a pooled connection the server closed); the loop does the
        # backing off, polling Kafka meanwhile. redis-py's default (10 tries with growing
        # sleeps) would block the loop for a minute per call.
        retry=Retry(NoBackoff(), 1),
    )
    return OnlineFeatureStore(client, settings.redis_namespace, txn_ttl_s=settings.txn_marker_ttl_s), client


def redis_answers(client: redis.Redis) -> bool:
    """A start-up check only: the loop waits out an outage, so a down Redis is a warning."""
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError as exc:
        log.warning("Redis at %s does not answer yet (%s); waiting for it", _redacted(client), exc)
        return False


def _redacted(client: redis.Redis) -> str:
    kwargs = client.get_connection_kwargs()
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def _close_quietly(closeable: Consumer | TransactionalDelivery | AtLeastOnceDelivery) -> None:
    with contextlib.suppress(RuntimeError, KafkaException):
        closeable.close()


if __name__ == "__main__":
    sys.exit(main())
