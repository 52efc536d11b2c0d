from __future__ import annotations

from services.core import topics
from services.scorer.dlq import Failure, PoisonDetector, dead_letter_headers, mask_detail


def test_headers_say_where_and_why_in_utf8() -> None:
    failure = Failure("DecodeError", "truncated", "Transaction: the body ends early")
    headers = dead_letter_headers(
        failure, topic="p.transactions", partition=7, offset=12345, failed_at_ms=1_767_225_600_000
    )
    assert dict(headers) == {
        topics.DLQ_ORIGINAL_TOPIC: b"p.transactions",
        topics.DLQ_ORIGINAL_PARTITION: b"7",
        topics.DLQ_ORIGINAL_OFFSET: b"12345",
        topics.DLQ_ERROR_CLASS: b"DecodeError",
        topics.DLQ_ERROR_REASON: b"truncated",
        topics.DLQ_ERROR_DETAIL: b"Transaction: the body ends early",
        topics.DLQ_SERVICE: b"scorer",
        topics.DLQ_FAILED_AT: b"1767225600000",
    }
    assert [k for k, _ in headers] == list(topics.DLQ_HEADERS)


def test_original_headers_are_kept_first_and_stale_dlq_headers_dropped() -> None:
    failure = Failure("ValidationError", "bad_currency", "currency: not 3 uppercase ASCII letters")
    original = [("trace-id", b"abc"), ("dlq.error.reason", b"old"), ("empty", None)]
    headers = dead_letter_headers(
        failure, topic="t", partition=0, offset=1, failed_at_ms=1, original_headers=original
    )
    assert headers[:2] == [("trace-id", b"abc"), ("empty", None)]
    assert [v for k, v in headers if k == "dlq.error.reason"] == [b"bad_currency"]


def test_mask_hides_ids_and_card_numbers() -> None:
    detail = "card_id card-123 at merchant m-9: 4111 1111 1111 1111 and 4111111111111111"
    masked = mask_detail(detail, ["card-123", "m-9", ""])
    assert "card-123" not in masked and "m-9" not in masked
    assert "4111" not in masked
    assert masked.startswith("card_id *** at merchant ***")


def test_mask_bounds_length_and_strips_control_characters() -> None:
    masked = mask_detail("a\nb\x00" + "x" * 1000)
    assert masked.startswith("a?b?")
    assert len(masked) == 300
    assert "\n" not in masked


def test_flood_by_share_needs_min_seen() -> None:
    det = PoisonDetector(max_share=0.5, max_consecutive=1000, window=1000, min_seen=100)
    # 99 records, all bad except every third: share 2/3 but fewer than 100 seen.
    flags = [i % 3 != 0 for i in range(99)]
    assert det.check(flags) is None
    det.record(flags)
    flood = det.check([True])
    assert flood is not None and "of the last 100 records are bad" in flood.message


def test_flood_by_share_counts_only_the_window() -> None:
    det = PoisonDetector(max_share=0.5, max_consecutive=10_000, window=1000, min_seen=100)
    det.record([True] * 400 + [False] * 600)
    assert det.share == 0.4
    # 100 more bad ones push the 100 oldest (bad) ones out: still 400 of 1000.
    det.record([True] * 100)
    assert det.share == 0.4
    # Window now: 300 bad, 600 good, 100 bad. 300 bad replace the 300 oldest bad (400),
    # then 100 bad replace 100 good (500 = exactly the limit, not above it) ...
    assert det.check([True] * 400) is None
    # ... and one more is above it.
    flood = det.check([True] * 401)
    assert flood is not None and flood.message.startswith("501 of the last 1000 records are bad")


def test_flood_by_streak_crosses_batches() -> None:
    det = PoisonDetector(max_share=1.0, max_consecutive=5)
    det.record([False, True, True, True])
    assert det.check([False, True]) is None
    flood = det.check([True, True])
    assert flood is not None and flood.message.startswith("5 bad records in a row")


def test_check_does_not_remember_so_a_retried_batch_counts_once() -> None:
    det = PoisonDetector(max_share=0.5, max_consecutive=3)
    batch = [True, True, False]
    for _ in range(5):
        assert det.check(batch) is None
    assert det.share == 0.0
    det.record(batch)
    assert det.check([True, True]) is None  # streak restarted after the good one
    assert det.check([True, True, True]) is not None
