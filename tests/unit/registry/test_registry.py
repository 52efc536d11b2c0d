from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest

from services.core import features
from services.registry import ModelRef, ModelRefError, Registry, RegistryError, VerificationError, loader
from services.registry import cli as models_cli


class StepClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def tiny_model_text(seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, len(features.FEATURE_NAMES)))
    y = (x[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": seed, "deterministic": True}
    booster = lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=5)
    return str(booster.model_to_string())


def manifest(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "feature_names": list(features.FEATURE_NAMES),
        "feature_set_fingerprint": features.FEATURE_SET_FINGERPRINT,
        "thresholds": {"review": 0.5, "block": 0.9},
        "psi_reference": {},
        "metrics": {"test": {"roc_auc": 0.9}},
        "params": {},
        "lightgbm_version": lightgbm.__version__,
    }
    base.update(overrides)
    return base


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models", clock=StepClock())


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = models_cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_first_model_is_champion_later_ones_are_challengers(registry: Registry) -> None:
    v1 = registry.register("fraud", tiny_model_text(), manifest())
    v2 = registry.register("fraud", tiny_model_text(1), manifest())
    assert (v1.version, v1.aliases, v1.status) == ("1", ("champion",), "deployed")
    assert (v2.version, v2.aliases, v2.status) == ("2", ("challenger",), "staged")
    assert registry.resolve("fraud@champion").version == "1"
    assert registry.resolve("fraud@challenger").version == "2"
    assert registry.resolve("fraud").version == "1"


def test_promote_retires_old_champion_and_rollback_restores_it(registry: Registry) -> None:
    registry.register("fraud", tiny_model_text(), manifest())
    registry.register("fraud", tiny_model_text(1), manifest())
    promoted = registry.promote("fraud@challenger")
    assert promoted.aliases == ("champion",)
    assert registry.resolve("fraud@1").status == "retired"
    assert registry.aliases("fraud") == {"champion": "2", "challenger": None}
    registry.promote("fraud@1")
    assert registry.resolve("fraud@champion").version == "1"
    assert registry.resolve("fraud@2").status == "retired"
    actions = [h["action"] for h in registry.index("fraud")["history"]]
    assert actions == ["registered", "promoted", "registered", "challenger", "promoted", "promoted"]


def test_register_with_promote_flag(registry: Registry) -> None:
    registry.register("fraud", tiny_model_text(), manifest())
    v2 = registry.register("fraud", tiny_model_text(1), manifest(), promote=True)
    assert v2.aliases == ("champion",)


def test_the_champion_cannot_be_retired(registry: Registry) -> None:
    registry.register("fraud", tiny_model_text(), manifest())
    with pytest.raises(RegistryError, match="promote another version first"):
        registry.retire("fraud@1")


def test_manifest_identity_fields_and_sha(registry: Registry) -> None:
    mv = registry.register("fraud", tiny_model_text(), manifest())
    m = mv.manifest()
    assert m["name"] == "fraud" and m["version"] == "1"
    assert m["created_at"] == "2026-01-01T00:00:01.000+00:00"
    loaded = loader.load(mv)
    assert loaded.sha256 == m["model_sha256"]
    assert loaded.booster.num_feature() == len(features.FEATURE_NAMES)


@pytest.mark.parametrize("text", ["fraud@", "Fraud@1", "fraud@best", "@1", "fraud@1@2"])
def test_bad_refs_are_refused(text: str) -> None:
    with pytest.raises(ModelRefError):
        ModelRef.parse(text)


def test_unknown_version_and_unset_alias(registry: Registry) -> None:
    registry.register("fraud", tiny_model_text(), manifest())
    with pytest.raises(ModelRefError, match="does not exist"):
        registry.resolve("fraud@9")
    with pytest.raises(ModelRefError, match="is not set"):
        registry.resolve("fraud@challenger")
    with pytest.raises(ModelRefError, match="no model named"):
        registry.resolve("other@champion")


# ------------------------------------------------------------------ refusals


def test_tampered_model_is_refused_by_loader_and_cli(registry: Registry) -> None:
    mv = registry.register("fraud", tiny_model_text(), manifest())
    with mv.model_path.open("a") as fh:
        fh.write("\n")
    with pytest.raises(VerificationError, match="sha256"):
        loader.load(mv)
    code, _, err = run_cli("--registry", str(registry.root), "verify", "fraud@1")
    assert code == 1
    assert "tampered" in err and err.count("\n") == 1


def test_wrong_feature_fingerprint_is_refused(registry: Registry) -> None:
    mv = registry.register("fraud", tiny_model_text(), manifest(feature_set_fingerprint="0" * 64))
    with pytest.raises(VerificationError, match="feature fingerprint"):
        loader.load(mv)
    code, _, err = run_cli("--registry", str(registry.root), "verify", "fraud@champion")
    assert code == 1
    assert "retrain" in err and err.count("\n") == 1


def test_missing_manifest_is_refused(registry: Registry) -> None:
    mv = registry.register("fraud", tiny_model_text(), manifest())
    mv.manifest_path.unlink()
    with pytest.raises(VerificationError, match="manifest.json is missing"):
        loader.load(mv)
    code, _, err = run_cli("--registry", str(registry.root), "verify", "fraud@1")
    assert code == 1
    assert "missing" in err and err.count("\n") == 1


def test_promote_refuses_a_model_that_does_not_verify(registry: Registry) -> None:
    registry.register("fraud", tiny_model_text(), manifest())
    bad = registry.register("fraud", tiny_model_text(1), manifest())
    bad.model_path.write_text("garbage")
    code, _, err = run_cli("--registry", str(registry.root), "promote", "fraud@2")
    assert code == 1 and "sha256" in err
    assert registry.resolve("fraud@champion").version == "1"


def test_cli_list_show_verify(registry: Registry) -> None:
    registry.register("fraud", tiny_model_text(), manifest())
    code, out, _ = run_cli("--registry", str(registry.root), "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert rows == [
        {
            "name": "fraud",
            "version": "1",
            "status": "deployed",
            "aliases": ["champion"],
            "created_at": "2026-01-01T00:00:01.000+00:00",
        }
    ]
    code, out, _ = run_cli("--registry", str(registry.root), "show", "fraud@champion", "--json")
    assert code == 0 and json.loads(out)["version"] == "1"
    code, out, _ = run_cli("--registry", str(registry.root), "verify", "fraud@champion")
    assert code == 0 and "ok" in out


def test_crash_leftover_version_folder_is_skipped_and_cleaned(registry: Registry) -> None:
    registry.register("fraud", tiny_model_text(), manifest())
    (registry.root / "fraud" / "2").mkdir()  # a register that crashed before indexing
    v = registry.register("fraud", tiny_model_text(1), manifest())
    assert v.version == "3"
    assert registry.delete_unindexed("fraud") == ["2"]
