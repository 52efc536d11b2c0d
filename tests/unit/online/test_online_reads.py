"""The read step's commands (exact, decoded from the wire bytes) and the snapshot parsed
from their replies; the hand-packed command pieces equal what hiredis packs."""

from __future__ import annotations

from typing import Any

import hiredis
from redis.crc import key_slot

from services.core.features import N_FEATURES, CardState, MerchantDelta, MerchantState
from services.online import keys, wire
from services.online.reads import BatchRead, _window

T0 = 1_714_521_600_000  # 2024-05-01T00:00Z
HOUR0 = T0 // 3_600_000
DAY0 = T0 // 86_400_000
DAY = 86_400_000


def txn(txn_id: str, offset_ms: int, card: str = "c-1", merchant: str = "m-1") -> dict[str, Any]:
    return {"txn_id": txn_id, "card_id": card, "merchant_id": merchant, "event_time": T0 + offset_ms}


BATCH = [
    txn("a", 0),
    txn("b", 60_000, card="c-2"),
    txn("a", 0),  # repeated: read once
    txn("c", DAY + 5, merchant="m-2"),  # c-1's next day: a second marker hash
]


def decode(packed: bytes) -> list[bytes]:
    reader = hiredis.Reader()
    reader.feed(packed)
    command = reader.gets()
    assert reader.gets() is False, "exactly one command"
    assert isinstance(command, list)
    return command


def b(*parts: str) -> list[bytes]:
    return [p.encode() for p in parts]


def test_commands_read_each_card_merchant_and_day_once() -> None:
    request = BatchRead("ns", BATCH)
    m1_names = keys.window_fields((HOUR0,))[2]
    m2_names = keys.window_fields((HOUR0 + 24,))[2]
    assert [decode(c) for c in request.commands()] == [
        b("HMGET", "ns:c:{c-1}", "s", "v"),
        b("HMGET", "ns:c:{c-1}:t:20240501", "a"),
        b("HMGET", "ns:c:{c-1}:t:20240502", "c"),
        b("HMGET", "ns:c:{c-2}", "s", "v"),
        b("HMGET", "ns:c:{c-2}:t:20240501", "b"),
        b("HMGET", "ns:m:{m-1}", *m1_names),
        b("SMISMEMBER", "ns:m:{m-1}:a:20240501", "a", "b"),
        b("HMGET", "ns:m:{m-2}", *m2_names),
        b("SMISMEMBER", "ns:m:{m-2}:a:20240502", "c"),
    ]


def test_every_read_touches_one_slot() -> None:
    for command in BatchRead("ns", BATCH).commands():
        key = decode(command)[1]
        assert key_slot(key) in {
            key_slot(b"{c-1}"),
            key_slot(b"{c-2}"),
            key_slot(b"{m-1}"),
            key_slot(b"{m-2}"),
        }


def test_window_of_several_hours_reads_their_union() -> None:
    request = BatchRead("ns", [txn("a", 0), txn("b", 30 * 3_600_000, card="c-2")])
    merchant_read = [decode(c) for c in request.commands() if decode(c)[1] == b"ns:m:{m-1}"]
    assert merchant_read == [
        [b"HMGET", b"ns:m:{m-1}", *(n.encode() for n in keys.window_fields((HOUR0, HOUR0 + 30))[2])]
    ]


def test_parse_builds_the_snapshot() -> None:
    request = BatchRead("ns", BATCH)
    assert len(list(request.commands())) == 9
    state = CardState((T0,), (1.5,), ("m-1",), ("DE",), T0, T0, 1, 1.5, 0.0, ("m-1",), ("DE",), ())
    marker = keys.encode_marker(tuple(float(i) for i in range(N_FEATURES)), MerchantDelta(HOUR0, 150, True))
    m1_values: list[bytes | None] = [None] * len(keys.window_fields((HOUR0,))[2])
    m1_values[0] = str(HOUR0).encode()
    m1_values[24] = str(keys.NEW_CARD_UNIT + 1).encode()  # h<HOUR0>: 1 txn, 1 new card
    m2_values: list[bytes | None] = [None] * len(keys.window_fields((HOUR0 + 24,))[2])
    replies = [
        [state.to_bytes(), b"7"],  # c-1
        [marker],  # c-1 day 0: "a" was applied before
        [None],  # c-1 day 1
        [None, None],  # c-2: no state yet
        [None],
        m1_values,
        [1, 0],  # m-1 applied "a", not "b"
        m2_values,
        [0],
    ]
    snap = request.parse(replies)
    assert snap.states == {"c-1": state, "c-2": None}
    assert snap.versions == {"c-1": b"7", "c-2": b"0"}
    assert set(snap.markers) == {"a"}
    assert snap.markers["a"].delta == MerchantDelta(HOUR0, 150, True)
    assert snap.markers["a"].vector == tuple(float(i) for i in range(N_FEATURES))
    assert snap.applied == {"a"}
    assert snap.merchants == {
        "m-1": MerchantState(HOUR0, {HOUR0: 1}, {HOUR0: 1}, {}, {}),
        "m-2": MerchantState(),
    }


def test_hand_packed_pieces_equal_hiredis() -> None:
    names = ("w", "h476256", "d19844n", "Café")
    by_hand = (
        wire.head(2 + len(names))
        + wire.bulk("HMGET")
        + wire.bulk("ns:m:{m-1}")
        + b"".join(wire.bulk(n) for n in names)
    )
    assert by_hand == wire.pack(("HMGET", "ns:m:{m-1}", *names))
    assert by_hand == hiredis.pack_command(("HMGET", "ns:m:{m-1}", *names))  # type: ignore[arg-type]


def test_packed_window_fields_are_window_fields() -> None:
    for hours in [(HOUR0,), (HOUR0, HOUR0 + 1), (HOUR0 - 30, HOUR0, HOUR0 + 200), (-5,)]:
        bucket_hours, bucket_days, names = keys.window_fields(hours)
        window = _window(hours)
        assert (window.hours, window.days, window.n_fields) == (bucket_hours, bucket_days, len(names))
        assert window.packed_fields == b"".join(wire.bulk(n) for n in names)
