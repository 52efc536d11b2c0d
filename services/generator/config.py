"""What to generate: the pure, validated configuration of one generator run.

The CLI builds a :class:`GeneratorConfig` from ``GenerateSettings`` plus the generator's
own flags (``--patterns``, ``--drift NAME@DAY``); parsing errors are one-line
:class:`ValueError` messages the CLI turns into ``ConfigError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

GENERATOR_VERSION = "1"

# fraud patterns that can be switched on and off, with their share of fraud transactions
PATTERN_SHARES: dict[str, float] = {
    "card_testing": 0.30,
    "ato": 0.30,
    "compromised_merchant": 0.20,
    "opportunistic": 0.20,
}
PATTERNS: tuple[str, ...] = tuple(PATTERN_SHARES)
# patterns that only appear through drift scenarios
DRIFT_PATTERNS: tuple[str, ...] = ("low_and_slow",)

DRIFT_SCENARIOS: dict[str, str] = {
    "amount_inflation": "amounts in a few MCCs multiplied by 1.5-3 from the onset",
    "new_pattern": "low-and-slow fraud at normal amounts in high-risk e-commerce from the onset",
    "merchant_mix": "spend shifts toward e-commerce and riskier merchants from the onset",
}


@dataclass(frozen=True)
class DriftSpec:
    name: str
    onset_day: int


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int
    days: int
    start_ms: int
    cards: int
    merchants: int
    fraud_rate: float
    patterns: tuple[str, ...] = PATTERNS
    drift: tuple[DriftSpec, ...] = ()

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * 86_400_000

    def drift_onset(self, name: str) -> int | None:
        """Onset day of drift scenario ``name``, or None when it is not enabled."""
        for spec in self.drift:
            if spec.name == name:
                return spec.onset_day
        return None

    def onset_ms(self, day: int) -> int:
        return self.start_ms + day * 86_400_000


def parse_start(text: str) -> int:
    """``YYYY-MM-DD`` -> epoch ms of that day's midnight UTC."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid start {text!r}: expected a date like 2026-01-01") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def parse_patterns(text: str | None) -> tuple[str, ...]:
    """``card_testing,ato`` -> the enabled patterns in canonical order; None -> all."""
    if text is None:
        return PATTERNS
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--patterns is empty; choose from {','.join(PATTERNS)}")
    unknown = [n for n in names if n not in PATTERN_SHARES]
    if unknown:
        raise ValueError(
            f"unknown fraud pattern {unknown[0]!r} in --patterns; choose from {','.join(PATTERNS)}"
        )
    return tuple(p for p in PATTERNS if p in names)


def parse_drift(items: list[str] | None, days: int) -> tuple[DriftSpec, ...]:
    """``["amount_inflation@30", ...]`` -> specs sorted by onset; one-line errors."""
    specs: list[DriftSpec] = []
    if items and days < 2:
        raise ValueError("--drift needs a data set of at least 2 days (onset day >= 1)")
    for item in items or []:
        name, sep, day_text = item.partition("@")
        if not sep:
            raise ValueError(f"invalid --drift {item!r}: expected NAME@DAY, e.g. merchant_mix@30")
        if name not in DRIFT_SCENARIOS:
            raise ValueError(
                f"unknown drift scenario {name!r} in --drift {item!r}; "
                f"choose from {','.join(DRIFT_SCENARIOS)}"
            )
        try:
            day = int(day_text)
        except ValueError:
            raise ValueError(f"invalid --drift {item!r}: DAY must be a whole number of days") from None
        if not 1 <= day < days:
            raise ValueError(
                f"invalid --drift {item!r}: onset day must be between 1 and {days - 1} "
                f"(the data set has {days} days)"
            )
        if any(s.name == name for s in specs):
            raise ValueError(f"drift scenario {name!r} given twice in --drift")
        specs.append(DriftSpec(name, day))
    return tuple(sorted(specs, key=lambda s: (s.onset_day, s.name)))
