"""librdkafka configuration for our producers, consumers and admin clients.

Each function starts from ``settings.kafka_client_config()`` (bootstrap servers, TLS,
SASL), adds the defaults this project relies on, then applies ``overrides`` verbatim:
keys are librdkafka property names (``**{"linger.ms": 20}``) or confluent-kafka's Python
callbacks (``error_cb=...``, ``logger=...``).
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka.admin import AdminClient

from services.settings import KafkaSettings

# librdkafka's own log lines go through this logger instead of straight to stderr.
LIBRDKAFKA_LOGGER = "services.kafka.librdkafka"

PRODUCER_DEFAULTS: dict[str, Any] = {
    # Exactly-once per partition on retries; no reordering; every in-sync replica acks.
    "enable.idempotence": True,
    "acks": "all",
    # Small batches fill in a few ms at our rates; lz4 is cheap on 2 cores.
    "linger.ms": 5,
    "compression.type": "lz4",
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    # We commit offsets ourselves, after the side effects of a message are done.
    "enable.auto.commit": False,
    # A new consumer group starts from the oldest message: nothing is skipped.
    "auto.offset.reset": "earliest",
    # Rebalances move only the partitions that must move; scoring goes on meanwhile.
    "partition.assignment.strategy": "cooperative-sticky",
}


def _base(settings: KafkaSettings) -> dict[str, Any]:
    conf: dict[str, Any] = dict(settings.kafka_client_config())
    conf["logger"] = logging.getLogger(LIBRDKAFKA_LOGGER)
    return conf


def producer_config(
    settings: KafkaSettings, *, transactional_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """Idempotent producer (``acks=all``); transactional when ``transactional_id`` is set."""
    conf = _base(settings) | PRODUCER_DEFAULTS
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
    return conf | overrides


def consumer_config(
    settings: KafkaSettings, group_id: str, *, read_committed: bool = True, **overrides: Any
) -> dict[str, Any]:
    """Manual-commit consumer in ``group_id``; sees only committed transactional writes
    unless ``read_committed`` is False."""
    conf = _base(settings) | CONSUMER_DEFAULTS
    conf["group.id"] = group_id
    conf["isolation.level"] = "read_committed" if read_committed else "read_uncommitted"
    return conf | overrides


def admin_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    return _base(settings) | overrides


def admin(settings: KafkaSettings, **overrides: Any) -> AdminClient:
    """An AdminClient on the configured cluster."""
    return AdminClient(admin_config(settings, **overrides))
