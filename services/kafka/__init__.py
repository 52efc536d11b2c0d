"""Thin confluent-kafka adapters: client configuration, topic administration, the
``fraudstream topics`` command. No domain logic lives here (that is ``services.core``)."""

from services.kafka.admin import (
    KafkaUnavailable,
    TopicError,
    TopicSpec,
    TopicState,
    cluster_id,
    describe_topics,
    ensure_topics,
    wait_for_topics,
)
from services.kafka.config import admin, admin_config, consumer_config, producer_config

__all__ = [
    "KafkaUnavailable",
    "TopicError",
    "TopicSpec",
    "TopicState",
    "admin",
    "admin_config",
    "cluster_id",
    "consumer_config",
    "describe_topics",
    "ensure_topics",
    "producer_config",
    "wait_for_topics",
]
