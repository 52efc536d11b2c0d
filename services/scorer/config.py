"""The loop's view of the scorer settings: topic names with their prefix, batch and
validation bounds, poison limits."""

from __future__ import annotations

from dataclasses import dataclass

from services.core import topics
from services.scorer.batch import Limits
from services.settings import ScorerSettings


@dataclass(frozen=True)
class LoopConfig:
    transactions: str
    scores: str
    dead_letters: str
    batch_max_records: int
    batch_max_s: float
    limits: Limits
    poison_max_share: float
    poison_max_consecutive: int

    @classmethod
    def from_settings(cls, s: ScorerSettings) -> LoopConfig:
        return cls(
            transactions=s.topic(topics.TRANSACTIONS),
            scores=s.topic(topics.SCORES),
            dead_letters=s.topic(topics.TRANSACTIONS_DLQ),
            batch_max_records=s.batch_max_records,
            batch_max_s=s.batch_max_ms / 1000.0,
            limits=Limits(
                max_amount=s.max_amount,
                max_future_skew_ms=int(s.max_future_skew_s * 1000),
                max_event_age_ms=int(s.max_event_age_days * 86_400_000),
            ),
            poison_max_share=s.poison_max_share,
            poison_max_consecutive=s.poison_max_consecutive,
        )
