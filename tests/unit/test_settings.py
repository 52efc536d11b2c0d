from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import pytest

from services import cli
from services.settings import (
    ConfigError,
    ScorerSettings,
    TopicsSettings,
    TrainSettings,
    add_flags,
    known_env_names,
    load,
    redact_url,
)


def parse(model: type, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flags(parser, model)
    return parser.parse_args(argv)


def test_flag_beats_environment_beats_default() -> None:
    env = {"FRAUDSTREAM_PARTITIONS": "6", "FRAUDSTREAM_KAFKA_BOOTSTRAP": "h:1"}
    s = load(TopicsSettings, parse(TopicsSettings, ["--partitions", "4"]), env)
    assert s.partitions == 4
    assert s.kafka_bootstrap == "h:1"
    assert s.replication_factor == 1


def test_unknown_variable_is_refused_with_one_line() -> None:
    with pytest.raises(ConfigError) as exc:
        load(TopicsSettings, {}, {"FRAUDSTREAM_PARTITONS": "3"})
    assert "FRAUDSTREAM_PARTITONS" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_another_commands_variable_is_ignored() -> None:
    s = load(TopicsSettings, {}, {"FRAUDSTREAM_BATCH_MAX_RECORDS": "10"})
    assert s.partitions == 12
    assert "FRAUDSTREAM_BATCH_MAX_RECORDS" in known_env_names()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"FRAUDSTREAM_PARTITIONS": "abc"}, "FRAUDSTREAM_PARTITIONS='abc'"),
        ({"FRAUDSTREAM_PARTITIONS": "0"}, "greater than or equal to 1"),
        ({"FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SASL_SSL"),
        ({"FRAUDSTREAM_TOPIC_PREFIX": "bad prefix!"}, "FRAUDSTREAM_TOPIC_PREFIX"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(TopicsSettings, {}, env)
    message = str(exc.value)
    assert needle in message
    assert "\n" not in message


def test_missing_required_value_names_flag_and_variable() -> None:
    with pytest.raises(ConfigError, match=r"missing --data \(or FRAUDSTREAM_DATA\)"):
        load(TrainSettings, {}, {})


def test_secrets_never_appear_in_errors_or_repr() -> None:
    env = {"FRAUDSTREAM_KAFKA_SASL_PASSWORD": "hunter2", "FRAUDSTREAM_REDIS_URL": "redis://:pw@h:1/0"}
    s = load(ScorerSettings, {}, env)
    assert "hunter2" not in repr(s)
    assert "pw@" not in repr(s)
    assert s.kafka_client_config()["sasl.password"] == "hunter2"
    assert s.redis_url_redacted() == "redis://:***@h:1/0"


def test_kafka_security_passes_through() -> None:
    env = {
        "FRAUDSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FRAUDSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "FRAUDSTREAM_KAFKA_SASL_USERNAME": "svc",
        "FRAUDSTREAM_KAFKA_SASL_PASSWORD": "s3cret",
        "FRAUDSTREAM_KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
    }
    conf = load(ScorerSettings, {}, env).kafka_client_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "svc"
    assert conf["ssl.ca.location"] == str(Path("/etc/ca.pem"))


def test_redact_url_without_password_is_unchanged() -> None:
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert redact_url("rediss://user:pw@h:6380/1") == "rediss://user:***@h:6380/1"


def test_cli_lists_commands_and_refuses_unknown_ones() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["--help"]) == 0
    assert "stack" in out.getvalue()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["nope"]) == 2
    assert err.getvalue().count("\n") == 1


def test_monitor_and_backtest_share_the_policy_settings() -> None:
    from services.core.drift import FEATURE_HISTORY_MS
    from services.settings import BacktestSettings, MonitorPolicySettings, MonitorSettings

    policy = set(MonitorPolicySettings.model_fields)
    assert policy <= set(MonitorSettings.model_fields) and policy <= set(BacktestSettings.model_fields)
    cfg = load(BacktestSettings, {"data": "d", "label_wait_max_s": "3600"}, environ={})
    assert cfg.label_wait_max_s == 3600 and cfg.drift_warmup_s * 1000 == FEATURE_HISTORY_MS
    env = {"FRAUDSTREAM_DRIFT_WARMUP_S": "0"}
    assert load(MonitorSettings, {}, environ=env).drift_warmup_s == 0
    with pytest.raises(ConfigError, match="--label-wait-max-s"):
        load(BacktestSettings, {"data": "d", "label_wait_max_s": "-1"}, environ={})
