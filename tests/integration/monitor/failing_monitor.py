"""``fraudstream monitor`` whose score decoding fails once a batch holds ``t150``: for the
test that an agent failure stops the worker with the batch unacknowledged."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from services.monitor import agents, cli
from services.monitor.records import Raw, decode_scores


def failing_decode(codec: Any, raws: Sequence[Raw], *args: Any) -> Any:
    rows, rejected = decode_scores(codec, raws, *args)
    if "t150" in rows.txn_id:
        raise RuntimeError("injected failure")
    return rows, rejected


if __name__ == "__main__":
    agents.decode_scores = failing_decode  # type: ignore[assignment]
    sys.exit(cli.main(sys.argv[1:]))
