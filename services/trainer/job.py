"""One retrain event in, at most one challenger out.

For a ``RetrainEvent`` with ``window_end = T`` (event time; the job's "as of"):

1. **Once per event**: a version whose lineage names the event id means the event was
   trained already; the job then only finishes what that lineage asks (a promotion the
   policy decided, the announcements) and trains nothing. Concurrent trainers on one
   event are serialised by an ``flock`` claim in the registry folder (released by the
   kernel if a trainer dies), and the second one then finds the lineage.
2. **Data**: transactions with event time in ``[read_start, T)`` and labels with
   ``label_time`` in ``[read_start, T]`` (the labels known at T), read from the topics by
   :mod:`services.trainer.sources`. ``read_start`` goes back from the training window
   ``[T - train_window_days, T)`` far enough for the holdout (see
   :mod:`services.trainer.promotion`; at most ``HOLDOUT_LOOKBACK_DAYS`` before the
   window, and never before the champion's fit cutoff) plus ``feature_warmup_days``, so
   per-card history features are warm on every row that is trained on or evaluated.
3. **Features**: one pass of :func:`services.featurebuild.build.build_features` over the read
   range in canonical order (the scorer's feature function).
4. **Recipe**: :func:`services.trainer.training.train_on_features` (the recipe of
   ``fraudstream train`` after feature building) on the rows of the training window,
   configured from the champion's manifest (seed, split, rates, LightGBM parameters):
   the champion's recipe, on newer data.
5. **Verdict**: both models on the same matured holdout; :func:`promotion.decide`.
6. **Register** with ``promote=False`` (the version becomes ``challenger``) and the
   lineage (event, data window and offsets, holdout, both models' figures, verdict);
   announce ``CHALLENGER_SET``; if the verdict is ``promote``, promote and announce
   ``PROMOTED``.

Nothing here reads the wall clock except ``clock`` (manifest and event timestamps).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from services.core import offline
from services.core.validate import ValidationError, validate_transaction
from services.featurebuild.build import build_features
from services.registry import ModelVersion, Registry, RegistryError, VerificationError, loader
from services.trainer import lineage as lin
from services.trainer import promotion
from services.trainer.split import DAY_MS, SplitConfig, iso, period
from services.trainer.training import Imbalance, TrainConfig, TrainError, train_on_features

log = logging.getLogger(__name__)

HOLDOUT_LOOKBACK_DAYS = 60
DEFAULT_MAX_AMOUNT = 1_000_000.0  # the scorer's default: larger amounts are dead-lettered there


class Source(Protocol):
    def read(
        self, topic: str, schema: str, start_ms: int, keep: Callable[[dict[str, Any]], bool]
    ) -> tuple[list[dict[str, Any]], Any]: ...


class Stop(Protocol):
    def is_set(self) -> bool: ...
    def wait(self, timeout: float) -> bool: ...


class JobStopped(Exception):
    """Asked to stop before the model was registered: nothing was written."""


@dataclass(frozen=True)
class JobConfig:
    name: str
    transactions_topic: str
    labels_topic: str
    train_window_days: int = 30
    feature_warmup_days: int = 30
    policy: promotion.PolicyConfig = field(default_factory=promotion.PolicyConfig)
    max_amount: float = DEFAULT_MAX_AMOUNT


@dataclass(frozen=True)
class JobResult:
    outcome: str  # trained | duplicate | other_model | cannot_train
    version: str | None = None
    action: str | None = None  # the verdict: promote | hold
    detail: str = ""


@dataclass(frozen=True)
class Window:
    """The event-time ranges of one job, epoch ms."""

    as_of: int
    train_start: int
    read_start: int
    fit_end: int | None  # the champion's fit cutoff, if known

    def to_dict(self) -> dict[str, Any]:
        return {"as_of_ms": self.as_of, "as_of": iso(self.as_of), "label_cutoff_ms": self.as_of,
                "train": period(self.train_start, self.as_of), "read": period(self.read_start, self.as_of),
                "champion_fit_end_ms": self.fit_end}  # fmt: skip


def plan_window(as_of: int, cfg: JobConfig, fit_end: int | None) -> Window:
    train_start = as_of - cfg.train_window_days * DAY_MS
    floor = train_start - HOLDOUT_LOOKBACK_DAYS * DAY_MS
    if fit_end is not None:
        floor = min(train_start, max(floor, fit_end))
    return Window(as_of, train_start, floor - cfg.feature_warmup_days * DAY_MS, fit_end)


def _number(node: Mapping[str, Any], key: str, default: float) -> float:
    try:
        value = float(node.get(key, default))
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def recipe_from_manifest(manifest: Mapping[str, Any]) -> TrainConfig:
    """The champion's recipe as a :class:`TrainConfig`; defaults where it says nothing."""
    base = TrainConfig()
    params = manifest.get("params") or {}
    split = manifest.get("split") or {}
    rates = manifest.get("thresholds") or {}
    try:
        split_cfg = SplitConfig(
            _number(split, "train_fraction", base.split.train_fraction),
            _number(split, "validation_fraction", base.split.validation_fraction),
            bool(split.get("align_to_day", True)),
        )
    except ValueError:
        split_cfg = base.split
    imbalance: Imbalance = "none"
    if "scale_pos_weight" in params:
        imbalance = "scale_pos_weight"
    elif params.get("is_unbalance"):
        imbalance = "is_unbalance"
    metric = params.get("metric")
    return TrainConfig(
        seed=int(_number(manifest, "seed", base.seed)),
        split=split_cfg,
        review_rate=_number(rates, "review_rate", base.review_rate),
        block_rate=_number(rates, "block_rate", base.block_rate),
        imbalance=imbalance,
        learning_rate=_number(params, "learning_rate", base.learning_rate),
        num_leaves=int(_number(params, "num_leaves", base.num_leaves)),
        lambda_l2=_number(params, "lambda_l2", base.lambda_l2),
        stop_metric=metric if metric in ("auc", "average_precision") else base.stop_metric,
        max_rounds=int(_number(manifest, "max_rounds", base.max_rounds)),
        early_stopping_rounds=int(_number(manifest, "early_stopping_rounds", base.early_stopping_rounds)),
    )


