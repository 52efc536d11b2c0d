"""Typed settings for every command, from flags and ``FRAUDSTREAM_*`` environment variables.

Each command has one frozen settings class. A field ``foo_bar`` is set by the flag
``--foo-bar`` or the variable ``FRAUDSTREAM_FOO_BAR``; a flag beats the environment,
the environment beats the default. All classes live in this one module so that the
set of known variables is complete: a ``FRAUDSTREAM_*`` variable that no command knows
is refused as a typo, while a variable that belongs to another command is ignored.

Only ``main()`` functions call :func:`load`; everything below them receives settings.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

ENV_PREFIX = "FRAUDSTREAM_"


class ConfigError(Exception):
    """A bad flag, environment variable or config value. The message is one line."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --------------------------------------------------------------------------- mixins


class LoggingSettings(Settings):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")


class KafkaSettings(Settings):
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", min_length=1, description="Kafka bootstrap servers, host:port[,...]"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security.protocol"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="Kafka sasl.mechanism (with SASL_* protocols)"
    )
    kafka_sasl_username: str | None = Field(None, description="Kafka SASL username")
    kafka_sasl_password: SecretStr | None = Field(None, description="Kafka SASL password")
    kafka_ssl_ca_location: Path | None = Field(None, description="CA bundle file for Kafka TLS")
    kafka_timeout_s: float = Field(
        15.0, gt=0, le=600, description="how long admin calls wait for the broker, seconds"
    )
    topic_prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._-]*$",
        max_length=100,
        description="prefix for every topic name (keeps backtests off production topics)",
    )

    def kafka_client_config(self) -> dict[str, str]:
        """The librdkafka properties shared by producers, consumers and admin clients."""
        conf = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username is not None:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location is not None:
            conf["ssl.ca.location"] = str(self.kafka_ssl_ca_location)
        return conf

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class RedisSettings(Settings):
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL; redis:// or rediss:// (TLS), password allowed",
    )
    redis_namespace: str = Field(
        "fs",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="prefix of every Redis key this project writes",
    )

    def redis_url_redacted(self) -> str:
        return redact_url(self.redis_url.get_secret_value())


class RegistrySettings(Settings):
    registry: Path = Field(Path("models"), description="model registry directory")


class MetricsSettings(Settings):
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port (0 = do not serve)")


# --------------------------------------------------------------------------- per command


class StackSettings(LoggingSettings):
    stack_dir: Path = Field(
        Path(".stack"), description="directory holding the local stack's pids, ports, logs, data"
    )
    kafka_cache: Path = Field(
        Path.home() / ".cache" / "fraudstream" / "kafka",
        description="where the Kafka broker jars are cached (outside the repo)",
    )
    kafka_port: int = Field(9092, ge=0, le=65535, description="first broker port (0 = free port)")
    redis_port: int = Field(6379, ge=0, le=65535, description="redis-server port (0 = free port)")
    brokers: int = Field(1, ge=1, le=5, description="number of Kafka brokers (3 for fault tests)")
    kafka_heap: str = Field(
        "512m", pattern=r"^[0-9]+[mg]$", description="JVM heap per broker (-Xmx), e.g. 512m"
    )
    ready_timeout_s: float = Field(120.0, gt=0, description="how long `stack up` waits for readiness")


class TopicsSettings(KafkaSettings, LoggingSettings):
    partitions: int = Field(12, ge=1, le=1000, description="partitions of transactions and scores")
    aux_partitions: int = Field(
        3, ge=1, le=1000, description="partitions of labels, retrain and dead-letter topics"
    )
    replication_factor: int = Field(1, ge=1, le=5, description="replication factor of topics")
    min_insync_replicas: int = Field(1, ge=1, le=5, description="min.insync.replicas of topics")


