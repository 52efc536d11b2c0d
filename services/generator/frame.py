"""Columnar transactions while generating: one numpy array per attribute.

Everything a transaction needs beyond these columns (MCC, country, currency, channel)
follows from its merchant, which keeps channel, MCC and currency consistent by
construction. Amounts stay in EUR until the writer converts them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

# index 0 is "legit"; the rest are fraud pattern names (truth.avro's `pattern`)
PATTERN_NAMES: tuple[str, ...] = (
    "",
    "card_testing",
    "ato",
    "compromised_merchant",
    "opportunistic",
    "low_and_slow",
)
NO_DEVICE = -1
NO_EPISODE = -1


def pattern_code(name: str) -> int:
    return PATTERN_NAMES.index(name)


@dataclass
class Txns:
    card: np.ndarray  # int32 card index
    merchant: np.ndarray  # int32 merchant index
    time_ms: np.ndarray  # int64 epoch ms UTC
    amount_eur: np.ndarray  # float64
    device: np.ndarray  # int32 device index, NO_DEVICE when not e-commerce
    pattern: np.ndarray  # int8 index into PATTERN_NAMES, 0 = legit
    episode: np.ndarray  # int32 fraud episode (one victim, one attack), NO_EPISODE = legit

    def __len__(self) -> int:
        return int(self.card.shape[0])

    @classmethod
    def build(
        cls,
        card: np.ndarray,
        merchant: np.ndarray,
        time_ms: np.ndarray,
        amount_eur: np.ndarray,
        device: np.ndarray,
        pattern: int | np.ndarray = 0,
        episode: np.ndarray | None = None,
    ) -> Txns:
        n = card.shape[0]
        return cls(
            card=np.asarray(card, dtype=np.int32),
            merchant=np.asarray(merchant, dtype=np.int32),
            time_ms=np.asarray(time_ms, dtype=np.int64),
            amount_eur=np.asarray(amount_eur, dtype=np.float64),
            device=np.asarray(device, dtype=np.int32),
            pattern=np.broadcast_to(np.asarray(pattern, dtype=np.int8), (n,)).copy(),
            episode=(
                np.full(n, NO_EPISODE, dtype=np.int32)
                if episode is None
                else np.asarray(episode, dtype=np.int32)
            ),
        )

    @classmethod
    def empty(cls) -> Txns:
        z = np.zeros(0)
        return cls.build(z, z, z, z, z)

    def take(self, index: np.ndarray) -> Txns:
        return Txns(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Txns]) -> Txns:
        return Txns(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Txns)})

    @property
    def is_fraud(self) -> np.ndarray:
        return np.asarray(self.pattern != 0)
