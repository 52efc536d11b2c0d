"""One micro-batch, from raw Kafka records to the records to produce.

Stages, each a function so that the loop can time and retry them separately:

1. :func:`decode_batch`: decode and validate every record; a bad one becomes a
   :class:`~services.scorer.dlq.Failure` (an error value), never an exception.
2. the online feature store (Redis) turns the good transactions into feature vectors;
   that call is the loop's, because it is the one that fails transiently.
3. :func:`predict`: one LightGBM call for the whole batch on a float64 matrix.
   Reason codes come from ``pred_contrib`` (TreeSHAP), which costs tens to hundreds of
   times a plain prediction per row, so it runs only on the rows that are not ALLOW
   (a few percent of traffic). ALLOW scores carry no reason codes: reasons explain an
   adverse decision (review, block); the feature vector in every score lets anyone
   explain an ALLOW offline. The bench prints both costs.
4. :func:`score_records` / :func:`encode_outputs`: Score records (plus shadow scores)
   and dead letters, encoded, keyed by card id.

Nothing here talks to Kafka or Redis, so all of it is unit-tested with plain values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from services.core.codec import Codec, DecodeError
from services.core.decision import ALLOW, decide_many, top_reasons
from services.core.features import FEATURE_INDEX
from services.core.validate import MIN_EVENT_TIME_MS, ValidationError, validate_transaction
from services.scorer import dlq
from services.scorer.model_watch import ServingModel

TRANSACTION = "Transaction"
SCORE = "Score"
REASONS_PER_SCORE = 3
ID_FIELDS = ("txn_id", "card_id", "merchant_id", "device_id")

Header = tuple[str, bytes | None]
# How old the card's previous event was: the age of the state the features were built on.
AGE_COLUMN = FEATURE_INDEX["secs_since_last_txn"]


class FeatureStore(Protocol):
    """The online store's batch protocol (idempotent per txn id, safe to retry)."""

    def process_batch(self, txns: Sequence[Mapping[str, Any]]) -> Sequence[Sequence[float]]: ...


@dataclass(frozen=True, slots=True)
class Raw:
    """One consumed record, detached from the Kafka client's message type."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] | None = None


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce. ``droppable_value``: a dead letter whose value may be
    replaced by nothing (and a header) if it is too large to copy."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[Header] | None = None
    droppable_value: bool = False


@dataclass(frozen=True)
class Limits:
    """Validation bounds, from the scorer settings."""

    max_amount: float
    max_future_skew_ms: int
    max_event_age_ms: int

    def oldest_ms(self, now_ms: int) -> int:
        return max(MIN_EVENT_TIME_MS, now_ms - self.max_event_age_ms)


@dataclass
class Decoded:
    """A batch split into good transactions and failures; ``bad_flags`` in batch order."""

    goods: list[tuple[Raw, dict[str, Any]]]
    bads: list[tuple[Raw, dlq.Failure]]
    bad_flags: list[bool]

    def without_partitions(self, gone: set[tuple[str, int]]) -> Decoded:
        """The same batch minus records of partitions this consumer no longer owns."""
        return Decoded(
            goods=[g for g in self.goods if (g[0].topic, g[0].partition) not in gone],
            bads=[b for b in self.bads if (b[0].topic, b[0].partition) not in gone],
            bad_flags=self.bad_flags,  # already counted by the flood check; kept as is
        )


def check_record(raw: Raw, codec: Codec, limits: Limits, now_ms: int) -> dict[str, Any] | dlq.Failure:
    """The decoded transaction, or why it must be dead-lettered."""
    try:
        txn = codec.decode(TRANSACTION, raw.value)
    except DecodeError as exc:
        return dlq.Failure("DecodeError", str(exc.reason), dlq.mask_detail(exc.detail))
    try:
        validate_transaction(
            txn,
            now_ms=now_ms,
            max_skew_ms=limits.max_future_skew_ms,
            max_amount=limits.max_amount,
            min_event_time_ms=limits.oldest_ms(now_ms),
        )
    except ValidationError as exc:
        secrets = [str(txn.get(f) or "") for f in ID_FIELDS]
        return dlq.Failure("ValidationError", exc.reason, dlq.mask_detail(exc.detail, secrets))
    # A card's transactions must all land on one partition (per-card features stay on
    # one scorer), which only holds if every record is keyed by its card id.
    if raw.key != txn["card_id"].encode("utf-8"):
        return dlq.Failure("ValidationError", "key_mismatch", "record key is not the card_id")
    return txn


def decode_batch(raws: Sequence[Raw], codec: Codec, limits: Limits, now_ms: int) -> Decoded:
    goods: list[tuple[Raw, dict[str, Any]]] = []
    bads: list[tuple[Raw, dlq.Failure]] = []
    flags: list[bool] = []
    for raw in raws:
        result = check_record(raw, codec, limits, now_ms)
        if isinstance(result, dlq.Failure):
            bads.append((raw, result))
            flags.append(True)
        else:
            goods.append((raw, result))
            flags.append(False)
    return Decoded(goods, bads, flags)


def next_offsets(raws: Sequence[Raw]) -> dict[tuple[str, int], int]:
    """Per partition, the offset to commit: the last one in the batch plus one."""
    out: dict[tuple[str, int], int] = {}
    for raw in raws:
        tp = (raw.topic, raw.partition)
        out[tp] = max(out.get(tp, -1), raw.offset + 1)
    return out


def first_offsets(raws: Sequence[Raw]) -> dict[tuple[str, int], int]:
    """Per partition, the batch's first offset (where to rewind if nothing is committed)."""
    out: dict[tuple[str, int], int] = {}
    for raw in raws:
        tp = (raw.topic, raw.partition)
        out[tp] = min(out.get(tp, raw.offset), raw.offset)
    return out


