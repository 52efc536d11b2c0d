"""``fraudstream stack up | down | status | fetch``: the local Kafka + Redis stack."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence

from services import settings
from services.runtime import configure_logging, run_command
from services.settings import StackSettings
from services.stack.stack import Stack, StackError, StackInfo, StackStatus

PROG = "fraudstream stack"
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3  # as `systemctl status` / LSB: "program is not running"

DESCRIPTION = """\
A local Apache Kafka (KRaft, one or --brokers N combined broker+controller nodes) and a
redis-server on 127.0.0.1, no Docker. Needs Java 17+ and redis-server; Maven fetches the
Kafka jars once into --kafka-cache. All state (configs, pids, ports, logs, data) lives in
--stack-dir.
"""

EPILOG = """\
exit status: 0 ok; 1 the stack could not be started or stopped; 2 bad flags;
`status` and `env` exit 3 when the stack is stopped or degraded.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="action", required=True, metavar="{up,down,status,env,fetch}")
    up = sub.add_parser("up", help="start the stack and wait until it answers (idempotent)")
    up.add_argument("--json", action="store_true", help="print the stack's addresses as JSON")
    down = sub.add_parser("down", help="stop exactly the processes `up` started")
    down.add_argument("--wipe", action="store_true", help="also delete the stack's data, configs and logs")
    status = sub.add_parser("status", help="what runs where (exit 3 when not running)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser(
        "env", help='print `export FRAUDSTREAM_...` lines for the running stack: eval "$(... env)"'
    )
    sub.add_parser("fetch", help="fetch and cache the Kafka jars (no servers started)")
    for action in (up, down, status, sub.choices["env"], sub.choices["fetch"]):
        settings.add_flags(action, StackSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        cfg = settings.load(StackSettings, _settings_only(args))
        configure_logging(cfg.log_level)
        try:
            return ACTIONS[args.action](Stack(cfg), args)
        except StackError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return run_command(PROG, body)


def _settings_only(args: argparse.Namespace) -> argparse.Namespace:
    own = {"action", "json", "wipe"}
    return argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in own})


def _up(stack: Stack, args: argparse.Namespace) -> int:
    info = stack.up()
    if args.json:
        print(json.dumps(_info_dict(info), indent=2, sort_keys=True))
    elif info.already_running:
        print(f"stack already running in {info.stack_dir}")
        print(_addresses(info))
    else:
        print(f"stack up in {info.startup_s:.1f} s in {info.stack_dir}")
        print(_addresses(info))
    return 0


def _down(stack: Stack, args: argparse.Namespace) -> int:
    stopped = stack.down(wipe=args.wipe)
    where = stack.layout.root
    print(f"stopped {', '.join(stopped)} ({where})" if stopped else f"nothing running in {where}")
    if args.wipe:
        print(f"wiped the stack's data in {where}")
    return 0


def _status(stack: Stack, args: argparse.Namespace) -> int:
    status = stack.status()
    print(json.dumps(status.to_dict(), indent=2, sort_keys=True) if args.json else _table(status))
    return 0 if status.running else EXIT_NOT_RUNNING


def _env(stack: Stack, args: argparse.Namespace) -> int:
    status = stack.status()
    if not status.running:
        print(f"{PROG}: error: no running stack in {status.stack_dir}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(f"export FRAUDSTREAM_KAFKA_BOOTSTRAP={shlex.quote(status.kafka_bootstrap or '')}")
    print(f"export FRAUDSTREAM_REDIS_URL={shlex.quote(status.redis_url or '')}")
    return 0


def _fetch(stack: Stack, args: argparse.Namespace) -> int:
    libs = stack.fetch()
    print(f"Kafka jars ready in {libs}")
    return 0


ACTIONS = {"up": _up, "down": _down, "status": _status, "env": _env, "fetch": _fetch}


def _info_dict(info: StackInfo) -> dict[str, object]:
    return {
        "stack_dir": str(info.stack_dir),
        "kafka_bootstrap": info.kafka_bootstrap,
        "redis_url": info.redis_url,
        "brokers": info.brokers,
        "cluster_id": info.cluster_id,
        "already_running": info.already_running,
        "startup_s": round(info.startup_s, 3),
    }


def _addresses(info: StackInfo) -> str:
    plural = "s" if info.brokers > 1 else ""
    return f"  kafka  {info.kafka_bootstrap}  ({info.brokers} broker{plural})\n  redis  {info.redis_url}"


def _table(status: StackStatus) -> str:
    lines = [f"stack in {status.stack_dir}: {status.state}"]
    if not status.components:
        return lines[0]
    rows = [("NAME", "PID", "PORT", "RUNNING", "LISTENING", "LOG")]
    rows += [
        (c.name, str(c.pid), str(c.port), _yes(c.running), _yes(c.listening), str(c.log))
        for c in status.components
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  " + "  ".join([*cells, row[-1]]))
    if status.running:
        lines.append(f"kafka_bootstrap: {status.kafka_bootstrap}")
        lines.append(f"redis_url: {status.redis_url}")
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
