"""Kafka topic names and dead-letter header names: the project's naming contract.

Names follow Kafka conventions: lowercase, words separated by dots. Every service
prefixes topic names with ``settings.topic(name)`` (the ``--topic-prefix`` setting), so
a backtest or a test run never touches production topics.
"""

from __future__ import annotations

from typing import Final

TRANSACTIONS: Final = "transactions"  # Transaction, keyed by card_id
SCORES: Final = "scores"  # Score, keyed by card_id
LABELS: Final = "labels"  # Label, keyed by card_id
RETRAIN: Final = "retrain"  # RetrainEvent, keyed by model_name
MODEL_UPDATES: Final = "models.updates"  # champion/challenger changes, keyed by model name
TRANSACTIONS_DLQ: Final = "transactions.dlq"  # transactions the scorer could not score
MONITOR_DLQ: Final = "monitor.dlq"  # scores and labels the monitor could not use

# Topics that carry the transaction volume; they get the larger partition count.
HIGH_VOLUME_TOPICS: Final = (TRANSACTIONS, SCORES)
DEAD_LETTER_TOPICS: Final = (TRANSACTIONS_DLQ, MONITOR_DLQ)
ALL_TOPICS: Final = (
    TRANSACTIONS,
    SCORES,
    LABELS,
    RETRAIN,
    MODEL_UPDATES,
    TRANSACTIONS_DLQ,
    MONITOR_DLQ,
)

# Headers on every dead-letter record. The record keeps the original key and value
# bytes untouched; these say where it came from and why it failed. Values are UTF-8.
DLQ_ORIGINAL_TOPIC: Final = "dlq.original.topic"
DLQ_ORIGINAL_PARTITION: Final = "dlq.original.partition"  # decimal string
DLQ_ORIGINAL_OFFSET: Final = "dlq.original.offset"  # decimal string
DLQ_ERROR_CLASS: Final = "dlq.error.class"  # e.g. "DecodeError", "ValidationError"
DLQ_ERROR_REASON: Final = "dlq.error.reason"  # the error's reason slug, e.g. "truncated"
DLQ_ERROR_DETAIL: Final = "dlq.error.detail"  # one line, never a card id
DLQ_SERVICE: Final = "dlq.service"  # the service that gave up, e.g. "scorer"
DLQ_FAILED_AT: Final = "dlq.failed.at"  # epoch milliseconds UTC, decimal string

DLQ_HEADERS: Final = (
    DLQ_ORIGINAL_TOPIC,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ERROR_CLASS,
    DLQ_ERROR_REASON,
    DLQ_ERROR_DETAIL,
    DLQ_SERVICE,
    DLQ_FAILED_AT,
)


def dead_letter_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    error_class: str,
    reason: str,
    detail: str,
    service: str,
    failed_at_ms: int,
) -> list[tuple[str, bytes]]:
    """The dead-letter headers in the ``[(name, value)]`` form Kafka clients take.

    ``detail`` is squeezed onto one line and cut at 500 characters.
    """
    one_line = " ".join(detail.split())[:500]
    return [
        (DLQ_ORIGINAL_TOPIC, _utf8(topic)),
        (DLQ_ORIGINAL_PARTITION, _utf8(str(partition))),
        (DLQ_ORIGINAL_OFFSET, _utf8(str(offset))),
        (DLQ_ERROR_CLASS, _utf8(error_class)),
        (DLQ_ERROR_REASON, _utf8(reason)),
        (DLQ_ERROR_DETAIL, _utf8(one_line)),
        (DLQ_SERVICE, _utf8(service)),
        (DLQ_FAILED_AT, _utf8(str(failed_at_ms))),
    ]


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", errors="replace")
