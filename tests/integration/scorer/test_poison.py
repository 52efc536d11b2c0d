"""Bad records go to the dead-letter topic, intact and explained; good ones are scored;
a flood of bad records stops the scorer without committing the batch that showed it."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Message

from services.core import topics
from services.core.codec import Codec
from tests.integration.scorer.conftest import START_MS, ScorerEnv, make_transactions

GOOD = make_transactions(1, seed=99)[0]


def _diff_position(a: bytes, b: bytes) -> int:
    [pos] = [i for i in range(len(a)) if a[i] != b[i]]
    return pos


def poison_corpus(codec: Codec) -> list[tuple[str, bytes | None, bytes | None]]:
    """(expected reason, key, value): every kind of bad record we know of."""

    def enc(**changes: Any) -> bytes:
        return codec.encode("Transaction", {**GOOD, **changes})

    key = GOOD["card_id"].encode()
    valid = enc()
    channel_at = _diff_position(valid, enc(channel="ATM"))
    bad_enum = bytearray(valid)
    bad_enum[channel_at] = 0x12  # zigzag 9: no channel has index 9
    bad_union = bytearray(valid)
    bad_union[channel_at + 1] = 0x06  # device_id union index 3 of 2 branches
    # A "null" card_id: its string simply absent from the bytes, as a writer that put
    # null into a non-nullable field would leave it; everything after shifts.
    card = GOOD["card_id"].encode()
    start = valid.index(card) - 1
    null_card = valid[:start] + valid[start + 1 + len(card) :]
    bad_utf8 = valid.replace(b"m-", b"\xff-", 1)
    overlong = valid[:channel_at] + b"\x80\x00" + valid[channel_at + 1 :]
    rng = random.Random(5)
    return [
        ("bad_marker", key, rng.randbytes(40)),
        ("bad_marker", key, b""),
        ("bad_marker", key, None),
        ("truncated", key, valid[:-3]),
        ("truncated", key, valid[:6]),
        ("trailing_bytes", key, valid + b"\x00\x01"),
        ("unknown_fingerprint", key, valid[:2] + b"\x01" * 8 + valid[10:]),
        ("schema_mismatch", key, codec.encode("Label", _label(codec))),
        ("out_of_range", key, bytes(bad_enum)),
        ("out_of_range", key, bytes(bad_union)),
        (_decode_reason(codec, null_card), key, null_card),
        ("invalid_value", key, bad_utf8),
        ("non_canonical", key, overlong),
        ("amount_not_finite", key, enc(amount=float("nan"))),
        ("amount_not_finite", key, enc(amount=float("inf"))),
        ("amount_not_positive", key, enc(amount=-5.0)),
        ("amount_too_large", key, enc(amount=1e12)),
        ("event_time_in_future", key, enc(event_time=START_MS + 10 * 365 * 86_400_000)),
        ("event_time_too_old", key, enc(event_time=631_152_000_000)),  # 1990
        ("id_empty", key, enc(txn_id="")),
        ("id_too_long", b"c" * 65, enc(card_id="c" * 65)),
        ("id_bad_chars", key, enc(merchant_id="m\x00x")),
        ("card_id_looks_like_pan", b"4111111111111111", enc(card_id="4111111111111111")),
        ("bad_currency", key, enc(currency="eur")),
        ("bad_country", key, enc(country="DEU")),
        ("mcc_out_of_range", key, enc(mcc=10_000)),
        ("key_mismatch", b"another-card", valid),
    ]


def _label(codec: Codec) -> dict[str, Any]:
    """A valid record of another type (a Label) on the transactions topic."""
    return {"txn_id": "t1", "card_id": GOOD["card_id"], "is_fraud": True, "label_time": START_MS,
            "source": "CHARGEBACK"}  # fmt: skip


def _decode_reason(codec: Codec, data: bytes) -> str:
    from services.core.codec import DecodeError

    try:
        codec.decode("Transaction", data)
    except DecodeError as exc:
        return str(exc.reason)
    raise AssertionError("the null-card record decodes")


def test_every_bad_record_is_dead_lettered_and_every_good_one_scored(scorer_env: ScorerEnv) -> None:
    codec = scorer_env.codec
    corpus = poison_corpus(codec)
    assert len({reason for reason, _, _ in corpus}) >= 15
    good = make_transactions(800, seed=51)
    records: list[tuple[str | None, bytes | None, bytes | None]] = [
        (None, t["card_id"].encode(), codec.encode("Transaction", t)) for t in good
    ]
    records += corpus
    random.Random(7).shuffle(records)
    scorer_env.produce_raw([(k, v) for _, k, v in records])
    sc = scorer_env.start_thread(batch_max_records=100)
    try:
        scorer_env.wait_committed(len(records), lambda: sc.running, timeout=90)
        assert sc.running
        by_reason = Counter(reason for reason, _, _ in corpus)
        for reason, count in by_reason.items():
            assert sc.metric("fraudstream_scorer_records_dead_lettered_total", {"reason": reason}) == count
    finally:
        assert sc.close() == 0

    scores = scorer_env.scores_by_txn(len(good))
    assert sorted(scores) == sorted(t["txn_id"] for t in good)
    assert all(len(v) == 1 for v in scores.values())

    dead = scorer_env.read(scorer_env.dlq, len(corpus))
    assert len(dead) == len(corpus)
    originals = _fetch_originals(scorer_env, len(records))
    seen: Counter[str] = Counter()
    for msg in dead:
        headers = dlq_headers(msg)
        assert set(topics.DLQ_HEADERS) <= set(headers)
        assert headers[topics.DLQ_ORIGINAL_TOPIC] == scorer_env.transactions
        assert headers[topics.DLQ_SERVICE] == "scorer"
        assert headers[topics.DLQ_ERROR_CLASS] in ("DecodeError", "ValidationError")
        int(headers[topics.DLQ_FAILED_AT])
        where = (int(headers[topics.DLQ_ORIGINAL_PARTITION]), int(headers[topics.DLQ_ORIGINAL_OFFSET]))
        assert (msg.key(), msg.value()) == originals[where], "key and value must be copied intact"
        detail = headers[topics.DLQ_ERROR_DETAIL]
        assert "c" * 65 not in detail and "4111111111111111" not in detail and GOOD["card_id"] not in detail
        seen[headers[topics.DLQ_ERROR_REASON]] += 1
    assert seen == Counter(reason for reason, _, _ in corpus)


def dlq_headers(msg: Message) -> dict[str, str]:
    pairs = cast("list[tuple[str, bytes | None]]", msg.headers() or [])
    return {k: v.decode() for k, v in pairs if v is not None}


def _fetch_originals(env: ScorerEnv, count: int) -> dict[tuple[int, int], tuple[bytes | None, bytes | None]]:
    return {
        (m.partition() or 0, m.offset() or 0): (cast("bytes | None", m.key()), m.value())
        for m in env.read(env.transactions, count)
    }


def test_a_flood_stops_the_scorer_without_committing_it(scorer_env: ScorerEnv, tmp_path: Path) -> None:
    codec = scorer_env.codec
    good = make_transactions(30, seed=61)
    scorer_env.produce(good)
    log = tmp_path / "scorer.log"
    proc = scorer_env.spawn(log, poison_max_consecutive=50, batch_max_records=1000)
    try:
        scorer_env.wait_committed(len(good), lambda: proc.poll() is None, timeout=90)
        # Then a producer goes haywire: 200 undecodable records, then good ones again.
        flood = [(b"card-x", b"garbage %d" % i) for i in range(200)]
        later = make_transactions(10, seed=62, start_ms=good[-1]["event_time"] + 1000)
        scorer_env.produce_raw(
            flood + [(t["card_id"].encode(), codec.encode("Transaction", t)) for t in later]
        )
        assert proc.wait(timeout=90) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith(
        "fraudstream scorer: error: poison flood on the transactions topic: 50 bad records"
    )
    assert "nothing is lost" in last
    committed = scorer_env.committed()
    total = len(good) + len(flood) + len(later)
    assert len(good) <= committed < len(good) + 50, "the flood batch must not be committed"
    # Everything committed was delivered (scored or dead-lettered) and nothing after it.
    # (Good records of other partitions may have been committed after the first bad ones.)
    scores = scorer_env.read(scorer_env.scores, len(good))
    dead = scorer_env.read(scorer_env.dlq, 0)
    assert all(m.key() == b"card-x" for m in dead)
    assert len(scores) + len(dead) == committed < total
