"""Assessor: each assessment task becomes one result (keyed by camera) or one dead letter.

``llm.concurrency`` actors share the topic's queue, one task each at a time; Faust
acknowledges a task when its actor asks for the next one and commits only offsets
below the first unacknowledged one, so a task's offset is committed only after its
result or dead letter was delivered. Calls time out well under
``stream_processing_timeout``.
"""
import functools
import logging

from llm.assess import Assessor
from llm.client import ChatClient
from streamapp import metrics
from streamapp.app import app, settings, topics
from streamapp.codecs import dead_letter
from tables.keypool import shared_pool, shared_pool_view, wait_until_loaded

log = logging.getLogger(__name__)


@functools.cache
def task_assessor() -> Assessor:
    pool = shared_pool()
    client = ChatClient(settings.llm, user_agent=f"trafficrisk worker/{settings.app.worker_id}") if pool else None
    return Assessor(settings.llm, pool, client)


def pool_summary() -> dict:
    """Key pool and assessor statistics, key names only (for /keys and /stats)."""
    return {**shared_pool_view(), "assessor": task_assessor().stats.as_dict()}


@app.agent(topics.assessment_tasks, concurrency=settings.llm.concurrency)
async def assessor(stream):
    await wait_until_loaded()
    try:
        async for event in stream.events():
            await _handle(event)
    finally:
        if task_assessor().client is not None:
            await task_assessor().client.close()


async def _handle(event) -> None:
    """Assess one task; deliver its result or its dead letter."""
    outcome = await task_assessor().assess(event.value)
    if outcome.result is not None:
        delivered = await topics.risk_results.send(key=outcome.task.camera_id, value=outcome.result)
    else:
        message = event.message
        reason = outcome.error.error_class.value
        letter = dead_letter(
            topic=message.topic, partition=message.partition, offset=message.offset, key=message.key,
            value=message.value, exc=outcome.error, reason=reason, worker_id=settings.app.worker_id,
            attempts=outcome.attempts,
        )
        metrics.DLQ_MESSAGES.labels(reason=reason, source=message.topic).inc()
        delivered = await topics.dlq.send(key=message.key, value=letter)
    await delivered  # on Kafka before this actor takes (and so acknowledges) the next task
