"""`fraudstream topics create` against a real broker: creates once, then is a no-op."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from services.core.topics import ALL_TOPICS, HIGH_VOLUME_TOPICS
from services.kafka import KafkaUnavailable, wait_for_topics
from services.kafka import topics as topics_cli


@pytest.fixture
def prefix(kafka_admin: AdminClient, unique: Callable[[str], str]) -> Iterator[str]:
    prefix = unique("topics") + "."
    yield prefix
    mine = [t for t in kafka_admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if mine:
        for future in kafka_admin.delete_topics(mine, operation_timeout=30).values():
            future.result(60)


def test_create_twice_then_list(
    kafka_bootstrap: str, kafka_admin: AdminClient, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--kafka-bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
        "--partitions", "4", "--aux-partitions", "2",
    ]  # fmt: skip
    assert topics_cli.main(["create", *args]) == 0
    first = capsys.readouterr().out
    assert first.count("created ") == len(ALL_TOPICS)
    assert first.strip().endswith(f"{len(ALL_TOPICS)} created, 0 already existed")

    found = kafka_admin.list_topics(timeout=10).topics
    for name in ALL_TOPICS:
        expected = 4 if name in HIGH_VOLUME_TOPICS else 2
        assert len(found[prefix + name].partitions) == expected, name

    assert topics_cli.main(["create", *args]) == 0
    second = capsys.readouterr().out
    assert "created " not in second
    assert second.strip().endswith(f"0 created, {len(ALL_TOPICS)} already existed")

    assert topics_cli.main(["list", *args]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == len(ALL_TOPICS) and all(line.startswith("exists ") for line in listed)


def test_topic_configs_are_applied(
    kafka_bootstrap: str, kafka_admin: AdminClient, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["create", "--kafka-bootstrap", kafka_bootstrap, "--topic-prefix", prefix]
    assert topics_cli.main(args) == 0
    capsys.readouterr()
    resources = [ConfigResource("topic", prefix + "transactions.dlq")]
    configs = next(iter(kafka_admin.describe_configs(resources).values())).result(30)
    assert configs["retention.ms"].value == str(topics_cli.DEAD_LETTER_RETENTION_MS)
    assert configs["min.insync.replicas"].value == "1"
    assert len(kafka_admin.list_topics(timeout=10).topics[prefix + "scores"].partitions) == 12


def test_wait_for_topics(
    kafka_admin: AdminClient, make_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    ready = make_topic(partitions=2)
    wait_for_topics(kafka_admin, [ready], timeout_s=10)
    with pytest.raises(KafkaUnavailable, match="topics not ready within 0.5 s"):
        wait_for_topics(kafka_admin, [ready, unique("never-created")], timeout_s=0.5)
