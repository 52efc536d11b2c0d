"""Transactions survive a real Kafka broker byte-exactly, keyed and ordered by card."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from services import settings
from services.core.codec import Codec
from services.kafka import cluster_id, consumer_config, producer_config
from services.settings import TopicsSettings
from tests.unit.core.codec_samples import sample_record

COUNT = 600
CARDS = 40
CODEC = Codec.load()


def seeded_transactions() -> list[dict[str, Any]]:
    rng = random.Random(20260101)
    version = CODEC.current("Transaction")
    txns = []
    for i in range(COUNT):
        txn = sample_record(version, rng)
        txn["txn_id"] = f"t-{i:06d}"
        txn["card_id"] = f"card-{rng.randrange(CARDS):03d}"
        txns.append(txn)
    return txns


def produce_all(producer: Producer, topic: str, txns: list[dict[str, Any]]) -> list[KafkaError]:
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for txn in txns:
        value = CODEC.encode("Transaction", txn)
        while True:
            try:
                producer.produce(topic, value, txn["card_id"].encode(), on_delivery=delivered)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still undelivered after 30 s"
    return errors


def consume(consumer: Consumer, topic: str, count: int, timeout_s: float) -> list[Message]:
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < count and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=500, timeout=0.5):
            assert msg.error() is None, msg.error()
            messages.append(msg)
    return messages


def test_cluster_is_real(kafka_admin: AdminClient, kafka_bootstrap: str) -> None:
    metadata = kafka_admin.list_topics(timeout=10)
    described = kafka_admin.describe_cluster(request_timeout=10).result(15)
    assert described.cluster_id and described.cluster_id == metadata.cluster_id
    assert cluster_id(kafka_admin, 10) == metadata.cluster_id
    assert metadata.brokers and len(described.nodes) == len(metadata.brokers)


def test_transactions_round_trip_through_kafka(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    make_topic: Callable[..., str],
    unique: Callable[[str], str],
) -> None:
    cfg = settings.load(TopicsSettings, {"kafka_bootstrap": kafka_bootstrap}, environ={})
    topic = make_topic(partitions=4)
    txns = seeded_transactions()

    assert produce_all(Producer(producer_config(cfg)), topic, txns) == []
    consumer = Consumer(consumer_config(cfg, unique("roundtrip")))
    try:
        messages = consume(consumer, topic, COUNT, timeout_s=60)
    finally:
        consumer.close()

    assert len(messages) == COUNT
    decoded = [CODEC.decode("Transaction", m.value()) for m in messages]
    assert sorted(decoded, key=lambda t: t["txn_id"]) == txns
    assert all(m.key() == t["card_id"].encode() for m, t in zip(messages, decoded, strict=True))

    # Keyed by card: one partition per card, and each card's transactions in order.
    partitions: dict[str, set[int]] = defaultdict(set)
    order: dict[str, list[str]] = defaultdict(list)
    for msg, txn in zip(messages, decoded, strict=True):
        partition = msg.partition()
        assert partition is not None
        partitions[txn["card_id"]].add(partition)
        order[txn["card_id"]].append(txn["txn_id"])
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1  # keys did spread
    for card, txn_ids in order.items():
        assert txn_ids == [t["txn_id"] for t in txns if t["card_id"] == card]
