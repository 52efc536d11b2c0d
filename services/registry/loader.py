"""Verify and load registered models. Nothing is served that fails a check.

Checks, in order: the manifest exists and parses, it has every required key,
``model.txt`` exists and its sha256 matches the manifest, the feature names and
feature-set fingerprint match the running feature code, and LightGBM parses the text
with the expected number of features. Each failure is a one-line VerificationError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from services.registry.errors import VerificationError
from services.registry.store import MANIFEST_FILE, MODEL_FILE, ModelVersion, sha256_file

REQUIRED_KEYS = (
    "name",
    "version",
    "created_at",
    "model_sha256",
    "feature_names",
    "feature_set_fingerprint",
    "thresholds",
    "psi_reference",
    "metrics",
    "params",
    "lightgbm_version",
)


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion
    manifest: dict[str, Any]
    booster: Any  # lightgbm.Booster; typed loosely so importing this module stays cheap

    @property
    def label(self) -> str:
        return f"{self.version.name}@{self.version.version}"

    @property
    def sha256(self) -> str:
        return str(self.manifest["model_sha256"])


def read_manifest(mv: ModelVersion) -> dict[str, Any]:
    where = f"{mv.name}@{mv.version}"
    if not mv.manifest_path.is_file():
        raise VerificationError(f"{where}: {MANIFEST_FILE} is missing; re-register the model")
    try:
        with mv.manifest_path.open() as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise VerificationError(f"{where}: {MANIFEST_FILE} is unreadable ({exc})") from None
    if not isinstance(manifest, dict):
        raise VerificationError(f"{where}: {MANIFEST_FILE} is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise VerificationError(f"{where}: {MANIFEST_FILE} lacks {', '.join(missing)}")
    return manifest


def check_integrity(mv: ModelVersion, manifest: dict[str, Any]) -> None:
    where = f"{mv.name}@{mv.version}"
    if not mv.model_path.is_file():
        raise VerificationError(f"{where}: {MODEL_FILE} is missing")
    actual = sha256_file(mv.model_path)
    if actual != manifest["model_sha256"]:
        raise VerificationError(
            f"{where}: {MODEL_FILE} sha256 {actual[:12]}… does not match the manifest's "
            f"{str(manifest['model_sha256'])[:12]}… (tampered or corrupted); restore it or retrain"
        )


def check_features(mv: ModelVersion, manifest: dict[str, Any]) -> None:
    from services.core.features import FEATURE_NAMES, FEATURE_SET_FINGERPRINT

    where = f"{mv.name}@{mv.version}"
    if manifest["feature_set_fingerprint"] != FEATURE_SET_FINGERPRINT:
        raise VerificationError(
            f"{where}: feature fingerprint {str(manifest['feature_set_fingerprint'])[:12]}… differs "
            f"from the running code's {FEATURE_SET_FINGERPRINT[:12]}…; "
            f"retrain the model with this code version"
        )
    if tuple(manifest["feature_names"]) != tuple(FEATURE_NAMES):
        raise VerificationError(
            f"{where}: feature names differ from the running code; retrain with this code version"
        )


def parse_booster(mv: ModelVersion, manifest: dict[str, Any]) -> Any:
    import lightgbm

    where = f"{mv.name}@{mv.version}"
    try:
        booster = lightgbm.Booster(model_str=mv.model_path.read_text())
    except Exception as exc:  # LightGBM raises its own error types for bad text
        raise VerificationError(f"{where}: LightGBM cannot parse {MODEL_FILE} ({exc})") from None
    if booster.num_feature() != len(manifest["feature_names"]):
        raise VerificationError(
            f"{where}: model expects {booster.num_feature()} features, "
            f"manifest lists {len(manifest['feature_names'])}"
        )
    return booster


def verify(mv: ModelVersion) -> dict[str, Any]:
    """Every check short of building the booster; returns the manifest."""
    manifest = read_manifest(mv)
    check_integrity(mv, manifest)
    check_features(mv, manifest)
    return manifest


def load(mv: ModelVersion) -> LoadedModel:
    manifest = verify(mv)
    return LoadedModel(version=mv, manifest=manifest, booster=parse_booster(mv, manifest))
