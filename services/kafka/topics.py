"""``fraudstream topics create | list``: the project's Kafka topics.

``create`` is idempotent: topics that exist are reported and left alone, the others are
created with the configured partitions, replication factor and ``min.insync.replicas``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services import settings
from services.core import topics as names
from services.kafka.admin import (
    KafkaUnavailable,
    TopicError,
    TopicSpec,
    TopicState,
    describe_topics,
    ensure_topics,
)
from services.kafka.config import admin
from services.runtime import configure_logging, run_command
from services.settings import ConfigError, TopicsSettings

PROG = "fraudstream topics"
EXIT_FAILED = 1
# How long one broker request may take before the command gives up.
DEAD_LETTER_RETENTION_MS = 30 * 24 * 3600 * 1000  # time to look into failures

DESCRIPTION = f"""\
Create or list the project's Kafka topics: {", ".join(names.ALL_TOPICS)}.
--partitions applies to {" and ".join(names.HIGH_VOLUME_TOPICS)}, --aux-partitions to the
rest; every name gets --topic-prefix in front.
"""
EPILOG = "exit status: 0 ok; 1 Kafka unreachable or a topic refused; 2 bad flags."


def topic_specs(cfg: TopicsSettings) -> list[TopicSpec]:
    """What `create` makes: every project topic, with its prefix and settings."""
    specs = []
    for name in names.ALL_TOPICS:
        config = {"min.insync.replicas": str(cfg.min_insync_replicas)}
        if name in names.DEAD_LETTER_TOPICS:
            config["retention.ms"] = str(DEAD_LETTER_RETENTION_MS)
        high = name in names.HIGH_VOLUME_TOPICS
        partitions = cfg.partitions if high else cfg.aux_partitions
        specs.append(TopicSpec(cfg.topic(name), partitions, cfg.replication_factor, config))
    return specs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="action", required=True, metavar="{create,list}")
    create = sub.add_parser("create", help="create the missing topics (idempotent)")
    listing = sub.add_parser("list", help="show which project topics exist, with partitions")
    for action in (create, listing):
        settings.add_flags(action, TopicsSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        cfg = settings.load(TopicsSettings, args)
        configure_logging(cfg.log_level)
        if cfg.min_insync_replicas > cfg.replication_factor:
            raise ConfigError(
                f"--min-insync-replicas={cfg.min_insync_replicas} exceeds "
                f"--replication-factor={cfg.replication_factor}: producers with acks=all "
                "could never write; lower it or raise the replication factor"
            )
        try:
            return _create(cfg) if args.action == "create" else _list(cfg)
        except (KafkaUnavailable, TopicError) as exc:
            print(f"{PROG}: error: {exc} (bootstrap {cfg.kafka_bootstrap})", file=sys.stderr)
            return EXIT_FAILED

    return run_command(PROG, body)


def _create(cfg: TopicsSettings) -> int:
    specs = topic_specs(cfg)
    client = admin(cfg)
    created, _ = ensure_topics(client, specs, cfg.kafka_timeout_s)
    states = {s.name: s for s in describe_topics(client, (s.name for s in specs), cfg.kafka_timeout_s)}
    for spec in specs:
        state = states[spec.name]
        status = "created" if spec.name in created else "exists"
        note = ""
        if state.partitions != spec.partitions:
            note = f"  (wanted {spec.partitions} partitions; existing topic not changed)"
        print(f"{status:<8} {_describe(state)}{note}")
    print(f"{len(created)} created, {len(specs) - len(created)} already existed")
    return 0


def _list(cfg: TopicsSettings) -> int:
    specs = topic_specs(cfg)
    for state in describe_topics(admin(cfg), (s.name for s in specs), cfg.kafka_timeout_s):
        print(f"{'exists' if state.exists else 'missing':<8} {_describe(state)}")
    return 0


def _describe(state: TopicState) -> str:
    if not state.exists:
        return state.name
    return f"{state.name:<32} partitions={state.partitions} replication={state.replication_factor}"
