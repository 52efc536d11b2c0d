"""``fraudstream demo``: the system end to end, on a fresh machine, in one command.

It starts a local Kafka + Redis (its own stack directory, free ports), generates a data
set with drift, trains and registers a champion, starts the scorer and the monitor,
replays the data set at full speed with a live status line (scored/s, decisions, PSI,
retrain events, from the services' Prometheus endpoints), writes the backtest report,
checks the live scores and retrain events against the backtest's, and stops everything
it started, also on SIGTERM/SIGINT or failure. It prints where the report is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services import settings
from services.runtime import StopFlag, configure_logging, run_command
from services.settings import DemoSettings

PROG = "fraudstream demo"

EPILOG = """\
Everything goes under --workdir: data/, models/, report/backtest.html (+ .json), logs/,
and the stack (.stack/, unless --stack-dir is given; on free ports unless --kafka-port
/ --redis-port are given). exit status: 0 done; 1 a step
failed (the message names its log); 2 bad flags; 130 stopped by SIGTERM/SIGINT (after
stopping everything it started).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[1].replace("\n", " "), epilog=EPILOG
    )
    settings.add_flags(parser, DemoSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        from services.demo.pipeline import Demo

        cfg = settings.load(DemoSettings, args)
        # The services' own logs go to their files; here only warnings, under the status.
        configure_logging("WARNING" if cfg.log_level == "INFO" else cfg.log_level)
        return Demo(cfg, StopFlag().install()).run()

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
