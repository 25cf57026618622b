"""The aggregator's rules: when a frame is complete, what its verdict says, what to ignore.

A frame is known from two kinds of events, in either order: its context (sent once
by the fan-out: objects, groups, and which groups went to assessment) and
one result per assessed group. A frame is complete when its context is there and
every assessed group has a result; it is finished early by its deadline, counted
from the moment the aggregator first saw anything of it. Results are matched by
group index, so a redelivered result (same task) or a second result for the same
group (a re-run fan-out makes new task ids) is ignored. Finished frame ids are
remembered per camera (bounded), so nothing that arrives late makes a second verdict.

A finished frame keeps its row, and joins its camera's ledger, only once its verdict
is on Kafka (:class:`Unsettled`, :func:`apply_settled`). The row, the ledger and the
verdict are records on different topics, which a worker killed mid-write can leave
half written; a row that outlives its verdict is finished again by the next owner
(the relay drops a verdict it already sent), while a ledger entry or a deleted row
that outlived a lost verdict would lose that verdict for good.

Plain functions on plain models: the agent loads the rows, calls these, and stores
what they return. They mutate and return the rows they are given. A frame's row holds
its context and its results: the context is a few KB (no crops, no preview image),
so one row per frame costs fewer table writes than a row for each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Container, Iterable, Optional, Protocol
from uuid import UUID

from pydantic import BaseModel

from streamapp.models import (
    RISK_ORDER,
    CameraVerdictMessage,
    FrameContextMessage,
    GroupVerdict,
    RiskAssessmentResultMessage,
    RiskLevel,
)
from streamapp.settings import AggregatorSettings

# A frame counts as dangerous driving from this level up ("low" is shown, not alarmed).
DANGEROUS_FROM: RiskLevel = "medium"


class FrameState(BaseModel):
    """One open frame: what has arrived so far (a row of the frames table)."""

    origin_message_id: UUID
    camera_id: str
    # Wall-clock epoch seconds when the aggregator first saw the frame.
    first_seen: float
    # None until the context has arrived.
    context: Optional[FrameContextMessage] = None
    # group_index (as text: JSON object keys) -> the first result for that group.
    results: dict[str, RiskAssessmentResultMessage] = {}

    @property
    def assessed(self) -> Optional[dict[int, UUID]]:
        """group_index -> task_id of the groups sent for assessment; None without context."""
        return None if self.context is None else self.context.assessed_groups


class CameraLedger(BaseModel):
    """Per camera: the ids of recently finished frames (open frames are the rows of the
    frames table, each with its own deadline: :func:`deadline`)."""

    finished: list[str] = []


@dataclass
class Step:
    """What one event changed: the frame's state after it (None: an unknown frame),
    whether the camera's ledger changed, whether the frame finished (its verdict is due:
    :func:`build_verdict`; the row stays until the verdict is on Kafka), and whether the
    frame leaves the table, either settled (its verdict is on Kafka) or dropped (its
    context never came; its results are handed back in ``orphaned`` for the DLQ)."""

    frame: Optional[FrameState]
    ledger_changed: bool = False
    finished: bool = False
    settled: bool = False
    dropped: bool = False
    # Why the event changed nothing (a metrics label); nothing is to be stored then.
    ignored: Optional[str] = None
    orphaned: list[RiskAssessmentResultMessage] = field(default_factory=list)

    @property
    def leaves(self) -> bool:
        return self.settled or self.dropped


class Delivery(Protocol):
    """A record's delivery to Kafka (Faust's FutureMessage)."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def exception(self) -> Optional[BaseException]: ...


class Unsettled:
    """Frames whose verdict was sent but may not be on Kafka yet, per worker, in memory.

    Until settled, events for the frame are ignored (it is finished) and the deadline
    timer leaves its row alone; once the verdict's delivery is confirmed, the agent
    settles it (:func:`apply_settled`). A worker that dies forgets these, and whoever
    recovers the rows finishes them again."""

    def __init__(self) -> None:
        self._sent: dict[str, tuple[str, Delivery]] = {}

    def add(self, camera_id: str, frame_id: str, delivery: Delivery) -> None:
        self._sent[frame_id] = (camera_id, delivery)

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self._sent

    def discard(self, frame_id: str) -> None:
        self._sent.pop(frame_id, None)

    def prune(self, has_row: Callable[[str], bool]) -> None:
        """Forget frames whose row is gone: settled, or on a partition this worker lost."""
        for frame_id in [f for f in self._sent if not has_row(f)]:
            del self._sent[frame_id]

    def delivered(self) -> dict[str, list[str]]:
        """camera_id -> ids of its frames whose verdict is on Kafka, in the order sent."""
        out: dict[str, list[str]] = {}
        for frame_id, (camera_id, delivery) in self._sent.items():
            if delivery.done() and not delivery.cancelled() and delivery.exception() is None:
                out.setdefault(camera_id, []).append(frame_id)
        return out


def missing_groups(frame: FrameState) -> list[int]:
    if frame.assessed is None:
        return []
    return sorted(g for g in frame.assessed if str(g) not in frame.results)


def is_complete(frame: FrameState) -> bool:
    return frame.assessed is not None and not missing_groups(frame)


def max_risk(levels: list[RiskLevel]) -> RiskLevel:
    return max(levels, key=RISK_ORDER.__getitem__, default="none")