class GenerateSettings(LoggingSettings):
    out: Path = Field(..., description="output directory for the data set")
    days: int = Field(60, ge=1, le=3650, description="days of history to generate")
    seed: int = Field(7, ge=0, description="random seed; same seed, byte-identical files")
    cards: int = Field(20_000, ge=10, le=10_000_000, description="number of cards")
    merchants: int = Field(2_000, ge=10, le=1_000_000, description="number of merchants")
    fraud_rate: float = Field(
        0.005, gt=0, lt=0.2, description="target overall share of fraudulent transactions"
    )
    start: str = Field("2026-01-01", description="first day of the data set (UTC), YYYY-MM-DD")


class TrainSettings(RegistrySettings, LoggingSettings):
    data: Path = Field(..., description="data set directory written by `fraudstream generate`")
    name: str = Field("fraud", pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="model name in the registry")
    promote: bool = Field(False, description="make the new model champion at once")
    seed: int = Field(7, ge=0, description="training seed")
    review_rate: float = Field(
        0.02, gt=0, lt=1, description="target share of traffic at or above the review threshold"
    )
    block_rate: float = Field(
        0.005, gt=0, lt=1, description="target share of traffic at or above the block threshold"
    )
    train_fraction: float = Field(
        0.6, gt=0, lt=1, description="share of the event-time range used for training"
    )
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of the event-time range for early stopping and thresholds"
    )
    imbalance: Literal["none", "scale_pos_weight", "is_unbalance"] = Field(
        "none", description="class-imbalance handling of LightGBM"
    )
    max_rounds: int = Field(
        2000, ge=1, description="most boosting rounds (early stopping usually ends sooner)"
    )


class ModelsSettings(RegistrySettings, LoggingSettings):
    pass


class ScorerSettings(KafkaSettings, RedisSettings, RegistrySettings, MetricsSettings, LoggingSettings):
    model: str = Field(
        "fraud@champion", min_length=3, description="model to serve, NAME@ALIAS or NAME@VERSION"
    )
    group_id: str = Field(
        "fraudstream-scorer", min_length=1, max_length=200, description="Kafka consumer group id"
    )
    delivery: Literal["exactly-once", "at-least-once"] = Field(
        "exactly-once", description="Kafka delivery guarantee for scores"
    )
    batch_max_records: int = Field(500, ge=1, le=100_000, description="records per micro-batch")
    txn_marker_ttl_s: int = Field(
        8 * 86400,
        ge=3600,
        description="how long Redis remembers a scored txn_id (its vector, for redelivery), seconds; "
        "memory is about 300 bytes x transactions in this window",
    )
    batch_max_ms: int = Field(
        50, ge=0, le=60_000, description="longest wait to fill a micro-batch, milliseconds"
    )
    max_amount: float = Field(
        1_000_000.0, gt=0, description="largest valid amount; larger ones are dead-lettered"
    )
    max_future_skew_s: float = Field(
        300.0, ge=0, description="how far in the future an event time may be, seconds"
    )
    max_event_age_days: float = Field(
        400.0, gt=0, description="how old an event time may be, days (replays of history need it large)"
    )
    poison_max_share: float = Field(
        0.5, gt=0, le=1, description="stop when this share of the last 1000 records is poison"
    )
    poison_max_consecutive: int = Field(
        1000, ge=1, description="stop after this many poison records in a row"
    )
    model_poll_s: float = Field(
        5.0, gt=0, description="how often to check the registry alias for a new model, seconds"
    )
    shadow: bool = Field(True, description="also score with the challenger, if set (shadow scores)")
    max_poll_interval_ms: int = Field(
        300_000, ge=10_000, description="Kafka max.poll.interval.ms of the consumer"
    )
    session_timeout_ms: int = Field(
        45_000,
        ge=6_000,
        description="Kafka session.timeout.ms: how fast a dead scorer's partitions move (capped at "
        "max_poll_interval_ms)",
    )
    transactional_id_prefix: str = Field(
        "fraudstream-scorer", min_length=1, description="prefix of the Kafka transactional.id"
    )


