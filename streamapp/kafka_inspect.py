"""Reading the cluster from outside the stream: consumer lag, topic sizes, whole topics.

Used by the web views (/stats, /metrics) and the inspection commands (`table`, `dlq`).
No client subscribes or commits, so inspecting never joins or disturbs the workers'
consumer group.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Iterable, Optional

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streamapp.kafka_client import aiokafka_kwargs
from streamapp.settings import Settings


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **aiokafka_kwargs(settings.kafka), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed", client_id=f"{settings.app.id}-inspect",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )


async def topic_partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the topics (missing topics have none). A group-less consumer
    knows only topics it was told about; ``topics()`` fetches metadata but does not keep
    it, so read the fetched cluster metadata directly."""
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())]


async def offset_ranges(settings: Settings, topics: Iterable[str]) -> tuple[dict, dict]:
    """Beginning and end offsets of every partition of the topics."""
    consumer = _consumer(settings)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topics)
        if not tps:
            return {}, {}
        return await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def topic_sizes(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """Messages currently held per topic (end minus beginning offsets)."""
    starts, ends = await offset_ranges(settings, topics)
    sizes: dict[str, int] = defaultdict(int)
    for tp in starts:
        sizes[tp.topic] += ends[tp] - starts[tp]
    return dict(sizes)


async def committed_offsets(settings: Settings, group_id: str,
                            tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """The group's committed offsets (partitions without a commit are left out). Read by
    a consumer of the group that never subscribes, so it never joins the group; aiokafka's
    admin client cannot read them from the embedded broker (it drops the connection)."""
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(settings.kafka), group_id=group_id, enable_auto_commit=False,
                                client_id=f"{settings.app.id}-inspect")
    await consumer.start()
    try:
        # One request for all partitions; the public `committed()` sends one per partition.
        committed = await consumer._coordinator.fetch_committed_offsets(list(tps))
    finally:
        await consumer.stop()
    return {tp: meta.offset for tp, meta in committed.items()}


async def consumer_lag(settings: Settings, group_id: str, topics: Iterable[str]) -> dict[str, int]:
    """Per topic: messages the group has not committed yet, over all partitions (all
    workers). A partition without a committed offset counts from its beginning."""
    starts, ends = await offset_ranges(settings, topics)
    committed = await committed_offsets(settings, group_id, starts)
    lag: dict[str, int] = defaultdict(int)
    for tp in starts:
        lag[tp.topic] += max(0, ends[tp] - committed.get(tp, starts[tp]))
    return dict(lag)


async def read_topic(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """Every record a topic holds now, from the beginning up to the current end."""
    consumer = _consumer(settings)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, [topic])
        if not tps:
            raise LookupError(f"topic {topic!r} does not exist")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=500)
            for tp, batch in batches.items():
                records.extend(batch)
            # Under transactions the last offsets may be markers, never returned: use position.
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        if pending:
            raise TimeoutError(f"could not read {topic} to its end within {timeout_s:.0f}s")
        return records
    finally:
        await consumer.stop()


def fold_changelog(records: Iterable[ConsumerRecord]) -> dict[bytes, Optional[bytes]]:
    """The latest value per key, tombstones removing the key (a table from its changelog)."""
    rows: dict[bytes, Optional[bytes]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.value is None:
            rows.pop(record.key, None)
        else:
            rows[record.key] = record.value
    return rows
