"""Session fixtures for the whole suite.

Integration tests talk to a real Kafka and a real Redis. If ``FRAUDSTREAM_KAFKA_BOOTSTRAP``
and ``FRAUDSTREAM_REDIS_URL`` are set (``scripts/test.sh`` sets them), those are used;
otherwise the first test that needs them starts the local stack once for the session
(same code as ``fraudstream stack up``, in a temp folder on free ports), exports the two
variables for the rest of the session, and stops and wipes it at the end.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

# Makes `tests.helpers` importable in every pytest import mode (as pythonpath = ["."]).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import wait_until  # noqa: E402

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
KAFKA_ENV = "FRAUDSTREAM_KAFKA_BOOTSTRAP"
REDIS_ENV = "FRAUDSTREAM_REDIS_URL"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def _servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(kafka bootstrap, redis url): from the environment, or a stack started here."""
    kafka, redis_url = os.environ.get(KAFKA_ENV), os.environ.get(REDIS_ENV)
    if kafka and redis_url:
        yield kafka, redis_url
        return
    from services import settings
    from services.settings import StackSettings
    from services.stack import Stack

    cfg = settings.load(
        StackSettings,
        {"stack_dir": tmp_path_factory.mktemp("stack"), "kafka_port": 0, "redis_port": 0},
    )
    stack = Stack(cfg)
    info = stack.up()
    patch = pytest.MonkeyPatch()
    try:
        # Commands that tests run via main() read the same variables as under test.sh.
        patch.setenv(KAFKA_ENV, kafka or info.kafka_bootstrap)
        patch.setenv(REDIS_ENV, redis_url or info.redis_url)
        yield os.environ[KAFKA_ENV], os.environ[REDIS_ENV]
    finally:
        patch.undo()
        stack.down(wipe=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(_servers: tuple[str, str]) -> str:
    return _servers[0]


@pytest.fixture(scope="session")
def redis_url(_servers: tuple[str, str]) -> str:
    return _servers[1]


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


# --------------------------------------------------------------------------- per test


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("orders")`` -> ``"orders-1f3a9c0b2d4e"``: names no other test uses."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def make_topic(kafka_admin: AdminClient, unique: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """``make_topic(partitions=3, config=None)`` -> a new uuid-named topic whose partitions
    all have leaders; deleted at teardown. The replication factor is the cluster default
    (1 on one broker, 3 on ``--brokers 3``)."""
    created: list[str] = []

    def make(
        partitions: int = 3,
        config: dict[str, str] | None = None,
        *,
        prefix: str = "test",
        replication_factor: int = -1,
    ) -> str:
        name = unique(prefix)
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=dict(config or {}),
        )
        kafka_admin.create_topics([topic], operation_timeout=30)[name].result(timeout=60)
        created.append(name)
        wait_until(
            lambda: _has_leaders(kafka_admin, name, partitions),
            timeout=30,
            message=f"every partition of {name} has a leader",
        )
        return name

    yield make
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            try:
                future.result(timeout=60)
            except KafkaException:
                pass  # the test deleted it already


def _has_leaders(admin: AdminClient, name: str, partitions: int) -> bool:
    try:
        topic = admin.list_topics(name, timeout=5).topics.get(name)
    except KafkaException:
        return False
    if topic is None or topic.error is not None or len(topic.partitions) != partitions:
        return False
    return all(p.leader >= 0 for p in topic.partitions.values())


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_namespace(redis_url: str, unique: Callable[[str], str]) -> Iterator[str]:
    """A fresh key namespace (matches the ``redis_namespace`` setting's pattern); every
    key that starts with it is deleted at teardown."""
    namespace = unique("test")
    yield namespace
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()