class MonitorPolicySettings(Settings):
    """The monitor's decision knobs, shared by ``monitor`` and ``backtest`` (same flags,
    same variables), so a monitor and a backtest configured alike decide alike."""

    window_s: int = Field(
        86_400, ge=60, description="PSI tumbling window, seconds of event time (a day evens out daily cycles)"
    )
    window_min_records: int = Field(
        500, ge=1, description="a window with fewer records is not evaluated for drift"
    )
    allowed_lateness_s: int = Field(
        600, ge=0, description="how long after its end a window accepts late records, seconds"
    )
    drift_consecutive: int = Field(
        3, ge=1, description="windows in a row above threshold before drift is declared"
    )
    drift_alpha: float = Field(
        0.01, gt=0, lt=1, description="family-wise false-alarm rate of the PSI test (Bonferroni)"
    )
    drift_min_psi: float = Field(
        0.1, ge=0, description="PSI floor: drift needs PSI above max(this, the size-aware threshold)"
    )
    drift_warmup_s: int = Field(
        7 * 86400,
        ge=0,
        description="windows starting this soon after the first score never count as drift "
        "(the features' history is still filling), seconds of event time",
    )
    label_wait_max_s: int | None = Field(
        None,
        ge=0,
        description="longest event-time wait for labels behind the scores before deciding without "
        "them; unset = wait as long as it takes (decisions equal a backtest's)",
    )
    label_horizon_days: int = Field(
        90, ge=1, description="how long scored transactions are kept for the label join, days"
    )
    recall_min_maturity: float = Field(
        0.8, gt=0, le=1, description="cohorts with label maturity below this are provisional"
    )
    recall_margin: float = Field(
        0.1, ge=0, lt=1, description="retrain when mature recall < baseline - this margin"
    )
    retrain_cooldown_s: int = Field(
        7 * 86400, ge=0, description="after a retrain event, no other for this long (event time)"
    )


class MonitorSettings(
    KafkaSettings, RegistrySettings, MetricsSettings, LoggingSettings, MonitorPolicySettings
):
    model_name: str = Field(
        "fraud", pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="model whose champion is monitored"
    )
    app_id: str = Field(
        "fraudstream-monitor", min_length=1, description="faust app id (consumer group, table names)"
    )
    data_dir: Path = Field(
        Path(".monitor"), description="faust local state directory (tables' RocksDB/memory cache)"
    )


class TrainerServiceSettings(KafkaSettings, RegistrySettings, MetricsSettings, LoggingSettings):
    name: str = Field("fraud", pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="model name in the registry")
    group_id: str = Field("fraudstream-trainer", min_length=1, description="Kafka consumer group id")
    train_window_days: int = Field(30, ge=1, description="days of history a retrain uses")
    auto_promote_margin: float = Field(
        0.02, ge=0, description="promote automatically when the challenger beats the champion by this"
    )
    holdout_days: int = Field(7, ge=1, description="days in the matured holdout")
    holdout_min_maturity: float = Field(
        0.8, gt=0, le=1, description="label maturity a holdout day needs, as the monitor computes it"
    )
    min_holdout_frauds: int = Field(
        20, ge=1, description="labelled frauds the holdout needs for an automatic verdict"
    )
    feature_warmup_days: int = Field(
        30, ge=0, description="days read before the first trained or evaluated row, to warm card history"
    )
    max_job_s: float = Field(
        3600.0, ge=60, description="longest one retrain may take (Kafka max.poll.interval.ms), seconds"
    )
    seek_slack_s: float = Field(
        86_400.0, ge=0, description="how much earlier than its event time a record may be timestamped"
    )


class ReplaySettings(KafkaSettings, LoggingSettings):
    data: Path = Field(..., description="data set directory written by `fraudstream generate`")
    speed: float = Field(
        0.0, ge=0, description="speed factor: 1 = real time, 60 = a minute a second, 0 = as fast as possible"
    )
    start: str | None = Field(None, description="first event time to replay, ISO-8601 UTC (default: all)")
    end: str | None = Field(None, description="event time to stop before, ISO-8601 UTC (default: all)")
    labels: bool = Field(True, description="also replay labels at their label time")


