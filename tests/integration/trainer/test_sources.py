"""Reading a time range from Kafka: the seek by record timestamp, the event-time filter,
read_committed, undecodable records, and the end of the range."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from services.core.codec import Codec
from services.trainer.sources import RangeReader, SourceError

CODEC = Codec.load()
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
DAY = 86_400_000
START, END = T0 + 10 * DAY, T0 + 20 * DAY


def txn(txn_id: str, event_time: int) -> dict[str, Any]:
    return {
        "txn_id": txn_id, "card_id": f"c-{txn_id}", "merchant_id": "m-1", "mcc": 5411, "amount": 12.5,
        "currency": "EUR", "country": "DE", "channel": "POS", "device_id": None, "event_time": event_time,
    }  # fmt: skip


def reader(bootstrap: str, slack_ms: int = 3_600_000) -> RangeReader:
    conf = {"bootstrap.servers": bootstrap, "group.id": "range-reader", "enable.auto.commit": False,
            "isolation.level": "read_committed", "enable.partition.eof": True}  # fmt: skip
    return RangeReader(lambda: Consumer(conf), CODEC, slack_ms=slack_ms, timeout_s=15, idle_timeout_s=30)


def in_range(record: dict[str, Any]) -> bool:
    return bool(START <= record["event_time"] < END)


def test_a_range_is_read_by_time_and_filtered_by_event_time(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=2)
    now = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    # Per partition, in record-timestamp order: (partition, txn_id, event time, record timestamp)
    plan: list[tuple[int, str, int, int]] = []
    for p in (0, 1):
        plan += [(p, f"old{p}-{i}", T0 + i * 1000, T0 + i * 1000) for i in range(5)]  # before the seek
        plan += [(p, f"in{p}-{i}", START + i * DAY, START + i * DAY) for i in range(9)]  # the range
        plan += [(p, f"late{p}", END + DAY, END + DAY)]  # after the range, before the end offset
        plan += [(p, f"replayed{p}", START - 5 * DAY, now)]  # history republished now: read, not kept
    for p, txn_id, event_time, ts in plan:
        value = CODEC.encode("Transaction", txn(txn_id, event_time))
        producer.produce(topic, value, txn_id.encode(), partition=p, timestamp=ts)
    producer.produce(topic, b"\xc3\x01garbage", b"x", partition=0, timestamp=START + DAY)
    assert producer.flush(30) == 0
    aborted = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"abort-{topic}"})
    aborted.init_transactions(30)
    aborted.begin_transaction()
    aborted.produce(topic, CODEC.encode("Transaction", txn("aborted", START + DAY)), b"a", partition=1)
    aborted.flush(30)
    aborted.abort_transaction(30)

    records, stats = reader(kafka_bootstrap).read(topic, "Transaction", START, in_range)

    assert sorted(r["txn_id"] for r in records) == sorted(f"in{p}-{i}" for p in (0, 1) for i in range(9))
    assert stats.partitions[0][0] == stats.partitions[1][0] == 5  # the old records were skipped by the seek
    assert (stats.records, stats.kept, stats.undecodable, stats.rejected) == (2 * 11 + 1, 18, 1, 4)
    assert stats.to_dict()["offsets"]["0"] == [5, 17]


def test_nothing_in_range_and_missing_topics(kafka_bootstrap: str, make_topic: Callable[..., str]) -> None:
    topic = make_topic(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, CODEC.encode("Transaction", txn("old", T0)), b"k", timestamp=T0)
    assert producer.flush(30) == 0
    records, stats = reader(kafka_bootstrap).read(topic, "Transaction", START, in_range)
    assert records == [] and stats.records == 0 and stats.partitions == {}  # every record is older
    with pytest.raises(SourceError, match="does not exist"):
        reader(kafka_bootstrap).read(topic + "-missing", "Transaction", START, in_range)
