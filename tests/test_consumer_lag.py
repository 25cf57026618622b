"""Consumer lag, as /stats, /metrics and the benches read it, on Apache Kafka and on the
demo's embedded broker (whose connection aiokafka's admin client could not use, so the
demo's dashboard showed no lag and no DLQ size)."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from streamapp.embedded_broker import EmbeddedBroker
from streamapp.kafka_inspect import consumer_lag
from streamapp.settings import load_settings


@pytest.fixture(params=["apache-kafka", "embedded"])
def bootstrap(request):
    if request.param == "apache-kafka":
        yield request.getfixturevalue("kafka_bootstrap")
        return
    broker = EmbeddedBroker().start()
    try:
        yield broker.url[len("kafka://"):]
    finally:
        broker.stop()


async def committed_at(bootstrap: str, topic: str, group: str, offsets: dict[int, int]) -> None:
    """Five records on partition 0 and three on 1; the group has committed `offsets`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 3)):
            for _ in range(count):
                await producer.send_and_wait(topic, b"x", partition=partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in offsets])
        await consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in offsets.items()})
    finally:
        await consumer.stop()


def test_lag_counts_from_the_commit_or_from_the_beginning_without_one(bootstrap):
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"lag-group-{uuid.uuid4().hex[:8]}"
    settings = load_settings(environ={"TRAFFICRISK_KAFKA__BROKER": f"kafka://{bootstrap}"})
    asyncio.run(committed_at(bootstrap, topic, group, {0: 2}))
    assert asyncio.run(consumer_lag(settings, group, [topic])) == {topic: (5 - 2) + 3}
