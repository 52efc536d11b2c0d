"""Per-merchant traffic as integer buckets, updated by commutative increments.

A merchant's state is four integer maps plus a watermark:

* ``hour_counts[h]`` / ``hour_new_cards[h]``: transactions, and transactions that were a
  card's first at this merchant, in epoch hour ``h`` (``event_time // 3_600_000``);
* ``day_counts[d]`` / ``day_cents[d]``: transactions and their amount in integer cents
  (``round(amount * 100)``) in epoch day ``d``;
* ``watermark``: the newest hour any transaction was applied for (None: no traffic yet).

Integers make every update an exact increment (``HINCRBY`` online, ``+=`` offline) that
gives the same result in any order and never suffers float formatting. A transaction's
features read the buckets *before* its own :class:`MerchantDelta` is applied: the hourly
windows ``[h - 23, h]`` and ``[h, h]`` and the daily window ``[d - 6, d]``, all cut at the
horizons below the watermark (``MERCHANT_HOURLY_KEEP_H``/``MERCHANT_DAILY_KEEP_D``).
Because the watermark only grows, a bucket below the horizon is never read again, so
trimming it (on every day the watermark enters, here and in the Redis script) changes
no feature.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import NamedTuple, Protocol

from services.core.features.card import STATE_TAG, StateFormatError
from services.core.features.schema import MERCHANT_DAILY_KEEP_D, MERCHANT_HOURLY_KEEP_H

_MAPS = ("hour_counts", "hour_new_cards", "day_counts", "day_cents")
_ZEROS = (0,) * 24  # map(d.get, keys, _ZEROS) is d.get(k, 0) at C speed for <= 24 keys
_HOURLY_SPAN = MERCHANT_HOURLY_KEEP_H - 1  # lowest readable hour: watermark - this
_DAILY_SPAN = MERCHANT_DAILY_KEEP_D - 1
# Slide the memo forward for gaps under this many hours: 2 bucket reads per hour of gap
# beat the 24 of a fresh read below 12.
_SLIDE_MAX_H = 12


class MerchantDelta(NamedTuple):
    """What one transaction adds to its merchant's buckets."""

    hour: int  # epoch hour of the transaction
    cents: int  # round(amount * 100)
    new_card: bool  # the card had not been seen at this merchant (per its seen-set)


class MerchantWindow(NamedTuple):
    """Merchant traffic before a transaction, in windows ending at its hour/day."""

    count_1h: int
    count_24h: int
    new_cards_24h: int
    count_7d: int
    cents_7d: int


_new_window = partial(tuple.__new__, MerchantWindow)  # skips NamedTuple.__new__: hot path
_EMPTY = MerchantWindow(0, 0, 0, 0, 0)


class MerchantView(Protocol):
    """Read-only bucket data that :func:`compute` needs."""

    def window(self, hour: int) -> MerchantWindow: ...


