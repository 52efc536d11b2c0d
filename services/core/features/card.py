"""Per-card state: the card's recent events and what it has seen, as an immutable value.

Serialized as compact JSON (``to_bytes``/``from_bytes``). Python's ``json`` writes floats
with ``repr``, the shortest text that parses back to the same double, so a state survives
Redis bit for bit; that is what lets the offline and online paths agree exactly. The blob
starts with a tag of the feature set fingerprint: state written for another feature set
(other names, parameters or logic version) is refused, never silently reused.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from services.core.features.schema import FEATURE_SET_FINGERPRINT

STATE_TAG = FEATURE_SET_FINGERPRINT[:16]


class StateFormatError(ValueError):
    """Stored state is corrupt or was written for another feature set."""


class CardState(NamedTuple):
    """What the features of a card's next transaction depend on.

    ``times``/``amounts``/``merchants``/``countries`` are parallel, sorted by event time
    (ties in processing order), and hold only events newer than ``last_time - 7 d``,
    at most ``CARD_WINDOW_CAP``. ``n``/``mean``/``m2`` are Welford's running statistics
    of every amount in processing order. The seen-sets keep the most recently used
    entries last.
    """

    times: tuple[int, ...]
    amounts: tuple[float, ...]
    merchants: tuple[str, ...]
    countries: tuple[str, ...]
    last_time: int  # newest event time seen (ms)
    first_time: int  # oldest event time seen (ms)
    n: int
    mean: float
    m2: float
    seen_merchants: tuple[str, ...]
    seen_countries: tuple[str, ...]
    seen_devices: tuple[str, ...]

    def to_bytes(self) -> bytes:
        return json.dumps([STATE_TAG, *self], separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> CardState:
        try:
            raw = json.loads(blob)
        except ValueError as exc:
            raise StateFormatError(f"card state is not JSON: {exc}") from None
        if not isinstance(raw, list) or len(raw) != len(cls._fields) + 1:
            raise StateFormatError("card state has the wrong shape")
        if raw[0] != STATE_TAG:
            raise StateFormatError(
                f"card state belongs to feature set {raw[0]!r}, this code is {STATE_TAG!r}: "
                "use a fresh namespace for a new feature set"
            )
        (
            _,
            times,
            amounts,
            merchants,
            countries,
            last_time,
            first_time,
            n,
            mean,
            m2,
            seen_m,
            seen_c,
            seen_d,
        ) = raw
        return cls(
            tuple(times),
            tuple(map(float, amounts)),
            tuple(merchants),
            tuple(countries),
            int(last_time),
            int(first_time),
            int(n),
            float(mean),
            float(m2),
            tuple(seen_m),
            tuple(seen_c),
            tuple(seen_d),
        )