class BacktestSettings(RegistrySettings, LoggingSettings, MonitorPolicySettings):
    data: Path = Field(..., description="data set directory written by `fraudstream generate`")
    report: Path = Field(Path("reports/backtest.html"), description="HTML report path (JSON beside it)")


class DemoSettings(StackSettings):
    workdir: Path = Field(Path("demo"), description="where the demo writes its data, models and report")
    days: int = Field(60, ge=7, le=365, description="days of synthetic history")
    seed: int = Field(7, ge=0, description="random seed of the demo data")


def all_settings_classes() -> list[type[Settings]]:
    """Every settings class in this module; used to tell typos from other commands' keys."""
    out: list[type[Settings]] = []
    pending: list[type[Settings]] = [Settings]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in out:
                out.append(sub)
                pending.append(sub)
    return out


# --------------------------------------------------------------------------- loading

S = TypeVar("S", bound=Settings)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def known_env_names() -> set[str]:
    return {env_name(f) for cls in all_settings_classes() for f in cls.model_fields}


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _choices(annotation: Any) -> tuple[Any, ...] | None:
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in get_args(annotation):
            if get_origin(arg) is Literal:
                return get_args(arg)
    return None


def add_flags(parser: argparse.ArgumentParser, model: type[Settings], *, skip: Iterable[str] = ()) -> None:
    """Add one ``--flag`` per settings field; each says its variable and default in --help."""
    skipped = set(skip)
    for name, info in model.model_fields.items():
        if name in skipped:
            continue
        default = info.get_default()
        if isinstance(default, SecretStr):
            shown = "(secret)"
        elif info.is_required():
            shown = "required"
        elif isinstance(default, Path):
            shown = f"default {str(default)!r}"
        else:
            shown = f"default {default!r}" if default not in ("", None) else "default unset"
        help_text = f"{info.description or name} [env {env_name(name)}; {shown}]"
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if _is_bool(info.annotation):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            choices = _choices(info.annotation)
            if choices:
                kwargs["metavar"] = "{" + ",".join(str(c) for c in choices) + "}"
            else:
                kwargs["metavar"] = name.upper()
        parser.add_argument(flag_name(name), **kwargs)


def check_unknown_env(environ: Mapping[str, str]) -> None:
    known = known_env_names()
    unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]} in the environment; unset it or fix the name "
            f"(see `fraudstream <command> --help` for the variables each command reads)"
        )


def load(
    model: type[S],
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> S:
    """Build ``model`` from flags (``args``) over environment over defaults.

    Raises :class:`ConfigError` with a one-line message naming the flag, the variable
    and what a valid value looks like.
    """
    env = os.environ if environ is None else environ
    check_unknown_env(env)
    flags: Mapping[str, Any] = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in model.model_fields:
        if flags.get(name) is not None:
            values[name] = flags[name]
            origin[name] = flag_name(name)
        elif env_name(name) in env:
            raw = env[env_name(name)]
            values[name] = raw
            origin[name] = env_name(name)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_one_line(model, exc, values, origin)) from None


def _one_line(
    model: type[Settings], exc: ValidationError, values: Mapping[str, Any], origin: Mapping[str, str]
) -> str:
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else "?"
    info = model.model_fields.get(field)
    where = origin.get(field, f"{flag_name(field)} / {env_name(field)}")
    hint = info.description if info and info.description else ""
    if err["type"] == "missing":
        return f"missing {flag_name(field)} (or {env_name(field)}): {hint}"
    shown = values.get(field)
    if isinstance(shown, SecretStr) or (info and info.annotation in (SecretStr, SecretStr | None)):
        shown = "(secret)"
    msg = str(err["msg"]).rstrip(".")
    return f"invalid {where}={shown!r}: {msg}; set it to a valid value ({hint})"


def redact_url(url: str) -> str:
    """Hide a password in a URL so it can be logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))
