"""``fraudstream replay DIR``: re-publish a data set to Kafka in event-time order.

Transactions go to ``transactions`` at their event time and labels to ``labels`` at
their label time, merged into one stream (see :mod:`services.core.replay_plan`), paced
by ``--speed`` (1 = real time, 0 = as fast as possible), optionally cut to
``--start``/``--end``. ``--topic-prefix`` keeps a backtest off production topics.
SIGTERM/SIGINT stop it cleanly: what was produced is flushed, the summary printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from services import settings
from services.core import topics
from services.core.replay_plan import (
    LABEL,
    TXN,
    Pacer,
    ReplayEvent,
    ReplayOrderError,
    ReplaySummary,
    iso,
    merge_events,
    parse_instant,
    select,
)
from services.runtime import StopFlag, configure_logging, run_command
from services.settings import ConfigError, ReplaySettings

PROG = "fraudstream replay"
EXIT_FAILED = 1
PROGRESS_EVERY = 2_000  # events between progress-bar postfix updates
log = logging.getLogger(__name__)

EPILOG = """\
exit status: 0 replayed (or stopped by SIGTERM/SIGINT after flushing); 1 records not
delivered or Kafka unreachable; 2 bad flags, data set or missing topics.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish a data set from `fraudstream generate` to Kafka in event-time order: "
        "transactions at their event time, labels at their label time, keyed by card id.",
        epilog=EPILOG,
    )
    parser.add_argument("dir", nargs="?", help="the data set directory (same as --data)")
    settings.add_flags(parser, ReplaySettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.data is None and args.dir is not None:
        args.data = args.dir

    def body() -> int:
        cfg = settings.load(ReplaySettings, args)
        configure_logging(cfg.log_level)
        return replay(cfg, StopFlag().install())

    return run_command(PROG, body)


def bounds(cfg: ReplaySettings) -> tuple[int | None, int | None]:
    """``--start``/``--end`` as epoch ms; a bad or empty range is a ConfigError."""
    try:
        start = None if cfg.start is None else parse_instant(cfg.start)
        end = None if cfg.end is None else parse_instant(cfg.end)
    except ValueError as exc:
        raise ConfigError(f"invalid --start/--end: {exc}") from None
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"--end {cfg.end} is not after --start {cfg.start}")
    return start, end


def load_events(cfg: ReplaySettings) -> tuple[Iterator[ReplayEvent], int | None]:
    """The merged, sliced event stream (lazy) and its length when it is known up front."""
    from services import dataset

    if not cfg.data.is_dir():
        raise ConfigError(f"--data {cfg.data} is not a directory; create one with `fraudstream generate`")
    try:
        manifest = dataset.read_manifest(cfg.data)
        dataset.verify_dataset(cfg.data)
    except dataset.DatasetError as exc:
        raise ConfigError(f"invalid data set {cfg.data}: {exc}") from None
    start, end = bounds(cfg)
    labels = dataset.iter_labels(cfg.data) if cfg.labels else iter(())
    events = select(merge_events(dataset.iter_transactions(cfg.data), labels), start, end)
    counts = manifest.get("counts", {})
    total = None
    if start is None and end is None and "transactions" in counts:
        total = int(counts["transactions"]) + (int(counts.get("labels", 0)) if cfg.labels else 0)
    return events, total


def check_topics(cfg: ReplaySettings, names: Sequence[str]) -> None:
    from services.kafka import KafkaUnavailable, admin, describe_topics

    try:
        states = describe_topics(admin(cfg), names, cfg.kafka_timeout_s)
    except KafkaUnavailable as exc:
        raise ConfigError(f"cannot reach Kafka at {cfg.kafka_bootstrap}: {exc}") from None
    missing = [s.name for s in states if not s.exists]
    if missing:
        raise ConfigError(
            f"topic {missing[0]} does not exist; run `fraudstream topics create` "
            f"with the same --topic-prefix ({cfg.topic_prefix!r})"
        )


def replay(cfg: ReplaySettings, stop: StopFlag) -> int:
    from confluent_kafka import KafkaException, Producer
    from tqdm import tqdm

    from services.core.codec import Codec
    from services.kafka import producer_config
    from services.replay.publisher import ReplayTopics, publish

    events, total = load_events(cfg)
    replay_topics = ReplayTopics(cfg.topic(topics.TRANSACTIONS), cfg.topic(topics.LABELS))
    check_topics(cfg, [replay_topics.transactions] + ([replay_topics.labels] if cfg.labels else []))
    codec = Codec.load()
    try:
        producer = Producer(producer_config(cfg))
    except KafkaException as exc:
        raise ConfigError(f"bad Kafka producer settings: {exc.args[0] if exc.args else exc}") from None
    speed = "as fast as possible" if cfg.speed == 0 else f"x{cfg.speed:g}"
    print(
        f"replaying {cfg.data} -> {replay_topics.transactions}, {replay_topics.labels} ({speed})",
        file=sys.stderr,
    )
    bar: Any = tqdm(
        total=total,
        unit=" ev",
        unit_scale=True,
        desc="replay",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    seen = {"n": 0}

    def progress(ev: ReplayEvent) -> None:
        bar.update(1)
        seen["n"] += 1
        if seen["n"] % PROGRESS_EVERY == 0:
            bar.set_postfix_str(f"at {iso(ev.time_ms)}", refresh=False)

    try:
        summary = publish(
            events,
            producer=producer,
            encode=codec.encode,
            topics=replay_topics,
            pacer=Pacer(cfg.speed, time.monotonic),
            stop=stop,
            progress=progress,
        )
    except ReplayOrderError as exc:
        producer.flush(30)
        raise ConfigError(f"invalid data set {cfg.data}: {exc}") from None
    finally:
        bar.close()
    print(summary.render())
    return report_outcome(summary)


def report_outcome(summary: ReplaySummary) -> int:
    if summary.delivery_failures:
        print(
            f"{PROG}: error: {summary.delivery_failures} records were not delivered "
            "(see the log); the topics hold an incomplete replay",
            file=sys.stderr,
        )
        return EXIT_FAILED
    log.info("replayed %d transactions and %d labels", summary.counts[TXN], summary.counts[LABEL])
    return 0


if __name__ == "__main__":
    sys.exit(main())
