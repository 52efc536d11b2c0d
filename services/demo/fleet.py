"""The services the demo runs, configured for one run: the scorer, the monitor and, when
this checkout has it, the trainer service (``fraudstream trainer``).

Every service gets the run's topic prefix and its own consumer group; the scorer its
own Redis namespace. The trainer registers challengers but never promotes them (a
margin of 1), so the champion that scores stays the one the backtest replays.
"""

from __future__ import annotations

from pathlib import Path

from services.cli import COMMANDS
from services.demo.services import Service
from services.demo.steps import MODEL, MONITOR_POLICY
from services.settings import KafkaSettings

TRAINER = "trainer"


def build(
    kafka: KafkaSettings, redis_url: str, models: Path, logs: Path, monitor_state: Path, run_id: str
) -> list[Service]:
    common = {"kafka_bootstrap": kafka.kafka_bootstrap, "topic_prefix": kafka.topic_prefix,
              "registry": models, "log_level": "INFO"}  # fmt: skip
    scorer = Service("scorer", "scorer", {
        **common, "redis_url": redis_url, "redis_namespace": f"demo{run_id}", "model": f"{MODEL}@champion",
        "group_id": f"demo-scorer-{run_id}", "transactional_id_prefix": f"demo-{run_id}",
        "batch_max_records": 2000, "shadow": False,
        "max_event_age_days": 3650,  # the data set's event times are months old: history
    }, logs)  # fmt: skip
    monitor = Service("monitor", "monitor", {
        **common, **MONITOR_POLICY, "model_name": MODEL, "app_id": monitor_app_id(kafka),
        "data_dir": monitor_state / run_id,
    }, logs)  # fmt: skip
    services = [scorer, monitor]
    if TRAINER in COMMANDS:
        services.append(Service(TRAINER, TRAINER, {
            **common, "name": MODEL, "group_id": f"demo-trainer-{run_id}", "auto_promote_margin": 1.0,
        }, logs, essential=False))  # fmt: skip
    return services


def monitor_app_id(kafka: KafkaSettings) -> str:
    return f"{kafka.topic_prefix}monitor"


def ready(services: list[Service]) -> bool:
    """Scorer assigned its partition, both monitor agents alive, the trainer answering."""
    for service in services:
        m = service.scrape()
        if (
            service.name == "scorer"
            and (m.get("fraudstream_scorer_rebalance_events_total", kind="assigned") or 0) < 1
        ):
            return False
        if service.name == "monitor" and not all(
            (m.get("fraudstream_monitor_agent_alive", agent=a) or 0) >= 1 for a in ("scores", "labels")
        ):
            return False
        if service.name == TRAINER and service.running and not m.samples:
            return False
    return True


def trainer_outcomes(trainer: Service) -> dict[str, int]:
    """Retrain events the trainer handled, by outcome (trained, cannot_train, ...)."""
    series = trainer.scrape().series("fraudstream_trainer_events_total")
    return {labels.get("outcome", "?"): int(v) for labels, v in series if v > 0}
