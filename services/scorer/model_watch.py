"""The served model, and its hot swap when the registry alias moves.

Every ``poll_s`` the watch resolves the alias (``fraud@champion``). When it names a new
version, that version is verified and loaded *first*; only a model that loads replaces
the one being served. A bad new version is rejected (logged, counted) and remembered,
so it is not retried until the alias moves again, while the old model keeps serving.

Shadow scoring hook: with ``shadow`` on and the model given by alias, the challenger
alias of the same name is watched the same way and served as :attr:`ModelWatch.shadow`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.core.decision import Thresholds
from services.registry import ModelRef, ModelVersion, Registry, RegistryError, loader
from services.scorer.metrics import ScorerMetrics

log = logging.getLogger(__name__)

CHAMPION = "champion"
SHADOW = "shadow"


@dataclass(frozen=True)
class ServingModel:
    """What the scorer needs of a loaded model."""

    name: str
    version: str
    sha256: str
    feature_set: str
    feature_names: tuple[str, ...]
    thresholds: Thresholds
    booster: Any  # lightgbm.Booster

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def from_loaded(cls, loaded: loader.LoadedModel) -> ServingModel:
        manifest = loaded.manifest
        raw = manifest["thresholds"]
        thresholds = Thresholds(
            review=float(raw["review"]),
            block=float(raw["block"]),
            review_rate=float(raw.get("review_rate", math.nan)),
            block_rate=float(raw.get("block_rate", math.nan)),
        )
        return cls(
            name=loaded.version.name,
            version=loaded.version.version,
            sha256=loaded.sha256,
            feature_set=str(manifest["feature_set_fingerprint"]),
            feature_names=tuple(manifest["feature_names"]),
            thresholds=thresholds,
            booster=loaded.booster,
        )


Loader = Callable[[ModelVersion], ServingModel]


def load_serving(mv: ModelVersion) -> ServingModel:
    """Verify and load ``mv``; raises VerificationError (one line) if it must not serve."""
    loaded = loader.load(mv)
    try:
        return ServingModel.from_loaded(loaded)
    except (KeyError, TypeError, ValueError) as exc:
        raise loader.VerificationError(f"{loaded.label}: bad thresholds in manifest ({exc})") from None


class ModelWatch:
    """Holds the champion (and optional shadow) and swaps them when the registry changes."""

    def __init__(
        self,
        registry: Registry,
        ref: str,
        *,
        poll_s: float,
        metrics: ScorerMetrics,
        shadow: bool = False,
        load: Loader = load_serving,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.ref = ModelRef.parse(ref)
        self.poll_s = poll_s
        self.metrics = metrics
        self._load = load
        self._clock = clock
        self._shadow_ref = (
            ModelRef(self.ref.name, "challenger") if shadow and self.ref.selector == CHAMPION else None
        )
        self._champion: ServingModel | None = None
        self.shadow: ServingModel | None = None
        self._rejected: dict[str, str] = {}  # role -> version rejected (until the alias moves)
        self._next_check = 0.0

    @property
    def champion(self) -> ServingModel:
        if self._champion is None:
            raise RuntimeError("ModelWatch.start() was not called")
        return self._champion

    def start(self) -> ServingModel:
        """Load the champion; its errors (RegistryError subclasses) are fatal at start-up."""
        self._champion = self._load(self.registry.resolve(self.ref))
        self.metrics.set_model(CHAMPION, self._champion.name, self._champion.version, self._champion.sha256)
        log.info("serving %s (sha256 %s…)", self._champion.label, self._champion.sha256[:12])
        self._refresh_shadow()
        self._next_check = self._clock() + self.poll_s
        return self._champion

    def maybe_refresh(self) -> bool:
        """Check the registry if ``poll_s`` has passed; True if a model changed."""
        now = self._clock()
        if now < self._next_check:
            return False
        self._next_check = now + self.poll_s
        changed = self._refresh_champion()
        return self._refresh_shadow() or changed

    def _refresh_champion(self) -> bool:
        current = self.champion
        new = self._try_swap(CHAMPION, self.ref, current.version)
        if new is None:
            return False
        self._champion = new
        self.metrics.set_model(CHAMPION, new.name, new.version, new.sha256)
        log.info("now serving %s (was %s)", new.label, current.label)
        return True

    def _refresh_shadow(self) -> bool:
        if self._shadow_ref is None:
            return False
        current = self.shadow.version if self.shadow is not None else None
        try:
            mv = self.registry.resolve(self._shadow_ref)
        except RegistryError:
            if self.shadow is None:
                return False
            log.info("challenger alias cleared; shadow scoring of %s stops", self.shadow.label)
            self.shadow = None
            self.metrics.clear_model(SHADOW)
            return True
        new = self._try_swap(SHADOW, self._shadow_ref, current, resolved=mv)
        if new is None:
            return False
        self.shadow = new
        self.metrics.set_model(SHADOW, new.name, new.version, new.sha256)
        log.info("shadow scoring with %s", new.label)
        return True

    def _try_swap(
        self, role: str, ref: ModelRef, current: str | None, resolved: ModelVersion | None = None
    ) -> ServingModel | None:
        try:
            mv = resolved if resolved is not None else self.registry.resolve(ref)
        except (RegistryError, OSError, ValueError) as exc:
            log.warning("cannot resolve %s (%s); keeping the current model", ref, exc)
            return None
        if mv.version == current:
            self._rejected.pop(role, None)
            return None
        if self._rejected.get(role) == mv.version:
            return None
        try:
            new = self._load(mv)
        except (RegistryError, OSError) as exc:
            self._rejected[role] = mv.version
            self.metrics.model_reloads.labels("rejected").inc()
            log.error("rejected %s@%s for %s: %s; still serving %s", mv.name, mv.version, role, exc, current)
            return None
        self._rejected.pop(role, None)
        self.metrics.model_reloads.labels("loaded").inc()
        return new
