"""Dead letters: the headers of a dead-letter record, and the poison-flood detector.

A record that cannot be decoded or fails validation is copied, key and value bytes
intact, to the dead-letter topic with headers that say where it came from and why.
Header values are UTF-8 text. The detail never carries a raw id: the codec's and the
validator's details name fields, not values, and :func:`mask_detail` also hides any id
of the record and anything that looks like a card number, in case one slipped through.

Everything here is pure; the scorer produces the record in its Kafka transaction.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.core import topics

SERVICE = "scorer"
MAX_DETAIL_CHARS = 300
MASK = "***"
# 12-19 digits, optionally split by spaces or dashes: the shape of a PAN.
_PAN_LIKE = re.compile(r"(?:\d[ -]?){11,18}\d")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")

Header = tuple[str, bytes | None]


@dataclass(frozen=True)
class Failure:
    """Why one record was dead-lettered: the error class, a reason slug, a masked detail."""

    error_class: str
    reason: str
    detail: str


def mask_detail(detail: str, secrets: Iterable[str] = ()) -> str:
    """``detail`` with ids of the record and PAN-like digit runs replaced, one line, bounded."""
    text = detail
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _PAN_LIKE.sub(MASK, text)
    text = _UNPRINTABLE.sub("?", text)
    if len(text) > MAX_DETAIL_CHARS:
        text = text[: MAX_DETAIL_CHARS - 1] + "…"
    return text


def dead_letter_headers(
    failure: Failure,
    *,
    topic: str,
    partition: int,
    offset: int,
    failed_at_ms: int,
    original_headers: Sequence[Header] | None = None,
    service: str = SERVICE,
) -> list[Header]:
    """The record's own headers (kept for tracing; old ``dlq.*`` ones dropped), then ours."""
    ours = topics.dead_letter_headers(
        topic=topic,
        partition=partition,
        offset=offset,
        error_class=failure.error_class,
        reason=failure.reason,
        detail=failure.detail,
        service=service,
        failed_at_ms=failed_at_ms,
    )
    kept = [(k, v) for k, v in (original_headers or ()) if not k.startswith("dlq.")]
    return [*kept, *ours]


# --------------------------------------------------------------------------- poison flood


@dataclass(frozen=True)
class Flood:
    """Why the scorer must stop: too many bad records, too close together."""

    message: str


def flood_message(flood: Flood, last: Failure | None) -> str:
    """The one line the scorer stops with."""
    tail = f"; last bad record: {last.error_class} {last.reason}" if last else ""
    return (
        f"poison flood on the transactions topic: {flood.message}{tail}; stopped without "
        f"committing the batch (nothing is lost); fix the producer, then restart"
    )


class PoisonDetector:
    """Share of bad records over the last ``window`` and the current bad streak.

    :meth:`check` looks at a batch without remembering it; :meth:`record` remembers a
    batch once it is committed. A batch that is retried is therefore never counted
    twice, and a flood batch (never committed) is never counted at all.
    """

    def __init__(
        self, *, max_share: float, max_consecutive: int, window: int = 1000, min_seen: int = 100
    ) -> None:
        self.max_share = max_share
        self.max_consecutive = max_consecutive
        self.window = window
        self.min_seen = min_seen
        self._recent: deque[bool] = deque(maxlen=window)
        self._bad_in_window = 0
        self._streak = 0

    @property
    def share(self) -> float:
        return self._bad_in_window / len(self._recent) if self._recent else 0.0

    def check(self, bad_flags: Sequence[bool]) -> Flood | None:
        """The first point in ``bad_flags`` (in offset order) at which a flood is declared."""
        recent = deque(self._recent, maxlen=self.window)
        bad, streak = self._bad_in_window, self._streak
        for flag in bad_flags:
            bad, streak = _push(recent, flag, bad, streak)
            if streak >= self.max_consecutive:
                return Flood(f"{streak} bad records in a row (limit {self.max_consecutive})")
            if len(recent) >= self.min_seen and bad > self.max_share * len(recent):
                return Flood(
                    f"{bad} of the last {len(recent)} records are bad "
                    f"(limit {self.max_share:.0%} once {self.min_seen} are seen)"
                )
        return None

    def record(self, bad_flags: Sequence[bool]) -> None:
        for flag in bad_flags:
            self._bad_in_window, self._streak = _push(self._recent, flag, self._bad_in_window, self._streak)


def _push(recent: deque[bool], flag: bool, bad: int, streak: int) -> tuple[int, int]:
    if recent.maxlen is not None and len(recent) == recent.maxlen and recent[0]:
        bad -= 1
    recent.append(flag)
    return bad + flag, (streak + 1 if flag else 0)
