"""Topic and dead-letter header names follow Kafka conventions and never collide."""

from __future__ import annotations

import re

from services.core import topics

NAME = re.compile(r"^[a-z][a-z0-9]*(\.[a-z][a-z0-9]*)*$")


def test_topic_names() -> None:
    assert topics.ALL_TOPICS == (
        "transactions", "scores", "labels", "retrain", "models.updates",
        "transactions.dlq", "monitor.dlq",
    )  # fmt: skip
    assert all(NAME.match(t) for t in topics.ALL_TOPICS)
    assert set(topics.HIGH_VOLUME_TOPICS) | set(topics.DEAD_LETTER_TOPICS) <= set(topics.ALL_TOPICS)
    assert all(t.endswith(".dlq") for t in topics.DEAD_LETTER_TOPICS)


def test_dead_letter_header_names() -> None:
    assert len(set(topics.DLQ_HEADERS)) == 8
    assert all(NAME.match(h) and h.startswith("dlq.") for h in topics.DLQ_HEADERS)


def test_dead_letter_headers_are_utf8_and_one_line() -> None:
    headers = topics.dead_letter_headers(
        topic="transactions", partition=3, offset=42, error_class="DecodeError",
        reason="truncated", detail="Transaction:\nbody ends early " + "x" * 600,
        service="scorer", failed_at_ms=1_767_225_600_000,
    )  # fmt: skip
    as_dict = dict(headers)
    assert [name for name, _ in headers] == list(topics.DLQ_HEADERS)
    assert as_dict["dlq.original.partition"] == b"3"
    assert as_dict["dlq.original.offset"] == b"42"
    assert as_dict["dlq.failed.at"] == b"1767225600000"
    assert as_dict["dlq.error.detail"].startswith(b"Transaction: body ends early x")
    assert len(as_dict["dlq.error.detail"]) == 500
