"""Structural types for the parts of confluent-kafka clients our loops use, so they can be
driven by small fakes in unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Producer(Protocol):
    """The part of ``confluent_kafka.Producer`` that publishing loops use."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        *,
        on_delivery: Callable[[Any, Any], None] | None = ...,
    ) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...