# --------------------------------------------------------------------------- predict


@dataclass(frozen=True)
class Predictions:
    """A model's verdict on a batch: scores, decisions and reason codes, row by row."""

    scores: npt.NDArray[np.float64]
    decisions: list[str]
    reasons: list[list[str]]
    contrib_rows: int  # rows that needed pred_contrib (for the bench and metrics)


def feature_matrix(vectors: Sequence[Sequence[float]], n_features: int) -> npt.NDArray[np.float64]:
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.size == 0:
        return np.empty((0, n_features), dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != n_features:
        raise ValueError(f"feature vectors of shape {matrix.shape} do not fit {n_features} features")
    return matrix


def predict(model: ServingModel, matrix: npt.NDArray[np.float64], readable: Mapping[str, str]) -> Predictions:
    """One predict call for the batch; contributions only for non-ALLOW rows."""
    if matrix.shape[0] == 0:
        return Predictions(np.empty(0, dtype=np.float64), [], [], 0)
    # One thread: the batch is small and OpenMP workers would spin against the broker.
    scores = np.asarray(model.booster.predict(matrix, num_threads=1), dtype=np.float64)
    decisions = decide_many(scores, model.thresholds).tolist()
    reasons: list[list[str]] = [[] for _ in decisions]
    alert_rows = [i for i, d in enumerate(decisions) if d != ALLOW]
    if alert_rows:
        contrib = model.booster.predict(matrix[alert_rows], pred_contrib=True, num_threads=1)
        for row, i in zip(np.asarray(contrib), alert_rows, strict=True):
            reasons[i] = top_reasons(row, model.feature_names, readable, k=REASONS_PER_SCORE)
    return Predictions(scores, decisions, reasons, len(alert_rows))


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class StageTimes:
    """Per-record shares written into each Score's timings, microseconds."""

    features_us: int
    predict_us: int


def score_records(
    goods: Sequence[tuple[Raw, dict[str, Any]]],
    matrix: npt.NDArray[np.float64],
    preds: Predictions,
    model: ServingModel,
    *,
    consumed_at_ms: int,
    scored_at_ms: int,
    times: StageTimes,
    shadow: bool = False,
) -> list[dict[str, Any]]:
    """One Score record per good transaction, in batch order."""
    timings = {
        "consumed_at": consumed_at_ms,
        "scored_at": scored_at_ms,
        "features_us": times.features_us,
        "predict_us": times.predict_us,
    }
    rows = matrix.tolist()
    scores = preds.scores.tolist()
    out = []
    for i, (_raw, txn) in enumerate(goods):
        out.append(
            {
                "txn_id": txn["txn_id"],
                "card_id": txn["card_id"],
                "event_time": txn["event_time"],
                "score": scores[i],
                "decision": preds.decisions[i],
                "reason_codes": preds.reasons[i],
                "model_name": model.name,
                "model_version": model.version,
                "model_sha256": model.sha256,
                "feature_set": model.feature_set,
                "features": rows[i],
                "shadow": shadow,
                "timings": timings,
            }
        )
    return out


def dead_letters(
    bads: Sequence[tuple[Raw, dlq.Failure]], dlq_topic: str, failed_at_ms: int
) -> list[OutRecord]:
    """Each bad record, key and value bytes intact, with headers saying where and why."""
    return [
        OutRecord(
            topic=dlq_topic,
            key=raw.key,
            value=raw.value,
            headers=dlq.dead_letter_headers(
                failure,
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                failed_at_ms=failed_at_ms,
                original_headers=raw.headers,
            ),
            droppable_value=True,
        )
        for raw, failure in bads
    ]


def encode_scores(
    records: Sequence[dict[str, Any]], goods: Sequence[tuple[Raw, dict[str, Any]]], codec: Codec, topic: str
) -> list[OutRecord]:
    """Scores keyed by card id (the input's key, already checked to equal it)."""
    encode: Callable[[str, Mapping[str, Any]], bytes] = codec.encode
    return [
        OutRecord(topic=topic, key=raw.key, value=encode(SCORE, rec))
        for rec, (raw, _txn) in zip(records, goods, strict=True)
    ]


# --------------------------------------------------------------------------- whole batch


@dataclass(frozen=True)
class Scored:
    """Everything a good batch produces, plus what the metrics need to know about it."""

    out: list[OutRecord]
    decisions: list[str]
    event_times: list[int]
    feature_ages_s: list[float]
    shadow_scores: int
    scored_at_ms: int
    seconds: dict[str, float]  # stage -> wall time: redis, predict, encode


def score_batch(
    decoded: Decoded,
    *,
    store: FeatureStore,
    champion: ServingModel,
    shadow: ServingModel | None,
    codec: Codec,
    readable: Mapping[str, str],
    scores_topic: str,
    dlq_topic: str,
    consumed_at_ms: int,
    clock_ms: Callable[[], int],
) -> Scored:
    """Features (the only call that fails transiently: StoreError), predictions, encoded
    scores and shadow scores, then dead letters: the records of one batch, in order."""
    goods = decoded.goods
    n = len(goods)
    t0 = time.perf_counter()
    vectors = store.process_batch([txn for _raw, txn in goods]) if goods else []
    t1 = time.perf_counter()
    matrix = feature_matrix(vectors, len(champion.feature_names))
    preds = predict(champion, matrix, readable)
    shadow_preds = predict(shadow, matrix, readable) if shadow is not None else None
    t2 = time.perf_counter()
    times = StageTimes(
        features_us=int((t1 - t0) * 1e6 / n) if n else 0,
        predict_us=int((t2 - t1) * 1e6 / n) if n else 0,
    )
    scored_at = clock_ms()
    records = score_records(
        goods, matrix, preds, champion, consumed_at_ms=consumed_at_ms, scored_at_ms=scored_at, times=times
    )
    out = encode_scores(records, goods, codec, scores_topic)
    if shadow is not None and shadow_preds is not None:
        records = score_records(
            goods, matrix, shadow_preds, shadow,
            consumed_at_ms=consumed_at_ms, scored_at_ms=scored_at, times=times, shadow=True,
        )  # fmt: skip
        out += encode_scores(records, goods, codec, scores_topic)
    out += dead_letters(decoded.bads, dlq_topic, scored_at)
    t3 = time.perf_counter()
    ages = matrix[:, AGE_COLUMN].tolist() if n else []
    return Scored(
        out=out,
        decisions=preds.decisions,
        event_times=[txn["event_time"] for _raw, txn in goods],
        feature_ages_s=[a for a in ages if not math.isnan(a)],
        shadow_scores=n if shadow is not None else 0,
        scored_at_ms=scored_at,
        seconds={"redis": t1 - t0, "predict": t2 - t1, "encode": t3 - t2},
    )
