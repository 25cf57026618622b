"""A worker commits an offset only when every message below it is done, however out
of order its actors finish (Faust 0.15 alone committed past messages in flight)."""
from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import TP, Message

from streamapp.offsets import PartitionProgress
from streamapp.transport import Consumer

TASKS = TP("tasks", 0)


def test_nothing_is_committable_before_anything_is_delivered():
    assert PartitionProgress().committable() is None


def test_the_commit_stops_at_the_lowest_message_still_in_flight():
    progress = PartitionProgress()
    for offset in range(10):
        progress.delivered(offset)
    for offset in (3, 4, 5, 1):
        progress.acked(offset)
    assert progress.committable() == 0
    progress.acked(0)
    assert progress.committable() == 2
    progress.acked(2)
    assert progress.committable() == 6


def test_when_nothing_is_in_flight_the_commit_is_past_the_last_delivered():
    progress = PartitionProgress()
    for offset in (7, 8):
        progress.delivered(offset)
        progress.acked(offset)
    assert progress.committable() == 9


def test_offsets_never_delivered_do_not_hold_the_commit_back():
    progress = PartitionProgress()
    # 11 and 12 are transaction markers: the consumer never sees them.
    for offset in (10, 13, 14):
        progress.delivered(offset)
    for offset in (10, 13):
        progress.acked(offset)
    assert progress.committable() == 14


def test_after_a_seek_back_the_delivered_again_are_outstanding_again():
    progress = PartitionProgress()
    for offset in range(5):
        progress.delivered(offset)
    progress.acked(0)
    progress.acked(3)
    for offset in (2, 3, 4):
        progress.delivered(offset)
    progress.acked(1)
    assert progress.committable() == 2
    for offset in (2, 3, 4):
        progress.acked(offset)
    assert progress.committable() == 5


@pytest.fixture
def consumer():
    app = faust.App("commit-offsets-test", broker="kafka://127.0.0.1:1")
    app.topics._acking_topics.add(TASKS.topic)

    async def on_message(message: Message) -> None:
        return None

    async def on_rebalance(tps) -> None:
        return None

    return Consumer(app.transport, callback=on_message, on_partitions_revoked=on_rebalance,
                    on_partitions_assigned=on_rebalance)


def deliver(consumer: Consumer, offsets) -> dict[int, Message]:
    messages = {o: Message(TASKS.topic, TASKS.partition, o, 0.0, 0, None, b"k", b"v", None) for o in offsets}

    async def run() -> None:
        for message in messages.values():
            await consumer.callback(message)

    asyncio.run(run())
    return messages


def test_a_fresh_group_does_not_commit_past_messages_in_flight(consumer):
    messages = deliver(consumer, range(10))
    for offset in (3, 4, 5):
        consumer.ack(messages[offset])
    assert consumer._filter_committable_offsets([TASKS]) == {TASKS: 0}
    for offset in (0, 1, 2):
        consumer.ack(messages[offset])
    assert consumer._filter_committable_offsets([TASKS]) == {TASKS: 6}


def test_after_a_commit_the_next_message_in_flight_holds_the_commit(consumer):
    messages = deliver(consumer, range(10))
    for offset in range(6):
        consumer.ack(messages[offset])
    consumer._committed_offset[TASKS] = consumer._filter_committable_offsets([TASKS])[TASKS]
    for offset in (7, 8):
        consumer.ack(messages[offset])
    assert consumer._filter_committable_offsets([TASKS]) == {}
    consumer.ack(messages[6])
    assert consumer._filter_committable_offsets([TASKS]) == {TASKS: 9}


def test_a_new_assignment_forgets_what_was_delivered_before(consumer):
    messages = deliver(consumer, range(3))
    consumer.ack(messages[0])
    asyncio.run(consumer.on_partitions_revoked({TASKS}))
    assert consumer._filter_committable_offsets([TASKS]) == {}


def test_messages_read_again_below_the_commit_do_not_hold_it_back(consumer):
    messages = deliver(consumer, range(10))
    for offset in range(6):
        consumer.ack(messages[offset])
    consumer._committed_offset[TASKS] = consumer._filter_committable_offsets([TASKS])[TASKS]
    # A seek back to an older commit reads 4.. again; Faust records no ack below its
    # committed offset (6), so waiting for those acks would stop every later commit.
    again = deliver(consumer, range(4, 10))
    for offset in range(4, 10):
        consumer.ack(again[offset])
    assert consumer._filter_committable_offsets([TASKS]) == {TASKS: 10}
