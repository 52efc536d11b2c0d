"""``fraudstream demo``, start to finish: stack, data, champion, services, replay, watch,
backtest, compare, and stop everything it started (also on SIGTERM/SIGINT or failure).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from services.core import topics
from services.demo import fleet, kafka_io, progress, steps
from services.demo.services import Service, ServiceFailed, stop_all
from services.demo.steps import MODEL, Comparison, DemoError, Paths
from services.runtime import StopFlag
from services.settings import DemoSettings, KafkaSettings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 900.0
TICK_S = 1.0
LOG_EVERY_S = 5.0  # status lines when stdout is not a terminal
EVENTS_GRACE_S = 30.0
TRAINER_TIMEOUT_S = 300.0


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; the demo unwinds and stops what it started."""


@dataclass
class Run:
    """What one demo run created, so that cleanup knows what to undo."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    stack: Any = None  # services.stack.Stack, when this run owns it
    kafka: KafkaSettings | None = None
    services: list[Service] = field(default_factory=list)
    replay_stop: StopFlag = field(default_factory=StopFlag)
    replay_thread: threading.Thread | None = None
    replay_result: dict[str, Any] = field(default_factory=dict)
    replayed: int = 0
    noted_dead: set[str] = field(default_factory=set)


class Demo:
    def __init__(
        self,
        cfg: DemoSettings,
        stop: StopFlag,
        out: TextIO = sys.stdout,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg, self.stop, self.out, self.clock = cfg, stop, out, clock
        self.paths = Paths.of(cfg)
        self.run_state = Run()
        self.trainer_note: str | None = None
        self.tty = out.isatty()

    # ------------------------------------------------------------------ output

    def say(self, text: str) -> None:
        print(f"demo: {text}", file=self.out, flush=True)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted()

    # ------------------------------------------------------------------ the run

    def run(self) -> int:
        started = self.clock()
        try:
            outcome = self._steps()
        except Interrupted:
            self.say("stopping on a signal")
            return 130
        except (DemoError, ServiceFailed) as exc:
            self.say(f"error: {exc}")
            return 1
        finally:
            self.cleanup()
        self.print_summary(*outcome, self.clock() - started)
        return 0

    def _steps(self) -> tuple[Comparison, str, dict[str, Any]]:
        p = self.paths
        self.check_stop()
        self.say(f"working in {p.root.resolve()} (logs in {p.logs})")
        info = self.start_stack()
        self.check_stop()
        prefix = f"demo-{self.run_state.run_id}."
        self.run_state.kafka = KafkaSettings.model_validate(
            {"kafka_bootstrap": info.kafka_bootstrap, "topic_prefix": prefix}
        )
        kafka_io.create_topics(self.run_state.kafka)
        self.say(
            f"generating {self.cfg.days} days of transactions ({steps.CARDS:,} cards, drift from day "
            f"{steps.drift_onset_day(self.cfg.days)})"
        )
        manifest = steps.generate(self.cfg, p)
        self.check_stop()
        self.say("training the champion (LightGBM, time split, leak-free labels)")
        champion = steps.train(self.cfg, p)
        self.say(f"registered {champion} as champion in {p.models}")
        self.check_stop()
        self.start_services(info.redis_url)
        counts = manifest["counts"]
        self.replay_and_watch(int(counts["transactions"]), int(counts["labels"]))
        self.trainer_note = self.follow_trainer()
        self.say("writing the backtest report (same features, scores, PSI, recall and retrain code, offline)")
        result, backtest_scores = steps.backtest(p)
        self.check_stop()
        return self.compare(result, backtest_scores), champion, result

    # ------------------------------------------------------------------ stack, services

    def start_stack(self) -> Any:
        from services.stack import Stack, StackError

        stack = Stack(steps.stack_settings(self.cfg, self.paths))
        self.say(f"starting Kafka + Redis (stack in {self.paths.stack})")
        try:
            info = stack.up()
        except StackError as exc:
            raise DemoError(f"the local stack did not start: {exc}") from None
        # The demo's own stack directory is the demo's to stop, even if a previous run left
        # it up; a stack the user pointed at (--stack-dir) and that was running stays up.
        if not info.already_running or "stack_dir" not in self.cfg.model_fields_set:
            self.run_state.stack = stack
        self.say(f"stack up: Kafka {info.kafka_bootstrap}, Redis {info.redis_url}")
        return info

    def start_services(self, redis_url: str) -> None:
        kafka, run_id = self.run_state.kafka, self.run_state.run_id
        assert kafka is not None
        p = self.paths
        services = fleet.build(kafka, redis_url, p.models, p.logs, p.monitor_state, run_id)
        (p.monitor_state / run_id).mkdir(parents=True, exist_ok=True)
        for service in services:
            self.run_state.services.append(service)
            service.start()
        self.say("started " + ", ".join(f"the {s.name} (log {s.log_path})" for s in services))
        self.wait(lambda: fleet.ready(services), READY_TIMEOUT_S, "the services to start")

    def check_services(self) -> None:
        """Fail on an essential service's death; note a helper's (the trainer) once."""
        for service in self.run_state.services:
            if service.essential:
                service.check()
            elif not service.running and service.name not in self.run_state.noted_dead:
                self.run_state.noted_dead.add(service.name)
                self.say(f"warning: the {service.name} exited; going on without it (see {service.log_path})")

    def wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = self.clock() + timeout_s
        while not condition():
            self.check_stop()
            self.check_services()
            if self.clock() > deadline:
                raise DemoError(
                    f"timed out after {timeout_s:.0f} s waiting for {what}; logs in {self.paths.logs}"
                )
            self.stop.wait(TICK_S)

    # ------------------------------------------------------------------ replay and watch

    def replay_and_watch(self, n_txns: int, n_labels: int) -> None:
        self.start_replay(n_txns + n_labels)
        self.say(f"replaying {n_txns:,} transactions and {n_labels:,} labels as fast as possible")
        scorer, monitor = self.run_state.services[:2]
        rate = progress.Rate()
        last_log = -LOG_EVERY_S
        deadline = self.clock() + DRAIN_TIMEOUT_S
        while True:
            self.check_stop()
            self.check_services()
            if "error" in self.run_state.replay_result:
                raise DemoError(f"the replay failed: {self.run_state.replay_result['error']}")
            status = progress.snapshot(
                scorer.scrape(), monitor.scrape(), self.run_state.replayed, n_txns + n_labels, rate.value
            )
            status = replace(status, scored_per_s=rate.update(self.clock(), status.scored))
            last_log = self.show(status, last_log)
            replay_done = (
                self.run_state.replay_thread is not None and not self.run_state.replay_thread.is_alive()
            )
            if (
                replay_done
                and status.scored >= n_txns
                and status.monitor_labels >= n_labels
                and status.monitor_scores >= n_txns
            ):
                break
            if self.clock() > deadline:
                raise DemoError(
                    f"the services did not catch up within {DRAIN_TIMEOUT_S:.0f} s; see {self.paths.logs}"
                )
            self.stop.wait(TICK_S)
        if self.tty:
            print(file=self.out)
        self.say(progress.render(status))

    def show(self, status: progress.Status, last_log: float) -> float:
        line = progress.render(status)
        if self.tty:
            print("\r" + line[:200].ljust(200), end="", file=self.out, flush=True)
            return last_log
        now = self.clock()
        if now - last_log >= LOG_EVERY_S:
            self.say(line)
            return now
        return last_log

    def start_replay(self, total: int) -> None:
        from confluent_kafka import Producer

        from services import dataset
        from services.core.codec import Codec
        from services.core.replay_plan import Pacer, ReplayEvent, merge_events
        from services.kafka import producer_config
        from services.replay.publisher import ReplayTopics, publish

        kafka, state = self.run_state.kafka, self.run_state
        assert kafka is not None
        producer = Producer(producer_config(kafka))
        replay_topics = ReplayTopics(kafka.topic(topics.TRANSACTIONS), kafka.topic(topics.LABELS))
        events = merge_events(
            dataset.iter_transactions(self.paths.data), dataset.iter_labels(self.paths.data)
        )

        def counted(ev: ReplayEvent) -> None:
            state.replayed += 1

        def body() -> None:
            try:
                summary = publish(
                    events,
                    producer=producer,
                    encode=Codec.load().encode,
                    topics=replay_topics,
                    pacer=Pacer(0.0, time.monotonic),
                    stop=state.replay_stop,
                    progress=counted,
                )
                state.replay_result["summary"] = summary
                if summary.delivery_failures:
                    state.replay_result["error"] = f"{summary.delivery_failures} records not delivered"
            except Exception as exc:  # reported by the watch loop
                state.replay_result["error"] = repr(exc)

        state.replay_thread = threading.Thread(target=body, name="replay", daemon=True)
        state.replay_thread.start()

    def follow_trainer(self) -> str | None:
        """Give the trainer service (if running) time to handle the retrain events."""
        services = {s.name: s for s in self.run_state.services}
        trainer = services.get(fleet.TRAINER)
        if trainer is None:
            return None
        events = int(services["monitor"].scrape().total(progress.RETRAIN))
        deadline = self.clock() + TRAINER_TIMEOUT_S
        if events:
            self.say(f"waiting for the trainer to handle {events} retrain event(s) (log {trainer.log_path})")
        outcomes = fleet.trainer_outcomes(trainer)
        while trainer.running and sum(outcomes.values()) < events and self.clock() < deadline:
            self.check_stop()
            self.check_services()
            self.stop.wait(TICK_S)
            outcomes = fleet.trainer_outcomes(trainer)
        from services.registry import Registry, RegistryError

        try:
            challenger = Registry(self.paths.models).aliases(MODEL).get("challenger")
        except RegistryError:
            challenger = None
        handled = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())) or "none"
        state = "" if trainer.running else " (it exited: see its log)"
        shown = f"{MODEL}@{challenger}" if challenger else "none"
        return f"trainer: retrain events handled: {handled}{state}; challenger (not promoted here): {shown}"

    # ------------------------------------------------------------------ compare, summary

    def compare(self, result: dict[str, Any], backtest_scores: dict[str, float]) -> Comparison:
        from services.core.codec import Codec

        kafka = self.run_state.kafka
        assert kafka is not None
        codec = Codec.load()
        scores = kafka_io.decode(
            codec, "Score", kafka_io.read_all(kafka, kafka.topic(topics.SCORES), self.stop.is_set)
        )
        # The monitor publishes a batch's retrain events right after counting the batch;
        # give a late one a moment (bounded) before calling it missing.
        expected = len(result["scenarios"][0]["retrain_events"])
        deadline = self.clock() + EVENTS_GRACE_S
        while True:
            retrain = kafka_io.read_all(kafka, kafka.topic(topics.RETRAIN))
            events = kafka_io.decode(codec, "RetrainEvent", retrain)
            if len(events) >= expected or self.clock() > deadline:
                break
            self.check_stop()
            self.stop.wait(TICK_S)
        return steps.compare(scores, events, backtest_scores, result)

    def print_summary(self, cmp: Comparison, champion: str, result: dict[str, Any], wall_s: float) -> None:
        s = result["scenarios"][0]
        d = s["decisions"]
        events = ", ".join(f"{e['reason']} at {e['emitted_at'] and _day(e['emitted_at'])}"
                           for e in s["retrain_events"]) or "none"  # fmt: skip
        lines = [
            f"done in {wall_s / 60:.1f} min; everything it started is stopped",
            f"champion {champion}: {cmp.transactions:,} transactions, "
            f"{d['REVIEW']:,} review, {d['BLOCK']:,} block",
            f"retrain events (event time): {events}",
            "live vs backtest: scores "
            + ("identical" if cmp.scores_agree else "DIFFER")
            + f" for {cmp.same_scores:,}/{cmp.transactions:,} transactions; retrain events "
            + (
                "identical"
                if cmp.events_agree
                else f"DIFFER (live {cmp.live_events}, backtest {cmp.backtest_events})"
            ),
            *([self.trainer_note] if self.trainer_note else []),
            f"report:  {self.paths.report.resolve()}",
            f"figures: {self.paths.report.with_suffix('.json').resolve()}",
        ]
        for line in lines:
            self.say(line)

    # ------------------------------------------------------------------ cleanup

    def cleanup(self) -> None:
        """Stop, in reverse order, everything this run started. Never raises."""
        state = self.run_state
        state.replay_stop.set()
        if state.replay_thread is not None:
            state.replay_thread.join(60)
        stop_all(state.services)
        if state.stack is not None:
            try:
                state.stack.down(wipe=True)
            except Exception as exc:  # report, and carry on
                self.say(f"warning: could not stop the stack in {self.paths.stack}: {exc}")
        elif state.kafka is not None:
            kafka_io.delete_topics(state.kafka)


def _day(ms: int) -> str:
    from services.core.replay_plan import iso

    return iso(int(ms))[:10]
