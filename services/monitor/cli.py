"""``fraudstream monitor``: drift (PSI) and delayed-label recall of the champion, and
retrain events when either decays."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from services import settings
from services.core import topics
from services.runtime import configure_logging, run_command
from services.settings import ConfigError, MonitorSettings

log = logging.getLogger(__name__)

PROG = "fraudstream monitor"
BATCH_MAX_RECORDS = 2_000
BATCH_WITHIN_S = 0.5

DESCRIPTION = """\
Consume `scores` and `labels` (read_committed) with a faust-streaming worker. Per
tumbling event-time window, every feature and the score are compared with the
champion's frozen PSI bins; drift is declared when PSI stays above a size-aware,
Bonferroni-corrected threshold for --drift-consecutive windows. Labels are joined to
scores whatever their order; recall is reported per event-day cohort, and only cohorts
whose labels are mature (from the learnt label-delay distribution) can trigger a
retrain. Retrain events go to `retrain`, one per incident; bad records go to
`monitor.dlq`. Run exactly one worker per model.
"""

EPILOG = """\
exit status: 0 stopped by SIGTERM/SIGINT; 1 the worker failed (an agent crashed; its
batch stays unacknowledged and is reprocessed on restart); 2 bad settings, no champion
or missing topics.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    settings.add_flags(parser, MonitorSettings)
    return parser


def check_topics(cfg: MonitorSettings) -> int:
    """Fail early with one line when a topic is missing; returns the changelog replication."""
    from confluent_kafka import KafkaException

    from services.kafka.config import admin

    try:
        meta = admin(cfg).list_topics(timeout=15)
    except KafkaException as exc:
        raise ConfigError(f"cannot reach Kafka at {cfg.kafka_bootstrap} ({exc.args[0]})") from None
    needed = [cfg.topic(t) for t in (topics.SCORES, topics.LABELS, topics.RETRAIN, topics.MONITOR_DLQ)]
    missing = [t for t in needed if t not in meta.topics]
    if missing:
        raise ConfigError(f"topic {missing[0]} does not exist; run `fraudstream topics` first")
    return min(3, max(1, len(meta.brokers)))


def check_codecs() -> None:
    """Our producers compress with lz4; aiokafka needs cramjam to read it (else every
    fetch of a compressed batch crashes the worker)."""
    from aiokafka import codec

    if not (codec.has_lz4() and codec.has_zstd() and codec.has_snappy()):
        raise ConfigError("aiokafka cannot decompress lz4/zstd/snappy: install cramjam (aiokafka[lz4])")


def run(cfg: MonitorSettings) -> int:
    import faust

    from services.core.codec import Codec
    from services.monitor import metrics as monitor_metrics
    from services.monitor.agents import MonitorRuntime, register_agents
    from services.monitor.app import build_app
    from services.monitor.champion import load_champion
    from services.monitor.core import MonitorConfig

    check_codecs()
    champion = load_champion(cfg.registry, cfg.model_name)
    replication = check_topics(cfg)
    metrics = monitor_metrics.MonitorMetrics()
    app = build_app(cfg, topic_replication_factor=replication)
    runtime = MonitorRuntime(
        app,
        MonitorConfig.from_settings(cfg),
        champion,
        Codec.load(),
        metrics,
        resolve_champion=lambda: load_champion(cfg.registry, cfg.model_name),
    )
    register_agents(app, runtime, BATCH_MAX_RECORDS, BATCH_WITHIN_S)
    monitor_metrics.serve(cfg.metrics_port, metrics.registry)
    worker = faust.Worker(
        app, loglevel=cfg.log_level, override_logging=False, quiet=True, redirect_stdouts=False
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:  # pragma: no cover - execute_from_commandline always raises SystemExit
        code = 0
    if app.crash_reason is not None:
        log.error("monitor stopped after a failure: %r", app.crash_reason)
        return 1
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        cfg = settings.load(MonitorSettings, args)
        configure_logging(cfg.log_level)
        return run(cfg)

    return run_command(PROG, body)
