"""The model registry: versioned LightGBM text models with manifests, aliases and status.

Layout (``FRAUDSTREAM_REGISTRY``, default ``models/``)::

    <registry>/<name>/index.json              aliases, status and history (atomic rewrite)
    <registry>/<name>/<version>/model.txt     LightGBM text format (Booster.save_model)
    <registry>/<name>/<version>/manifest.json everything needed to trust and serve it

There is no pickle path: a model is text plus JSON, verified by sha256 on every load.
"""

from services.registry.errors import ModelRefError, RegistryError, VerificationError
from services.registry.store import ModelRef, ModelVersion, Registry

__all__ = [
    "ModelRef",
    "ModelRefError",
    "ModelVersion",
    "Registry",
    "RegistryError",
    "VerificationError",
]
