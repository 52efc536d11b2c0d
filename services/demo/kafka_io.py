"""The demo's Kafka plumbing: its private topics, reading outputs back, and knowing when
a consumer group has handled everything."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from services.core import topics
from services.core.codec import Codec
from services.kafka import TopicSpec, admin, ensure_topics
from services.settings import KafkaSettings

log = logging.getLogger(__name__)

TIMEOUT_S = 15.0


def create_topics(cfg: KafkaSettings) -> list[str]:
    """Every project topic under ``cfg.topic_prefix``, one partition each: the services
    then see the stream in the order the replay wrote it, as the backtest does."""
    names = [cfg.topic(name) for name in topics.ALL_TOPICS]
    ensure_topics(admin(cfg), [TopicSpec(name, 1, 1) for name in names], TIMEOUT_S)
    return names


def delete_topics(cfg: KafkaSettings) -> None:
    """The run's topics and the monitor's changelogs (named after its app id, which
    starts with the prefix); best effort."""
    client = admin(cfg)
    try:
        names = sorted(
            t for t in client.list_topics(timeout=TIMEOUT_S).topics if t.startswith(cfg.topic_prefix)
        )
        if names:
            for future in client.delete_topics(names, operation_timeout=TIMEOUT_S).values():
                future.result(timeout=TIMEOUT_S + 5)
    except (KafkaException, TimeoutError) as exc:
        log.warning("could not delete the demo's topics: %s", exc)


def _consumer(cfg: KafkaSettings, group: str | None = None) -> Consumer:
    conf: dict[str, Any] = dict(cfg.kafka_client_config())
    conf.update({"group.id": group or f"demo-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                 "isolation.level": "read_committed", "auto.offset.reset": "earliest"})  # fmt: skip
    return Consumer(conf)


def read_all(cfg: KafkaSettings, topic: str, stop: Callable[[], bool] = lambda: False) -> list[Message]:
    """Every committed record of a one-partition topic, up to its end now."""
    consumer = _consumer(cfg)
    try:
        tp = TopicPartition(topic, 0)
        low, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
        consumer.assign([TopicPartition(topic, 0, low)])
        out: list[Message] = []
        idle_since = time.monotonic()
        # Transaction markers take offsets but are never delivered: stop at the high
        # watermark, or after a quiet second once past the last delivered record.
        while not stop():
            batch = [m for m in consumer.consume(5000, 0.5) if m.error() is None]
            out += batch
            if out and (out[-1].offset() or 0) >= high - 1:
                break
            if batch:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 1.0:
                break
        return out
    finally:
        consumer.close()


def decode(codec: Codec, name: str, messages: list[Message]) -> list[dict[str, Any]]:
    return [codec.decode(name, m.value()) for m in messages]
