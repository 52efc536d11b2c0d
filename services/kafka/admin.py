"""Topic administration: create idempotently, wait for leaders, describe.

Every broker call takes a timeout; an unreachable cluster surfaces as
:class:`KafkaUnavailable` with a one-line message, never as a hang or a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic


class KafkaUnavailable(Exception):
    """The cluster did not answer in time. The message is one line."""


class TopicError(Exception):
    """The cluster refused a topic operation. The message is one line."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicState:
    name: str
    exists: bool
    partitions: int = 0  # 0 when it does not exist
    replication_factor: int = 0


def metadata(admin: AdminClient, timeout_s: float, topic: str | None = None) -> ClusterMetadata:
    try:
        return admin.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(f"no answer from Kafka within {timeout_s:g} s ({_why(exc)})") from None


def describe_topics(admin: AdminClient, names: Iterable[str], timeout_s: float) -> list[TopicState]:
    topics = metadata(admin, timeout_s).topics
    states = []
    for name in names:
        topic = topics.get(name)
        if topic is None or topic.error is not None:
            states.append(TopicState(name, exists=False))
            continue
        replicas = min((len(p.replicas) for p in topic.partitions.values()), default=0)
        states.append(TopicState(name, True, len(topic.partitions), replicas))
    return states


def ensure_topics(
    admin: AdminClient, specs: Iterable[TopicSpec], timeout_s: float
) -> tuple[list[str], list[str]]:
    """Create the topics that do not exist yet; returns ``(created, existing)`` names.

    Existing topics are left as they are (their partition count is not changed). A topic
    that another client creates at the same moment counts as existing.
    """
    specs = list(specs)
    present = {s.name for s in describe_topics(admin, (s.name for s in specs), timeout_s) if s.exists}
    missing = [s for s in specs if s.name not in present]
    created: list[str] = []
    existing = [s.name for s in specs if s.name in present]
    if missing:
        new = [NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config)) for s in missing]
        futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
        for spec in missing:
            try:
                futures[spec.name].result(timeout=timeout_s + 5)
                created.append(spec.name)
            except TimeoutError:
                raise KafkaUnavailable(f"creating {spec.name} took over {timeout_s:g} s") from None
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise TopicError(f"cannot create {spec.name}: {_why(exc)}") from None
                existing.append(spec.name)
    wait_for_topics(admin, [s.name for s in specs], timeout_s=timeout_s)
    return created, existing


def wait_for_topics(
    admin: AdminClient, topics: Iterable[str], *, timeout_s: float = 30.0, interval_s: float = 0.1
) -> None:
    """Return once every topic exists and each partition has a leader.

    Raises :class:`KafkaUnavailable` when that does not happen within ``timeout_s``.
    """
    names = list(topics)
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            md = admin.list_topics(timeout=max(left, 0.5))
            pending = [n for n in names if not _is_ready(md, n)]
        except KafkaException as exc:
            pending, why = names, _why(exc)
        else:
            why = "no leader yet"
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise KafkaUnavailable(
                f"topics not ready within {timeout_s:g} s: {', '.join(pending[:5])} ({why})"
            )
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))


def cluster_id(admin: AdminClient, timeout_s: float) -> str:
    """The cluster id the brokers report (empty string never: raises instead)."""
    try:
        description = admin.describe_cluster(request_timeout=timeout_s).result(timeout_s + 5)
    except (KafkaException, TimeoutError) as exc:
        raise KafkaUnavailable(f"no answer from Kafka within {timeout_s:g} s ({_why(exc)})") from None
    if not description.cluster_id:
        raise KafkaUnavailable("the cluster reported no cluster id")
    return str(description.cluster_id)


def _is_ready(md: ClusterMetadata, name: str) -> bool:
    topic = md.topics.get(name)
    if topic is None or topic.error is not None or not topic.partitions:
        return False
    return all(p.leader >= 0 for p in topic.partitions.values())


def _why(exc: Exception) -> str:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return f"{err.name()}: {err.str()}"
    return " ".join(str(exc).split())