def build_verdict(frame: FrameState, now: datetime) -> CameraVerdictMessage:
    context = frame.context
    if context is None:
        raise ValueError(f"frame {frame.origin_message_id} has no context: no verdict can be built")
    results = [frame.results[k] for k in sorted(frame.results, key=int)]
    level = max_risk([r.assessment.risk_level for r in results if r.assessment is not None])
    missing = missing_groups(frame)
    return CameraVerdictMessage(
        origin_message_id=context.origin_message_id,
        camera_id=context.camera_id,
        camera_name=context.camera_name,
        frame_index=context.frame_index,
        frame_timestamp=context.frame_timestamp,
        image_width=context.image_width,
        image_height=context.image_height,
        detected_objects=context.detected_objects,
        traffic_groups=context.traffic_groups,
        process_time_ms=context.process_time_ms,
        results=[
            GroupVerdict(
                group_index=r.group_index, task_id=r.task_id, status=r.status,
                assessment=r.assessment, llm_metadata=r.llm_metadata, error=r.error,
            )
            for r in results
        ],
        missing_groups=missing,
        max_risk_level=level,
        has_dangerous_driving=RISK_ORDER[level] >= RISK_ORDER[DANGEROUS_FROM],
        complete=not missing,
        verdict_at=now,
    )


def _is_finished(frame_id: object, ledger: CameraLedger, unsettled: Container[str]) -> bool:
    return str(frame_id) in unsettled or str(frame_id) in ledger.finished


def _after_event(frame: FrameState) -> Step:
    """After an event was added: finish the frame, or keep it open."""
    return Step(frame=frame, finished=is_complete(frame))


def apply_context(
    frame: Optional[FrameState], ledger: CameraLedger, context: FrameContextMessage,
    now: float, config: AggregatorSettings, unsettled: Container[str] = (),
) -> Step:
    if _is_finished(context.origin_message_id, ledger, unsettled):
        return Step(frame=None, ignored="frame_finished")
    if frame is not None and frame.assessed is not None:
        return Step(frame=frame, ignored="duplicate_context")
    if frame is None:
        frame = FrameState(origin_message_id=context.origin_message_id, camera_id=context.camera_id, first_seen=now)
    frame.context = context
    return _after_event(frame)


def apply_result(
    frame: Optional[FrameState], ledger: CameraLedger, result: RiskAssessmentResultMessage,
    now: float, config: AggregatorSettings, unsettled: Container[str] = (),
) -> Step:
    if _is_finished(result.origin_message_id, ledger, unsettled):
        return Step(frame=None, ignored="frame_finished")
    if frame is not None and str(result.group_index) in frame.results:
        return Step(frame=frame, ignored="duplicate_result")
    if frame is None:
        frame = FrameState(origin_message_id=result.origin_message_id, camera_id=result.camera_id, first_seen=now)
    frame.results[str(result.group_index)] = result
    return _after_event(frame)


def deadline(frame: FrameState, config: AggregatorSettings) -> float:
    """Counted from when the aggregator first saw anything of the frame."""
    return frame.first_seen + config.deadline_s


def _is_due(frame: FrameState, now: float, config: AggregatorSettings) -> bool:
    # A complete row that is still open is one whose verdict a dead worker may not have
    # delivered (only unsettled rows are complete): finish it at once.
    return is_complete(frame) or deadline(frame, config) <= now


def due_frames(open_frames: Iterable[FrameState], now: float, config: AggregatorSettings) -> dict[str, list[str]]:
    """camera_id -> ids of its open frames that are due (deadline passed, or complete), oldest first."""
    due: dict[str, list[FrameState]] = {}
    for frame in open_frames:
        if _is_due(frame, now, config):
            due.setdefault(frame.camera_id, []).append(frame)
    return {camera: [str(f.origin_message_id) for f in sorted(frames, key=lambda f: f.first_seen)]
            for camera, frames in due.items()}


def apply_deadline(
    frame: Optional[FrameState], ledger: CameraLedger, now: float, config: AggregatorSettings,
    unsettled: Container[str] = (),
) -> Step:
    """A frame's deadline passed: its verdict lists the groups still missing. A frame
    whose context never came cannot make a verdict; its results are handed back to be
    dead-lettered, and its id is not remembered, so a late context still gets a verdict.
    A frame that finished or is not due yet (a tick from a clock ahead) stays; a row
    its ledger already remembers (its settling was cut short) leaves."""
    if frame is None or str(frame.origin_message_id) in unsettled:
        return Step(frame=None, ignored="frame_finished")
    if str(frame.origin_message_id) in ledger.finished:
        return Step(frame=frame, settled=True)
    if not _is_due(frame, now, config):
        return Step(frame=frame, ignored="not_due")
    if frame.assessed is None:
        return Step(frame=frame, dropped=True, orphaned=list(frame.results.values()))
    return Step(frame=frame, finished=True)


def apply_settled(frame: Optional[FrameState], ledger: CameraLedger, config: AggregatorSettings) -> Step:
    """The frame's verdict is on Kafka: its row leaves and its camera's ledger remembers it."""
    if frame is None:
        return Step(frame=None, ignored="already_settled")
    ledger.finished.append(str(frame.origin_message_id))
    del ledger.finished[: -config.remember_finished]
    return Step(frame=frame, ledger_changed=True, settled=True)
