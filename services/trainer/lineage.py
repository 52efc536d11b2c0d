"""Where a model came from, and the model-update events that announce alias changes.

Lineage lives in the manifest (``manifest["lineage"]``), written once by
:meth:`Registry.register`. For a challenger the trainer service trained it holds the
retrain event's id; :func:`find_by_retrain_event` is the idempotency check: an event
whose id is already in some version's lineage has been trained and is not trained again.

Model-update events (``schemas/model_update.avsc``, topic ``models.updates``, keyed by
model name) are published at least once after the registry changed. Their ``event_id``
is derived from what happened, so a copy re-published after a crash carries the same
id and consumers dedupe on it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from services.kafka.protocols import Producer
from services.registry import ModelVersion, Registry, RegistryError

if TYPE_CHECKING:
    from services.core.codec import Codec
    from services.settings import KafkaSettings

log = logging.getLogger(__name__)

Action = Literal["PROMOTED", "ROLLED_BACK", "CHALLENGER_SET"]
RETRAIN_EVENT_ID = "retrain_event_id"
PUBLISH_TIMEOUT_S = 30.0


class PublishError(Exception):
    """A model-update event was not acknowledged by Kafka. One-line message."""


# --------------------------------------------------------------------------- lineage


def find_by_retrain_event(registry: Registry, name: str, event_id: str) -> ModelVersion | None:
    """The registered version trained for retrain event ``event_id``, if there is one."""
    try:
        versions = registry.versions(name)
    except RegistryError:
        return None  # no model of that name yet
    for mv in versions:
        try:
            lineage = mv.manifest().get("lineage") or {}
        except (OSError, ValueError):
            continue  # an unreadable manifest is the loader's business, not a match
        if isinstance(lineage, Mapping) and lineage.get(RETRAIN_EVENT_ID) == event_id:
            return mv
    return None


def event_summary(event: Mapping[str, Any]) -> dict[str, Any]:
    """The retrain event's fields worth keeping in a manifest (PSI maps are left out)."""
    keys = ("reason", "model_name", "model_version", "window_start", "window_end", "emitted_at",
            "drifted_features", "recall", "recall_baseline", "maturity")  # fmt: skip
    return {k: event.get(k) for k in keys}


# --------------------------------------------------------------------------- model updates


def update_id(*parts: str) -> str:
    """A stable event id: sha256 of the parts that identify the change."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def promotion_action(version: str, previous: str | None) -> Action:
    """Promoting a version older than the champion it replaces is a rollback."""
    if previous is not None and previous.isdigit() and version.isdigit() and int(version) < int(previous):
        return "ROLLED_BACK"
    return "PROMOTED"


def model_update(
    *,
    event_id: str,
    mv: ModelVersion,
    sha256: str,
    action: Action,
    at: datetime,
    previous_version: str | None = None,
    reason: str = "",
    retrain_event_id: str | None = None,
) -> dict[str, Any]:
    """A ``ModelUpdate`` record (the dict the codec encodes)."""
    if at.tzinfo is None:
        raise ValueError("model update time must be timezone-aware")
    return {
        "event_id": event_id,
        "model_name": mv.name,
        "version": mv.version,
        "previous_version": previous_version,
        "sha256": sha256,
        "action": action,
        "at": int(at.astimezone(UTC).timestamp() * 1000),
        "reason": " ".join(reason.split())[:500],
        "retrain_event_id": retrain_event_id,
    }


def publish_update(
    producer: Producer,
    topic: str,
    codec: Codec,
    record: Mapping[str, Any],
    timeout_s: float = PUBLISH_TIMEOUT_S,
) -> None:
    """Produce one model-update event and wait for the broker's ack (a rare, important
    record: flushed at once). Raises :class:`PublishError`."""
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    value = codec.encode("ModelUpdate", record)
    try:
        producer.produce(topic, value=value, key=str(record["model_name"]).encode(), on_delivery=delivered)
    except BufferError as exc:  # cannot happen with an empty queue; kept one line anyway
        raise PublishError(f"cannot queue the model update for {topic}: {exc}") from None
    left = producer.flush(timeout_s)
    if left or failures:
        why = failures[0] if failures else f"not acknowledged within {timeout_s:g} s"
        raise PublishError(
            f"model update {record['action']} {record['model_name']}@{record['version']} "
            f"not delivered to {topic}: {why}"
        )
    log.info(
        "announced %s %s@%s on %s (event %s…)",
        record["action"],
        record["model_name"],
        record["version"],
        topic,
        str(record["event_id"])[:12],
    )


def announce_manual_promotion(
    kafka: KafkaSettings,
    mv: ModelVersion,
    previous: str | None,
    *,
    reason: str = "",
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """``fraudstream models promote --publish``: announce that ``mv`` is now champion."""
    from confluent_kafka import KafkaException
    from confluent_kafka import Producer as KafkaProducer

    from services.core import topics
    from services.core.codec import Codec
    from services.kafka import producer_config

    at = clock()
    action = promotion_action(mv.version, previous)
    sha = str(mv.manifest().get("model_sha256", ""))
    record = model_update(
        event_id=update_id("cli", mv.name, mv.version, action, str(previous), at.isoformat()),
        mv=mv, sha256=sha, action=action, at=at, previous_version=previous,
        reason=reason or "promoted by hand (fraudstream models promote)",
    )  # fmt: skip
    try:
        producer = KafkaProducer(producer_config(kafka))
    except KafkaException as exc:
        raise PublishError(f"bad Kafka producer settings: {exc.args[0] if exc.args else exc}") from None
    publish_update(producer, kafka.topic(topics.MODEL_UPDATES), Codec.load(), record, kafka.kafka_timeout_s)
    return record