class MerchantState:
    """Mutable merchant buckets, owned by a driver (offline dict or online batch view).

    ``compute`` only reads it through :meth:`window`; drivers apply the delta it returns
    with :meth:`add` after the transaction's features are taken. Change the buckets only
    through :meth:`add`: it keeps the memo of the last window read up to date (a busy
    merchant's transactions mostly share an hour, so most reads are then O(1)).
    """

    __slots__ = (
        "watermark",
        "hour_counts",
        "hour_new_cards",
        "day_counts",
        "day_cents",
        "_memo_hour",
        "_memo",
        "_memo_lo_h",
        "_memo_lo_d",
        "_memo_day",
        "_tidy",
    )

    def __init__(
        self,
        watermark: int | None = None,
        hour_counts: Mapping[int, int] | None = None,
        hour_new_cards: Mapping[int, int] | None = None,
        day_counts: Mapping[int, int] | None = None,
        day_cents: Mapping[int, int] | None = None,
    ) -> None:
        self.watermark = watermark
        self.hour_counts: dict[int, int] = dict(hour_counts or {})
        self.hour_new_cards: dict[int, int] = dict(hour_new_cards or {})
        self.day_counts: dict[int, int] = dict(day_counts or {})
        self.day_cents: dict[int, int] = dict(day_cents or {})
        # The memo: window(_memo_hour), and the lowest hour and day it read.
        self._memo_hour: int | None = None
        self._memo: MerchantWindow = _EMPTY
        self._memo_lo_h = 0
        self._memo_lo_d = 0
        self._memo_day = 0  # _memo_hour // 24, the same int object while it is unchanged
        # True once seen that no bucket lies above the watermark (its hour or day; no
        # buckets at all while it is None). :meth:`add` keeps that true, so then every
        # bucket after a memo at or above the watermark is known empty without a read.
        self._tidy = False

    def __repr__(self) -> str:
        return (
            f"MerchantState(watermark={self.watermark}, hour_counts={self.hour_counts}, "
            f"hour_new_cards={self.hour_new_cards}, day_counts={self.day_counts}, "
            f"day_cents={self.day_cents})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MerchantState):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def as_dict(self) -> dict[str, object]:
        """Plain data without zero buckets (for tests, ops and equality)."""

        def nonzero(d: dict[int, int]) -> dict[int, int]:
            return {k: v for k, v in sorted(d.items()) if v}

        return {"watermark": self.watermark, **{name: nonzero(getattr(self, name)) for name in _MAPS}}

    def to_bytes(self) -> bytes:
        """Compact JSON (for snapshots of offline state; Redis keeps buckets as fields)."""
        data = self.as_dict()
        data["tag"] = STATE_TAG
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> MerchantState:
        try:
            raw = json.loads(blob)
            tag = raw.pop("tag")
            maps = [{int(k): int(v) for k, v in raw[name].items()} for name in _MAPS]
            watermark = None if raw["watermark"] is None else int(raw["watermark"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateFormatError(f"bad merchant state: {exc!r}") from None
        if tag != STATE_TAG:
            raise StateFormatError("merchant state belongs to another feature set")
        return cls(watermark, *maps)

    def window(self, hour: int) -> MerchantWindow:
        memo_hour = self._memo_hour
        if memo_hour is not None:
            if hour == memo_hour:
                return self._memo
            if hour > memo_hour:
                w = self.watermark
                if w is not None and memo_hour >= w and self._tidy:
                    return self._advance(hour, memo_hour)
                if hour < memo_hour + _SLIDE_MAX_H:
                    return self._slide(hour)
        if not self._tidy:
            self._tidy = self._check_tidy()
        lo_h, lo_d = self._lowest_read(hour)
        count_1h, count_24h, new_cards_24h = self._read_hours(lo_h, hour)
        count_7d, cents_7d = self._read_days(lo_d, hour // 24)
        return self._remember(hour, count_1h, count_24h, new_cards_24h, count_7d, cents_7d, lo_h, lo_d)

    def _advance(self, hour: int, memo_hour: int) -> MerchantWindow:
        """The window of ``hour``, after a memo at or above the watermark (the common
        case: the merchant's previous transaction, or a later read): every bucket after
        the memo's hour is empty (tidy), and the horizon is below both windows (it is
        under the watermark), so the windows only lose the buckets that left them."""
        _, count_24h, new_cards_24h, count_7d, cents_7d = self._memo
        lo_h = hour - 23  # memo_hour - 23 was the memo's lowest hour read
        if lo_h - memo_hour > 0:  # no overlap: every bucket in the windows is empty
            count_24h = new_cards_24h = 0
        elif lo_h - memo_hour == -22:  # one hour on: one bucket left
            gone_h = lo_h - 1
            if count_24h:
                count_24h -= self.hour_counts.get(gone_h, 0)
            if new_cards_24h:
                new_cards_24h -= self.hour_new_cards.get(gone_h, 0)
        else:
            gone = range(memo_hour - 23, lo_h)
            if count_24h:
                count_24h -= sum(map(self.hour_counts.get, gone, _ZEROS))
            if new_cards_24h:
                new_cards_24h -= sum(map(self.hour_new_cards.get, gone, _ZEROS))
        day = hour // 24
        lo_d = day - 6
        memo_day = self._memo_day
        if day != memo_day:
            self._memo_day = day
            if lo_d > memo_day:
                count_7d = cents_7d = 0
            else:
                gone = range(memo_day - 6, lo_d)
                count_7d -= sum(map(self.day_counts.get, gone, _ZEROS))
                cents_7d -= sum(map(self.day_cents.get, gone, _ZEROS))
        self._memo_hour = hour
        self._memo_lo_h = lo_h
        self._memo_lo_d = lo_d
        memo = self._memo = _new_window((0, count_24h, new_cards_24h, count_7d, cents_7d))
        return memo

    def _check_tidy(self) -> bool:
        w = self.watermark
        if w is None:
            return not (self.hour_counts or self.hour_new_cards or self.day_counts or self.day_cents)
        d = w // 24
        # (and no negative hour bucket: a zero 24 h sum then means no bucket to drop)
        return (
            min(self.hour_counts.values(), default=0) >= 0
            and min(self.hour_new_cards.values(), default=0) >= 0
            and max(self.hour_counts, default=w) <= w
            and max(self.hour_new_cards, default=w) <= w
            and max(self.day_counts, default=d) <= d
            and max(self.day_cents, default=d) <= d
        )

    def _slide(self, hour: int) -> MerchantWindow:
        """The window of ``hour``, a little after the memo's hour, from the memo: drop the
        hours that left the 24 h window, add the ones that entered (the day window only
        changes on a new day or horizon). Integer sums, so equal to a fresh read; the
        dropped buckets are at or above the memo's lowest read, which trimming never
        reaches while the memo is valid (see :meth:`add`)."""
        m = self._memo
        memo_hour, lo_h0, lo_d0 = self._memo_hour, self._memo_lo_h, self._memo_lo_d
        assert memo_hour is not None
        day = hour // 24
        lo_h, lo_d = hour - 23, day - 6  # self._lowest_read(hour), inlined: hot path
        w = self.watermark
        if w is not None:
            if w - _HOURLY_SPAN > lo_h:
                lo_h = w - _HOURLY_SPAN
            if w // 24 - _DAILY_SPAN > lo_d:
                lo_d = w // 24 - _DAILY_SPAN
        if lo_h <= memo_hour:  # the windows overlap: slide
            hc, hn = self.hour_counts, self.hour_new_cards
            gone = range(lo_h0, lo_h)
            new = range(memo_hour + 1, hour + 1)
            count_24h = m[1] - sum(map(hc.get, gone, _ZEROS)) + sum(map(hc.get, new, _ZEROS))
            if hn:
                new_cards_24h = m[2] - sum(map(hn.get, gone, _ZEROS)) + sum(map(hn.get, new, _ZEROS))
            else:
                new_cards_24h = 0
            count_1h = hc.get(hour, 0)
        else:
            count_1h, count_24h, new_cards_24h = self._read_hours(lo_h, hour)
        if lo_d == lo_d0 and day == memo_hour // 24:
            count_7d, cents_7d = m[3], m[4]
        else:
            count_7d, cents_7d = self._read_days(lo_d, day)
        return self._remember(hour, count_1h, count_24h, new_cards_24h, count_7d, cents_7d, lo_h, lo_d)

    def _read_hours(self, lo_h: int, hour: int) -> tuple[int, int, int]:
        """count_1h, count_24h and new_cards_24h from the hourly buckets ``[lo_h, hour]``."""
        if lo_h > hour:
            return 0, 0, 0
        hours = range(lo_h, hour + 1)
        hc, hn = self.hour_counts, self.hour_new_cards
        return hc.get(hour, 0), sum(map(hc.get, hours, _ZEROS)), sum(map(hn.get, hours, _ZEROS)) if hn else 0

    def _read_days(self, lo_d: int, day: int) -> tuple[int, int]:
        """count_7d and cents_7d from the daily buckets ``[lo_d, day]``."""
        if lo_d > day:
            return 0, 0
        days = range(lo_d, day + 1)
        return sum(map(self.day_counts.get, days, _ZEROS)), sum(map(self.day_cents.get, days, _ZEROS))

    def _remember(
        self, hour: int, c1: int, c24: int, new24: int, c7: int, cents7: int, lo_h: int, lo_d: int
    ) -> MerchantWindow:
        """Keep the window of ``hour`` (and its lowest reads) as the memo; return it."""
        self._memo_hour = hour
        self._memo_day = hour // 24
        self._memo_lo_h = lo_h
        self._memo_lo_d = lo_d
        memo = self._memo = _new_window((c1, c24, new24, c7, cents7))
        return memo

    def _lowest_read(self, hour: int) -> tuple[int, int]:
        """The lowest hour and day the windows of ``hour`` read: never below the horizon
        under the watermark (those buckets may be trimmed)."""
        lo_h, lo_d = hour - 23, hour // 24 - 6
        w = self.watermark
        if w is not None:
            floor = w - _HOURLY_SPAN
            if floor > lo_h:
                lo_h = floor
            floor = w // 24 - _DAILY_SPAN
            if floor > lo_d:
                lo_d = floor
        return lo_h, lo_d

    def add(self, delta: MerchantDelta) -> None:
        """Apply a transaction's increments; mirrors the Redis merchant script exactly."""
        hour, cents, new_card = delta
        w = self.watermark
        memo_hour = self._memo_hour
        if hour == memo_hour and (w is None or hour >= w):
            # The usual case: the delta of the transaction whose window the memo is, at
            # or above the watermark. The memo's lowest reads are then at most ``hour``
            # and its day, and above the new horizon: the delta lands in every window.
            # The memo's hour and day are the int objects that keyed its buckets when
            # they were new: lookups then match by identity, without reading the keys.
            self._increment(memo_hour, self._memo_day, cents, new_card, w)
            c1, c24, new24, c7, cents7 = self._memo
            self._memo = _new_window(
                (c1 + 1, c24 + 1, new24 + 1 if new_card else new24, c7 + 1, cents7 + cents)
            )
            return
        day = hour // 24
        self._increment(hour, day, cents, new_card, w)
        if memo_hour is None:
            return
        memo = self._memo
        lo_h, lo_d = self._memo_lo_h, self._memo_lo_d
        # The memo's lowest reads follow the watermark's horizon; when it moved (to
        # ``hour``) and now cuts into them, the memo's windows lost buckets.
        if w is None or hour > w:
            if hour - _HOURLY_SPAN > lo_h or day - _DAILY_SPAN > lo_d:
                self._memo_hour = None
                return
        # Trimming only drops buckets below the (unchanged) lowest reads: the memo holds.
        in_hours = lo_h <= hour <= memo_hour
        in_days = lo_d <= day <= memo_hour // 24
        if in_hours or in_days:
            c1, c24, new24, c7, cents7 = memo
            if in_hours:
                c24 += 1
                if new_card:
                    new24 += 1
                if hour == memo_hour:
                    c1 += 1
            if in_days:
                c7 += 1
                cents7 += cents
            self._memo = _new_window((c1, c24, new24, c7, cents7))

    def _increment(self, hour: int, day: int, cents: int, new_card: bool, w: int | None) -> None:
        """The buckets' increments and the watermark's move (``w``: the watermark before)."""
        hc = self.hour_counts
        hc[hour] = hc.get(hour, 0) + 1
        if new_card:
            hn = self.hour_new_cards
            hn[hour] = hn.get(hour, 0) + 1
        dc = self.day_counts
        dc[day] = dc.get(day, 0) + 1
        dc = self.day_cents
        dc[day] = dc.get(day, 0) + cents
        if w is None or hour > w:
            if w is None or day > w // 24:
                self._trim(hour)
            self.watermark = hour

    def _trim(self, watermark: int) -> None:
        hour_floor = watermark - MERCHANT_HOURLY_KEEP_H  # buckets <= floor are dead
        day_floor = watermark // 24 - MERCHANT_DAILY_KEEP_D
        for buckets, floor in (
            (self.hour_counts, hour_floor),
            (self.hour_new_cards, hour_floor),
            (self.day_counts, day_floor),
            (self.day_cents, day_floor),
        ):
            for key in [k for k in buckets if k <= floor]:
                del buckets[key]
