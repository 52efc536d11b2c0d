"""``fraudstream <command>``: one front door for every service and tool.

Commands are imported lazily, so ``fraudstream --help`` and each command start fast
and nothing does work at import time. Each command module exposes ``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# name -> (module with main(argv), one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("services.stack.cli", "start, stop or inspect the local Kafka + Redis stack"),
    "topics": ("services.kafka.topics", "create the project's Kafka topics (idempotent)"),
    "generate": ("services.generator.cli", "generate a synthetic transaction + label data set"),
    "train": ("services.trainer.train_cli", "train a LightGBM model and register it"),
    "trainer": ("services.trainer.service_cli", "train challengers on retrain events; promote by policy"),
    "models": ("services.registry.cli", "list, show, verify, promote or retire models"),
    "scorer": ("services.scorer.cli", "score transactions from Kafka with online features"),
    "monitor": ("services.monitor.cli", "monitor drift (PSI) and delayed-label recall; emit retrain events"),
    "replay": ("services.replay.cli", "re-publish a data set to Kafka in event-time order"),
    "backtest": ("services.backtest.cli", "run a data set through the models offline; HTML report"),
    "demo": ("services.demo.cli", "the whole system end to end on the local stack"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: fraudstream <command> [options]",
        "",
        "Event-driven card-fraud scoring and monitoring.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `fraudstream <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        from services import __version__

        print(f"fraudstream {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(
            f"fraudstream: unknown command {name!r}; run `fraudstream --help` for the list",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
