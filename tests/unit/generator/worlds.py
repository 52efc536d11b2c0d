"""Configurations of small worlds for the generator tests."""

from __future__ import annotations

from services.generator.config import GeneratorConfig, parse_start

START_MS = parse_start("2026-01-01")


def small_config(**overrides: object) -> GeneratorConfig:
    values: dict[str, object] = {
        "seed": 11,
        "days": 40,
        "start_ms": START_MS,
        "cards": 3_000,
        "merchants": 400,
        "fraud_rate": 0.005,
    }
    values.update(overrides)
    return GeneratorConfig(**values)  # type: ignore[arg-type]
