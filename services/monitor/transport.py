"""The monitor's faust (aiokafka) transport: read_committed, and a cheaper message pump.

Both are small subclasses of faust-streaming 0.15's aiokafka driver (the version range
is pinned by the project; :func:`check_faust_version` refuses others at start-up):

* **read_committed.** faust only sets ``isolation.level=read_committed`` together with
  ``processing_guarantee="exactly_once"``, which would also make every changelog write
  transactional. The scorer writes scores in Kafka transactions, so the monitor must
  not see aborted ones; it keeps at-least-once processing and sets only the isolation
  level, before the aiokafka consumer starts.
* **Delivery without two tasks per message.** faust's ``Consumer._drain_messages``
  delivers each message as ``wait_first(callback(message), suspend_flow.wait())``: two
  new asyncio tasks and an ``asyncio.wait`` per record, about 3 event-loop turns. The
  race only matters during a rebalance, and then faust stops the fetcher (cancelling
  this loop) anyway. :meth:`FastDrainConsumer._drain_messages` is faust's loop with the
  delivery awaited directly while the flow is not suspended, and skipped when it is
  (as faust's race would); everything else (gaps, commit-every, generations) is
  unchanged. It roughly doubles the records per second one worker can take.
* **No stream record from before the seek.** After a (re)assignment faust resumes the
  stream partitions, then seeks them to their committed offsets, then resumes its flow
  control, which clears every stream's queue. The fetcher runs all along. A record
  fetched before the seek was delivered twice (before and after it: counted twice);
  or its batch, iterated on after the seek, moved the read offset past records that
  the queue clearing then threw away and the re-fetch skipped as already read: missing
  from the figures, with the committed offset stuck before them until a restart
  (seen as a flaky restart test). :class:`FastDrainConsumer` holds the
  stream partitions back until the seek is done and the flow resumed, so the first
  record fetched from each is the one at its committed offset, and it stays
  delivered. Changelog partitions (table recovery comes first) are not held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

READ_COMMITTED = "read_committed"
SUPPORTED_FAUST = ((0, 15), (0, 16))  # [from, to)


def check_faust_version(version: str = faust.__version__) -> None:
    parts = tuple(int(p) for p in version.split(".")[:2])
    if not SUPPORTED_FAUST[0] <= parts < SUPPORTED_FAUST[1]:
        raise RuntimeError(
            f"faust-streaming {version} is untested with services.monitor.transport "
            f"(needs 0.15.x); re-check the consumer overrides"
        )


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher in start(); the consumer is not started yet.
        consumer._isolation_level = READ_COMMITTED
        return consumer


class FastDrainConsumer(faust_aiokafka.Consumer):
    _held: frozenset[TP] = frozenset()  # stream partitions faust resumed, not yet fetched
    _sought: frozenset[TP] = frozenset()  # held ones a seek has moved to their offsets

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        """Resume changelog partitions now; hold stream partitions back (see the module
        docstring) until a seek has moved them and the flow is resumed."""
        tps = set(tps)
        stream = frozenset(tp for tp in tps if not self._is_changelog_tp(tp))
        self._held |= stream
        self._sought -= stream
        super().resume_partitions(tps - stream)

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        paused = frozenset(tps)
        self._held -= paused  # faust resumes them again (and so holds them) when it wants them
        self._sought -= paused
        super().pause_partitions(paused)

    async def perform_seek(self) -> None:
        covers = self._held
        await super().perform_seek()
        self._sought |= covers

    def resume_flow(self) -> None:
        # faust resumes the flow after the seek, right after its flow control has
        # cleared the streams' queues: from here on a fetched record stays delivered.
        super().resume_flow()
        ready = self._held & self._sought
        if ready:
            self._held -= ready
            self._sought -= ready
            super().resume_partitions(ready & set(self.assignment()))

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspended = self.suspend_flow.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        since_yield += 1
                        if since_yield > 100:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if not suspended():
                                await callback(message)
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class MonitorTransport(faust_aiokafka.Transport):
    Consumer = FastDrainConsumer
