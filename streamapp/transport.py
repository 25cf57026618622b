"""Faust's aiokafka transport, with safe commits and partition pauses that reach the fetcher.

Commits: Faust 0.15 derives the offset to commit from the run of acknowledged offsets
and lets it start one past the committed offset, or anywhere on a partition without
a commit yet (faust-streaming issue 606). With ``concurrency`` actors, messages finish
out of order, so it committed past tasks still in flight, and a SIGKILL lost them.
Here the offset to commit is the lowest one delivered and not yet acknowledged
(`streamapp.offsets`).

Seeks: after every rebalance Faust seeks its stream partitions back to their committed
offsets, because records it fetched while pausing or changing generation are dropped
unread. aiokafka's ``seek_to_committed`` skips partitions whose commit is missing or 0,
so there those dropped records were lost for good (a worker that took over a
partition nobody had committed yet never processed its first records). Here such
partitions go back to where the group would start them: the reset policy, or 0. And
records fetched while recovery was still seeking reached the streams but were never
processed, so the app seeks once more when recovery ends (`seek_again_soon`); what is
read again below the committed offset is not waited for, since Faust records no ack
for it.

Pauses: Faust 0.15 pauses a partition in its own bookkeeping only (it stops asking for its
records); aiokafka keeps fetching it. Faust pauses every table changelog after
recovery, so each changelog record a worker wrote (and camera-verdicts, the verdict
table's changelog) came back to that worker and waited, unread, in aiokafka's fetch
buffer; an unread partition holds back the next fetch from that broker for
aiokafka's prefetch backoff (100 ms), which added about 100 ms to a frame's p95 per
hop. Here a Faust pause and resume of a changelog partition also pause and resume
it in aiokafka. Stream partitions are left to Faust's own flow control, so a pause
mirrored out of order can at worst slow a table's recovery, never hold back a stream.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, Optional

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message
from faust.types.transports import ConsumerCallback

from streamapp.offsets import PartitionProgress


class Consumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._progress: defaultdict[TP, PartitionProgress] = defaultdict(PartitionProgress)
        self.callback = self._tracking_delivery(self.callback)

    def _tracking_delivery(self, callback: ConsumerCallback) -> ConsumerCallback:
        acks_enabled_for = self.app.topics.acks_enabled_for
        progress, committed = self._progress, self._committed_offset

        async def on_message(message: Message) -> None:
            # Faust records no ack below the committed offset (a message read again
            # after a seek back), so none is waited for: it was done before.
            if acks_enabled_for(message.topic) and message.offset >= (committed[message.tp] or 0):
                progress[message.tp].delivered(message.offset)
            await callback(message)

        return on_message

    def _new_offset(self, tp: TP) -> Optional[int]:
        # Acknowledgements land in Faust's `_acked` lists (its Cython stream iterator
        # writes them there directly, bypassing `ack`): move them over.
        acked, progress = self._acked[tp], self._progress[tp]
        for offset in acked:
            progress.acked(offset)
        acked.clear()
        self._acked_index[tp].clear()
        return progress.committable()

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Offsets never delivered never hold a commit back; Faust's gap list is not needed."""

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        # A new assignment starts again from the committed offsets.
        self._forget(assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    def _forget(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._progress.pop(tp, None)

    def seek_again_soon(self) -> None:
        self.add_future(self._seek_again())

    async def _seek_again(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:  # noqa: BLE001 - a new rebalance seeks anyway
            self.log.warning("seeking to the committed offsets after recovery failed: %r", exc)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        reset = self.app.conf.consumer_auto_offset_reset
        thread = self._thread
        return await thread.call_thread(seek_to_committed, thread._ensure_consumer(), reset, self._is_changelog_tp)

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        tps = set(tps)
        super().pause_partitions(tps)
        self._in_fetcher(tps, pause=True)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        tps = set(tps)
        super().resume_partitions(tps)
        self._in_fetcher(tps, pause=False)

    def _in_fetcher(self, tps: set[TP], pause: bool) -> None:
        consumer = self._thread._consumer
        partitions = [TopicPartition(tp.topic, tp.partition) for tp in tps if self._is_changelog_tp(tp)]
        if consumer is None or not partitions:
            return
        # The aiokafka consumer belongs to the consumer thread's loop.
        self._thread.thread_loop.call_soon_threadsafe(_set_paused, consumer, partitions, pause)


def _set_paused(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], pause: bool) -> None:
    # A rebalance may have taken some of them away since the call.
    assigned = consumer.assignment()
    mine = [tp for tp in partitions if tp in assigned]
    if pause:
        consumer.pause(*mine)
    else:
        consumer.resume(*mine)


async def seek_to_committed(consumer: AIOKafkaConsumer, reset: str,
                            is_changelog: Callable[[TopicPartition], bool] = lambda tp: False,
                            ) -> dict[TopicPartition, Optional[int]]:
    """Seek every assigned partition to its committed offset, and a stream partition
    without a commit to where ``reset`` starts it ("earliest" or "latest"). Changelogs
    have no commits; table recovery positions them."""
    committed = await consumer.seek_to_committed()
    streams = {tp: offset for tp, offset in committed.items() if not is_changelog(tp)}
    for tp, offset in streams.items():
        if offset == 0:
            consumer.seek(tp, 0)
    uncommitted = [tp for tp, offset in streams.items() if offset is None]
    if uncommitted:
        await (consumer.seek_to_end if reset == "latest" else consumer.seek_to_beginning)(*uncommitted)
    return committed


class Transport(driver.Transport):
    Consumer = Consumer
