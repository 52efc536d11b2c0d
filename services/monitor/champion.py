"""The monitored model: the champion's frozen bins, recall baseline and label-delay prior."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from services.core.drift import Reference
from services.core.recall import Baseline, DelayPrior, baseline_from_manifest
from services.registry import Registry, RegistryError, loader
from services.settings import ConfigError

log = logging.getLogger(__name__)

KIND_OF_METRIC = {"recall": "flagged", "top_decile_recall": "top_decile"}


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    reference: Reference
    baseline: Baseline | None
    prior: DelayPrior

    @property
    def n_features(self) -> int:
        return self.reference.n_features

    @property
    def baseline_kind(self) -> str | None:
        return KIND_OF_METRIC[self.baseline.metric] if self.baseline else None


def delay_prior(manifest: Mapping[str, Any]) -> DelayPrior:
    """The chargeback delay of the training data's label policy if the manifest has it,
    else the default prior (lognormal, median 21 days, sigma 0.75)."""
    for path in (("label_policy", "chargeback_delay"), ("dataset", "label_policy", "chargeback_delay")):
        node: Any = manifest
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and "median_days" in node and "sigma" in node:
            return DelayPrior(median_days=float(node["median_days"]), sigma=float(node["sigma"]))
    return DelayPrior()


def champion_from_manifest(manifest: Mapping[str, Any]) -> Champion:
    try:
        reference = Reference.from_manifest(manifest["psi_reference"], list(manifest["feature_names"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"model {manifest.get('name')}@{manifest.get('version')} has no usable psi_reference "
            f"({exc}); retrain it with this code version"
        ) from None
    split = manifest.get("split") or {}
    fitted_until = (split.get("validation") or {}).get("end_ms")
    if fitted_until is not None:
        reference = replace(reference, fitted_until_ms=int(fitted_until))
    return Champion(
        name=str(manifest["name"]),
        version=str(manifest["version"]),
        reference=reference,
        baseline=baseline_from_manifest(manifest.get("metrics") or {}),
        prior=delay_prior(manifest),
    )


def load_champion(registry_root: Path, model_name: str) -> Champion:
    """Resolve ``<model_name>@champion``, verify it and build what the monitor needs.

    Raises :class:`ConfigError` (one line) when there is no usable champion.
    """
    try:
        mv = Registry(registry_root).resolve(f"{model_name}@champion")
        manifest = loader.verify(mv)
    except RegistryError as exc:
        raise ConfigError(str(exc)) from None
    champion = champion_from_manifest(manifest)
    log.info("monitoring %s@%s (%d features)", champion.name, champion.version, champion.n_features)
    return champion
