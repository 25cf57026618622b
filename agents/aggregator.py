"""Aggregator: joins each frame's context with its group results into one camera verdict.

One stream over frame-context, risk-assessment-results and a small internal topic of
deadline ticks, all keyed by camera id with the same partition count, so every event
of a frame lands on one partition and one worker, in order, and the tables below
can be written (a Faust table is written only from its agent's own stream). A timer
on every worker looks through its open frames and sends a tick naming each camera's
frames past their deadline; the tick comes back through the stream, where the table
may be written. The same tick settles the frames whose verdicts are on Kafka: their
rows leave and their cameras' ledgers remember them (`risk.aggregation.Unsettled`).
"""
import time
from datetime import datetime, timezone

from pydantic import Field

from risk.aggregation import (
    CameraLedger,
    FrameState,
    Step,
    Unsettled,
    apply_context,
    apply_deadline,
    apply_result,
    apply_settled,
    build_verdict,
    due_frames,
)
from streamapp import metrics
from streamapp.app import app, settings, topics
from streamapp.codecs import ByTopicSchema, DeadLetteringTopic, dead_letter
from streamapp.models import FrameContextMessage, Message, RiskAssessmentResultMessage, UtcDatetime, utcnow
from streamapp.settings import ConfigError
from tables.frames import camera_frames, frames
from tables.verdicts import latest_verdicts

config = settings.aggregator


class DeadlineTick(Message):
    """Asks the aggregator to finish these frames of a camera (past their deadline), and
    to settle those whose verdict is on Kafka."""

    camera_id: str
    frame_ids: list[str] = []
    settled: list[str] = []
    sent_at: UtcDatetime = Field(default_factory=utcnow)


_partitions = {
    "frame_context": settings.topics.frame_context.partitions,
    "risk_results": settings.topics.risk_results.partitions,
    "camera_verdicts": settings.topics.camera_verdicts.partitions,
}
if len(set(_partitions.values())) != 1:
    raise ConfigError(
        "topics.frame_context, topics.risk_results and topics.camera_verdicts must have the same "
        f"partition count (the aggregator joins them per camera): {_partitions}"
    )

TICKS_TOPIC = f"{settings.app.id}-aggregator-ticks"
ticks = app.topic(
    TICKS_TOPIC, schema=ByTopicSchema({TICKS_TOPIC: DeadlineTick}),
    partitions=settings.topics.frame_context.partitions, replicas=settings.kafka.replication_factor,
    retention=3600,
)
aggregator_input = DeadLetteringTopic(
    app,
    topics=[settings.topics.frame_context.name, settings.topics.risk_results.name, TICKS_TOPIC],
    schema=ByTopicSchema({
        settings.topics.frame_context.name: FrameContextMessage,
        settings.topics.risk_results.name: RiskAssessmentResultMessage,
        TICKS_TOPIC: DeadlineTick,
    }),
    partitions=settings.topics.frame_context.partitions,
    replicas=settings.kafka.replication_factor,
    retention=3600,
    # Internal: Faust creates the ticks topic before subscribing (the others exist already).
    internal=True,
)
aggregator_input.dlq = topics.dlq
aggregator_input.worker_id = settings.app.worker_id

# This worker's finished frames whose verdict may not be on Kafka yet.
unsettled = Unsettled()


async def _store(event, frame_id: str, had_row: bool, ledger: CameraLedger, step: Step, now: float) -> None:
    camera_id = event.camera_id
    if step.ignored:
        metrics.AGGREGATOR_IGNORED.labels(reason=step.ignored).inc()
        return
    if step.ledger_changed:
        camera_frames[camera_id] = ledger
    frame = step.frame
    if frame is None:
        return
    if not step.leaves:
        frames[frame_id] = frame
        if step.finished:
            _publish_verdict(frame_id, frame, now)
        return
    if had_row:
        del frames[frame_id]
    for result in step.orphaned:
        await topics.dlq.send(key=camera_id, value=dead_letter(
            topic=settings.topics.risk_results.name, partition=None, offset=None, key=camera_id.encode(),
            value=result.to_bytes(), exc=LookupError(f"no frame context for frame {frame_id} before its deadline"),
            reason="frame_context_missing", worker_id=settings.app.worker_id,
        ))
        metrics.DLQ_MESSAGES.labels(reason="frame_context_missing", source=settings.topics.risk_results.name).inc()


def _publish_verdict(frame_id: str, frame: FrameState, now: float) -> None:
    verdict = build_verdict(frame, datetime.fromtimestamp(now, tz=timezone.utc))
    # The table's changelog is camera-verdicts: this write publishes the verdict.
    latest_verdicts[frame.camera_id] = verdict
    unsettled.add(frame.camera_id, frame_id, latest_verdicts.last_write)
    metrics.VERDICTS.labels(outcome="complete" if verdict.complete else "deadline").inc()
    metrics.FRAME_TO_VERDICT.observe((verdict.verdict_at - verdict.frame_timestamp).total_seconds())


@app.agent(aggregator_input)
async def aggregate(stream):
    async for event in stream:
        now = time.time()
        ledger = camera_frames.get(event.camera_id) or CameraLedger()
        if isinstance(event, DeadlineTick):
            for frame_id in event.frame_ids:
                frame = frames.get(frame_id)
                step = apply_deadline(frame, ledger, now, config, unsettled)
                await _store(event, frame_id, frame is not None, ledger, step, now)
            for frame_id in event.settled:
                frame = frames.get(frame_id)
                await _store(event, frame_id, frame is not None, ledger, apply_settled(frame, ledger, config), now)
                unsettled.discard(frame_id)
            continue
        frame_id = str(event.origin_message_id)
        frame = frames.get(frame_id)
        if isinstance(event, FrameContextMessage):
            step = apply_context(frame, ledger, event, now, config, unsettled)
            if not step.ignored:
                metrics.FRAMES_AGGREGATED.inc()
                metrics.DETECTIONS.inc(len(event.detected_objects))
                metrics.GROUPS.inc(len(event.traffic_groups))
        else:
            step = apply_result(frame, ledger, event, now, config, unsettled)
            if not step.ignored:
                metrics.GROUP_RESULTS.labels(status=event.status.value).inc()
        await _store(event, frame_id, frame is not None, ledger, step, now)


@app.timer(interval=config.tick_interval_s)
async def send_deadline_ticks() -> None:
    """Tick the cameras (of this worker's partitions) that have frames due or settled."""
    unsettled.prune(frames.__contains__)
    settled = unsettled.delivered()
    open_frames = [f for f in frames.values() if str(f.origin_message_id) not in unsettled]
    metrics.OPEN_FRAMES.set(len(open_frames))
    due = due_frames(open_frames, time.time(), config)
    for camera_id in due.keys() | settled.keys():
        await ticks.send(key=camera_id, value=DeadlineTick(
            camera_id=camera_id, frame_ids=due.get(camera_id, []), settled=settled.get(camera_id, [])))
