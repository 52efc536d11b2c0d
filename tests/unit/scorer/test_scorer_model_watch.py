from __future__ import annotations

import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.registry import ModelRefError, Registry, VerificationError
from services.scorer.metrics import ScorerMetrics
from services.scorer.model_watch import ModelWatch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.helpers_models import register_model


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def model_info(metrics: ScorerMetrics, role: str) -> list[tuple[str, str]]:
    out = []
    for metric in metrics.model_info.collect():
        for s in metric.samples:
            if s.labels["role"] == role and s.value == 1:
                out.append((s.labels["version"], s.labels["sha256"]))
    return out


def watch(root: Path, clock: FakeClock, *, shadow: bool = False) -> tuple[ModelWatch, ScorerMetrics]:
    metrics = ScorerMetrics(CollectorRegistry())
    w = ModelWatch(Registry(root), "fraud@champion", poll_s=5.0, metrics=metrics, shadow=shadow, clock=clock)
    return w, metrics


def test_start_serves_the_champion_and_exports_its_identity(tmp_path: Path) -> None:
    mv = register_model(tmp_path)
    w, metrics = watch(tmp_path, FakeClock())
    served = w.start()
    assert (served.name, served.version) == ("fraud", mv.version)
    assert model_info(metrics, "champion") == [(mv.version, served.sha256)]
    assert w.shadow is None


def test_start_refuses_a_missing_or_unverifiable_model(tmp_path: Path) -> None:
    w, _ = watch(tmp_path, FakeClock())
    with pytest.raises(ModelRefError):
        w.start()
    register_model(tmp_path, feature_set_fingerprint="0" * 64)
    with pytest.raises(VerificationError, match="fingerprint"):
        watch(tmp_path, FakeClock())[0].start()


def test_hot_swap_after_poll_interval_only(tmp_path: Path) -> None:
    register_model(tmp_path)
    clock = FakeClock()
    w, metrics = watch(tmp_path, clock)
    w.start()
    v2 = register_model(tmp_path, seed=1, promote=True)
    clock.now += 4.9
    assert w.maybe_refresh() is False and w.champion.version == "1"
    clock.now += 0.2
    assert w.maybe_refresh() is True and w.champion.version == v2.version
    assert model_info(metrics, "champion") == [(v2.version, w.champion.sha256)]
    assert (
        metrics.registry.get_sample_value("fraudstream_scorer_model_reloads_total", {"outcome": "loaded"})
        == 1
    )


def test_bad_new_champion_is_rejected_once_and_old_keeps_serving(tmp_path: Path) -> None:
    register_model(tmp_path)
    clock = FakeClock()
    w, metrics = watch(tmp_path, clock)
    old = w.start()
    bad = register_model(tmp_path, seed=2, promote=True)
    bad.model_path.write_text(bad.model_path.read_text() + "\n# tampered\n")
    for _ in range(3):
        clock.now += 6
        assert w.maybe_refresh() is False
    assert w.champion is old
    rejected = {"outcome": "rejected"}
    assert metrics.registry.get_sample_value("fraudstream_scorer_model_reloads_total", rejected) == 1
    # A good version promoted later is picked up.
    good = register_model(tmp_path, seed=3, promote=True)
    clock.now += 6
    assert w.maybe_refresh() is True and w.champion.version == good.version


def test_shadow_follows_the_challenger_alias(tmp_path: Path) -> None:
    register_model(tmp_path)
    clock = FakeClock()
    w, metrics = watch(tmp_path, clock, shadow=True)
    w.start()
    assert w.shadow is None
    challenger = register_model(tmp_path, seed=4)  # second version: staged as challenger
    clock.now += 6
    assert w.maybe_refresh() is True
    assert w.shadow is not None and w.shadow.version == challenger.version
    assert model_info(metrics, "shadow") == [(challenger.version, w.shadow.sha256)]
    Registry(tmp_path).promote(f"fraud@{challenger.version}")  # clears the challenger alias
    clock.now += 6
    assert w.maybe_refresh() is True
    assert w.shadow is None and w.champion.version == challenger.version
    assert model_info(metrics, "shadow") == []


def test_no_shadow_when_disabled_or_pinned(tmp_path: Path) -> None:
    register_model(tmp_path)
    register_model(tmp_path, seed=5)
    w, _ = watch(tmp_path, FakeClock(), shadow=False)
    w.start()
    assert w.shadow is None
    pinned = ModelWatch(
        Registry(tmp_path), "fraud@1", poll_s=5, metrics=ScorerMetrics(CollectorRegistry()), shadow=True
    )
    pinned.start()
    assert pinned.shadow is None
