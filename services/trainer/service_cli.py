"""``fraudstream trainer``: retrain events in, challengers (and promotions) out.

Start-up refuses with one line and exit code 2 what it cannot run with: bad settings,
missing topics, Kafka unreachable. At run time a fatal Kafka error or a registry that
cannot be written stops it with one line and exit code 1 (the event in hand is not
committed and is handled again after the restart); SIGTERM stops it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services import settings as cfg
from services.core import topics
from services.runtime import StopFlag, configure_logging, run_command
from services.settings import ConfigError, TrainerServiceSettings

PROG = "fraudstream trainer"
log = logging.getLogger(__name__)
SESSION_TIMEOUT_MS = 10_000  # a restarted trainer takes over its partition within this

DESCRIPTION = """\
Consume `retrain` events (read_committed; offsets committed only after the work is
durable). For each event: read the transactions of the --train-window-days before the
event's window_end, and the labels known then, from the `transactions` and `labels`
topics by time range; train a challenger with the champion's recipe; compare both on the
latest matured holdout (label maturity as the monitor computes it); register the
challenger with its lineage; announce it on `models.updates`; promote it at once when it
beats the champion's PR AUC by --auto-promote-margin on enough matured frauds (a margin
of 1 never promotes). An event is trained once, whatever the restarts.
"""

EPILOG = """\
exit status: 0 stopped by SIGTERM/SIGINT; 1 fatal Kafka error or the registry cannot be
written (the event in hand is handled again after a restart); 2 bad settings, missing
topics or Kafka unreachable.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    cfg.add_flags(parser, TrainerServiceSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        settings = cfg.load(TrainerServiceSettings, args)
        configure_logging(settings.log_level)
        return serve(settings, StopFlag().install())

    return run_command(PROG, body)


def serve(settings: TrainerServiceSettings, stop: StopFlag) -> int:
    """Build the service from its settings and run it until ``stop``; the exit code."""
    from confluent_kafka import Consumer, KafkaException, Producer
    from prometheus_client import start_http_server

    from services.core.codec import Codec
    from services.kafka import consumer_config, producer_config
    from services.registry import Registry, RegistryError
    from services.trainer import lineage, promotion
    from services.trainer.job import JobConfig, RetrainJob
    from services.trainer.service import KafkaFatal, TrainerMetrics, TrainerService
    from services.trainer.sources import RangeReader

    registry = Registry(settings.registry)
    try:
        removed = registry.delete_unindexed(settings.name)
    except (OSError, RegistryError) as exc:
        raise ConfigError(f"cannot use the registry {settings.registry}: {exc}") from None
    check_topics(settings)
    codec = Codec.load()
    if removed:
        log.warning("removed version folders a crashed registration left behind: %s", ", ".join(removed))
    policy = promotion.PolicyConfig(
        margin=settings.auto_promote_margin, min_frauds=settings.min_holdout_frauds,
        holdout_days=settings.holdout_days, min_maturity=settings.holdout_min_maturity,
    )  # fmt: skip
    job_cfg = JobConfig(
        name=settings.name, transactions_topic=settings.topic(topics.TRANSACTIONS),
        labels_topic=settings.topic(topics.LABELS), train_window_days=settings.train_window_days,
        feature_warmup_days=settings.feature_warmup_days, policy=policy,
    )  # fmt: skip
    reader_conf = consumer_config(settings, f"{settings.group_id}.window", **{"enable.partition.eof": True})
    source = RangeReader(lambda: Consumer(reader_conf), codec, slack_ms=int(settings.seek_slack_s * 1000),
                         timeout_s=settings.kafka_timeout_s)  # fmt: skip
    updates_topic = settings.topic(topics.MODEL_UPDATES)
    try:
        producer = Producer(producer_config(settings))
        timing = {
            "max.poll.interval.ms": int(settings.max_job_s * 1000),
            "session.timeout.ms": SESSION_TIMEOUT_MS,
        }
        consumer = Consumer(consumer_config(settings, settings.group_id, read_committed=True, **timing))
    except KafkaException as exc:
        raise ConfigError(f"bad Kafka client settings: {exc.args[0] if exc.args else exc}") from None

    def announce(record: dict[str, Any]) -> None:
        lineage.publish_update(producer, updates_topic, codec, record, settings.kafka_timeout_s)

    job = RetrainJob(job_cfg, registry, source, announce, clock=lambda: datetime.now(UTC), stop=stop)
    metrics = TrainerMetrics()
    if settings.metrics_port > 0:
        start_http_server(settings.metrics_port, addr="0.0.0.0", registry=metrics.registry)
    service = TrainerService(consumer, job, codec, settings.topic(topics.RETRAIN), stop, metrics)
    log.info("training %s on retrain events from %s (group %s, registry %s)",
             settings.name, settings.topic(topics.RETRAIN), settings.group_id, settings.registry)  # fmt: skip
    try:
        service.run()
    except (KafkaFatal, RegistryError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0


def check_topics(settings: TrainerServiceSettings) -> None:
    """One line and exit 2 when Kafka is unreachable or a topic is missing."""
    from services.kafka import KafkaUnavailable, admin, describe_topics

    names = [
        settings.topic(t) for t in (topics.RETRAIN, topics.TRANSACTIONS, topics.LABELS, topics.MODEL_UPDATES)
    ]
    try:
        states = describe_topics(admin(settings), names, settings.kafka_timeout_s)
    except KafkaUnavailable as exc:
        raise ConfigError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    missing = [s.name for s in states if not s.exists]
    if missing:
        raise ConfigError(f"topic {missing[0]} does not exist; run `fraudstream topics create` "
                          f"with the same --topic-prefix ({settings.topic_prefix!r})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
