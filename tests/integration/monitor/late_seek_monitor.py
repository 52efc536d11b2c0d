"""``fraudstream monitor`` whose seek to the committed offsets starts late.

faust resumes the stream partitions, then seeks them to their committed offsets; the
fetcher runs in between. Delaying the seek makes that window wide, so the restart test
always meets what it met now and then: records fetched before the seek (which the
monitor must not count twice, nor lose).
"""

from __future__ import annotations

import asyncio
import sys

from services.monitor import cli, transport

DELAY_S = 2.0

seek = transport.FastDrainConsumer.perform_seek


async def late_seek(self: transport.FastDrainConsumer) -> None:
    await asyncio.sleep(DELAY_S)
    await seek(self)


if __name__ == "__main__":
    transport.FastDrainConsumer.perform_seek = late_seek  # type: ignore[method-assign]
    sys.exit(cli.main(sys.argv[1:]))