def fit_cutoff(manifest: Mapping[str, Any]) -> int | None:
    window = manifest.get("training_window") or {}
    end = window.get("end_ms") if isinstance(window, Mapping) else None
    return int(end) if isinstance(end, int | float) else None


class RetrainJob:
    def __init__(self, cfg: JobConfig, registry: Registry, source: Source,
                 announce: Callable[[dict[str, Any]], None], *, clock: Callable[[], datetime],
                 stop: Stop) -> None:  # fmt: skip
        self.cfg, self.registry, self.source = cfg, registry, source
        self._announce, self._clock, self._stop = announce, clock, stop

    def run(self, event: Mapping[str, Any]) -> JobResult:
        if event["model_name"] != self.cfg.name:
            return JobResult("other_model", detail=f"event for model {event['model_name']!r}")
        event_id = str(event["event_id"])
        done = lin.find_by_retrain_event(self.registry, self.cfg.name, event_id)
        if done is None:
            with self._claim(event_id):
                done = lin.find_by_retrain_event(self.registry, self.cfg.name, event_id)
                if done is None:
                    return self._train(event, event_id)
        return self._resume(done, event_id)

    # ------------------------------------------------------------------ training

    def _train(self, event: Mapping[str, Any], event_id: str) -> JobResult:
        import lightgbm

        from services.monitor.champion import delay_prior

        champion = self._champion()
        manifest = champion.manifest if champion is not None else {}
        window = plan_window(int(event["window_end"]), self.cfg, fit_cutoff(manifest))
        log.info(
            "training a challenger for retrain event %s… (%s, as of %s, window from %s)",
            event_id[:12],
            event["reason"],
            iso(window.as_of),
            iso(window.train_start),
        )
        txns, labels, reads = self._read(window)
        self._check_stop()
        frame = build_features(txns)
        self._check_stop()
        in_window = (frame.event_time >= window.train_start) & (frame.event_time < window.as_of)
        try:
            result = train_on_features(
                subframe(frame, in_window),
                labels,
                config=recipe_from_manifest(manifest),
                dataset=self._dataset(window, event_id, manifest),
                clock=self._clock,
            )
        except TrainError as exc:
            log.error("cannot train for retrain event %s…: %s", event_id[:12], exc)
            return JobResult("cannot_train", detail=str(exc))
        self._check_stop()
        comparison = promotion.compare(
            event_ms=frame.event_time, txn_ids=frame.txn_ids, X=frame.X, labels=labels, as_of_ms=window.as_of,
            not_before_ms=window.fit_end, end_by_ms=window.train_start,
            champion=None if champion is None else contender(champion.booster, champion.manifest),
            challenger=contender(lightgbm.Booster(model_str=result.model_text), result.manifest),
            cfg=self.cfg.policy, prior=delay_prior(manifest),
        )  # fmt: skip
        lineage = {
            "trigger": "retrain_event",
            lin.RETRAIN_EVENT_ID: event_id,
            "retrain_event": lin.event_summary(event),
            "champion": None if champion is None else {"name": champion.version.name,
                                                       "version": champion.version.version,
                                                       "sha256": champion.sha256},
            "data_window": {**window.to_dict(), **reads},
            **comparison,
        }  # fmt: skip
        mv = self.registry.register(
            self.cfg.name, result.model_text, result.manifest, promote=False, lineage=lineage
        )
        log.info(
            "registered %s@%s for retrain event %s…: %s",
            mv.name,
            mv.version,
            event_id[:12],
            comparison["decision"]["reason"],
        )
        return self._settle(mv, lineage, event_id, JobResult("trained", mv.version))

    def _read(self, window: Window) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        def keep_txn(txn: dict[str, Any]) -> bool:
            if not window.read_start <= txn["event_time"] < window.as_of:
                return False
            try:
                validate_transaction(txn, now_ms=window.as_of, max_skew_ms=0, max_amount=self.cfg.max_amount)
            except ValidationError:
                return False
            return True

        def keep_label(label: dict[str, Any]) -> bool:
            return bool(window.read_start <= label["label_time"] <= window.as_of)

        txns, txn_stats = self.source.read(
            self.cfg.transactions_topic, "Transaction", window.read_start, keep_txn
        )
        self._check_stop()
        labels, label_stats = self.source.read(self.cfg.labels_topic, "Label", window.read_start, keep_label)
        txns = dedupe(offline.sort_by_event_time(txns))
        return txns, labels, {"transactions": txn_stats.to_dict(), "labels": label_stats.to_dict()}

    def _dataset(self, window: Window, event_id: str, champion: Mapping[str, Any]) -> dict[str, Any]:
        """The recipe's "data set": a description of the Kafka window (there are no files)."""
        out: dict[str, Any] = {
            "source": "kafka",
            "topics": {"transactions": self.cfg.transactions_topic, "labels": self.cfg.labels_topic},
            "train_window": period(window.train_start, window.as_of),
            "label_cutoff_ms": window.as_of,
            "retrain_event_id": event_id,
        }
        policy = (champion.get("dataset") or {}).get("label_policy")
        if policy:
            out["label_policy"] = policy  # keeps the monitor's label-delay prior
        return out

    def _champion(self) -> loader.LoadedModel | None:
        try:
            return loader.load(self.registry.resolve(f"{self.cfg.name}@champion"))
        except VerificationError as exc:
            log.error(
                "the champion cannot be loaded (%s); the challenger is trained with the default "
                "recipe and is not compared",
                exc,
            )
        except RegistryError:
            log.info("no champion of %s yet; the new version will become champion", self.cfg.name)
        return None

    # ------------------------------------------------------------------ after registering

    def _settle(
        self, mv: ModelVersion, lineage: Mapping[str, Any], event_id: str, result: JobResult
    ) -> JobResult:
        """Announce the new version and carry out the verdict (also after a crash)."""
        decision = (lineage.get("decision") or {}).get("action")
        current = self.registry.resolve(f"{mv.name}@{mv.version}")
        if "challenger" in current.aliases:
            reason = str((lineage.get("decision") or {}).get("reason", ""))
            self._publish(current, "CHALLENGER_SET", event_id, reason, self._previous(current, "challenger"))
            if decision == "promote":
                previous = self.registry.aliases(mv.name).get("champion")
                current = self.registry.promote(f"{mv.name}@{mv.version}")
                log.info("promoted %s@%s automatically (was %s)", mv.name, mv.version, previous)
                self._publish(
                    current,
                    lin.promotion_action(mv.version, previous),
                    event_id,
                    str(lineage["decision"]["reason"]),
                    previous,
                )
        elif "champion" in current.aliases and (decision == "promote" or lineage.get("champion") is None):
            previous = self._previous(current, "promoted")
            reason = (
                "first model of the name"
                if lineage.get("champion") is None
                else str(lineage["decision"]["reason"])
            )
            self._publish(current, lin.promotion_action(mv.version, previous), event_id, reason, previous)
        return JobResult(result.outcome, mv.version, decision, result.detail)

    def _resume(self, mv: ModelVersion, event_id: str) -> JobResult:
        log.info(
            "retrain event %s… was trained already as %s@%s; not training again",
            event_id[:12],
            mv.name,
            mv.version,
        )
        lineage = mv.manifest().get("lineage") or {}
        return self._settle(mv, lineage, event_id, JobResult("duplicate", mv.version))

    def _previous(self, mv: ModelVersion, action: str) -> str | None:
        """The version the alias named before ``mv`` took it, from the registry history
        (``action``: "promoted" for champion, "challenger" for challenger)."""
        history = self.registry.index(mv.name).get("history") or []
        key = (action, mv.version)
        mine = [i for i, e in enumerate(history) if (e.get("action"), e.get("version")) == key]
        if not mine:
            return None
        if action == "promoted":
            previous = history[mine[-1]].get("previous")
            return None if previous is None else str(previous)
        for entry in reversed(history[: mine[-1]]):
            if entry.get("action") == "promoted":  # a promotion clears the challenger alias
                return None
            if entry.get("action") == "challenger":
                return str(entry["version"])
        return None

    def _publish(
        self, mv: ModelVersion, action: lin.Action, event_id: str, reason: str, previous: str | None = None
    ) -> None:
        manifest = mv.manifest()
        record = lin.model_update(
            event_id=lin.update_id("trainer", event_id, action), mv=mv, sha256=str(manifest["model_sha256"]),
            action=action, at=self._clock(), previous_version=previous, reason=reason,
            retrain_event_id=event_id,
        )  # fmt: skip
        self._announce(record)

    # ------------------------------------------------------------------ helpers

    @contextlib.contextmanager
    def _claim(self, event_id: str) -> Iterator[None]:
        """Hold the event's claim (an flock the kernel drops if this process dies)."""
        digest = hashlib.sha256(event_id.encode()).hexdigest()[:24]
        folder = self.registry.root / self.cfg.name
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f".retrain-{digest}.lock").open("a") as handle:
            waited = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited:
                        log.info("another trainer holds retrain event %s…; waiting for it", event_id[:12])
                        waited = True
                    if self._stop.wait(0.5):
                        raise JobStopped("stopped while waiting for another trainer") from None
            yield

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise JobStopped("stopped before the challenger was registered")


def contender(booster: Any, manifest: Mapping[str, Any]) -> promotion.Contender:
    """A LightGBM booster and its manifest as a :class:`promotion.Contender`."""

    def score(X: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(X, num_threads=2), dtype=np.float64)

    return promotion.Contender(score, float(manifest["thresholds"]["review"]))


def subframe(frame: offline.FeatureFrame, mask: np.ndarray) -> offline.FeatureFrame:
    idx = np.flatnonzero(mask)
    return offline.FeatureFrame(
        txn_ids=[frame.txn_ids[i] for i in idx], event_time=frame.event_time[idx],
        card_ids=[frame.card_ids[i] for i in idx], X=frame.X[idx],
    )  # fmt: skip


def dedupe(txns: list[Any]) -> list[dict[str, Any]]:
    """The first record of each txn_id (Kafka redelivers; the scorer scores one)."""
    seen: set[str] = set()
    out = []
    for txn in txns:
        if txn["txn_id"] not in seen:
            seen.add(txn["txn_id"])
            out.append(dict(txn))
    return out
