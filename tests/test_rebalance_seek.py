"""After a rebalance a worker seeks back to the committed offsets, so the records it
fetched and dropped while rebalancing are read again, also on partitions that have no
commit yet (aiokafka's own seek leaves those where the dropped records left them)."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streamapp.transport import seek_to_committed
from tests.support import produce

pytestmark = pytest.mark.kafka


async def read_past_five(bootstrap: str, topic: str, commit: int | None) -> AIOKafkaConsumer:
    """A group consumer on `topic` that has fetched up to the end (5) without committing."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"seek-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    if commit is not None:
        await consumer.commit({tp: OffsetAndMetadata(commit, "")})
    while await consumer.position(tp) < 5:
        await consumer.getmany(tp, timeout_ms=2000)
    return consumer


@pytest.mark.parametrize("commit", [None, 0])
def test_a_partition_without_a_commit_past_zero_is_read_again_from_the_start(kafka_bootstrap, commit):
    topic = f"seek-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, [(None, b"x")] * 5)
    tp = TopicPartition(topic, 0)

    async def positions() -> tuple[int, int]:
        consumer = await read_past_five(kafka_bootstrap, topic, commit)
        try:
            await consumer.seek_to_committed()
            aiokafka_alone = await consumer.position(tp)
            await seek_to_committed(consumer, "earliest")
            return aiokafka_alone, await consumer.position(tp)
        finally:
            await consumer.stop()

    aiokafka_alone, ours = asyncio.run(positions())
    assert aiokafka_alone == 5, "aiokafka now seeks these partitions itself; the workaround can go"
    assert ours == 0


def test_a_committed_partition_goes_back_to_its_commit(kafka_bootstrap):
    topic = f"seek-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, [(None, b"x")] * 5)

    async def position() -> int:
        consumer = await read_past_five(kafka_bootstrap, topic, commit=2)
        try:
            committed = await seek_to_committed(consumer, "earliest")
            assert committed == {TopicPartition(topic, 0): 2}
            return await consumer.position(TopicPartition(topic, 0))
        finally:
            await consumer.stop()

    assert asyncio.run(position()) == 2


def test_a_table_changelog_stays_where_recovery_put_it(kafka_bootstrap):
    topic = f"seek-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, [(None, b"x")] * 5)

    async def position() -> int:
        consumer = await read_past_five(kafka_bootstrap, topic, commit=None)
        try:
            await seek_to_committed(consumer, "earliest", is_changelog=lambda tp: True)
            return await consumer.position(TopicPartition(topic, 0))
        finally:
            await consumer.stop()

    assert asyncio.run(position()) == 5
