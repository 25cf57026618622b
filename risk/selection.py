"""Which traffic groups of a frame are worth a model call, and how urgent each is.

Pure functions of the detection message and the fan-out settings (the seed's Flink
job). The per-camera cooldown works on frame time, not wall time, so replaying a
topic gives the same tasks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from streamapp.models import (
    AssessmentTaskMessage,
    DetectedObject,
    DetectionResultMessage,
    FrameContextMessage,
    TrafficGroup,
)
from streamapp.settings import FanoutSettings

PEDESTRIAN_CLASSES = frozenset({"person"})


def skip_reason(group: TrafficGroup, objects: dict[int, DetectedObject], config: FanoutSettings) -> Optional[str]:
    """Why a group is not worth assessing, or None when it is."""
    members = [objects[i] for i in group.object_ids if i in objects]
    interesting = [o for o in members if o.class_name in config.classes_of_interest]
    if len(interesting) < config.min_members:
        return "too_few_members" if len(members) < config.min_members else "classes_not_of_interest"
    if not any(o.class_name in config.vehicle_classes for o in interesting):
        return "no_vehicle"
    return None


def risk_score(group: TrafficGroup) -> float:
    """A 0..1 geometric urgency: pedestrian close to a vehicle, short time to collision,
    vehicles nearly touching. Distances are in multiples of object size."""
    features = group.spatial_features
    terms = [0.0]
    if features.min_pedestrian_vehicle_distance is not None:
        terms.append(max(0.0, 1.0 - features.min_pedestrian_vehicle_distance / 2.0))
    if features.time_to_collision is not None:
        terms.append(max(0.0, 1.0 - features.time_to_collision / 4.0))
    if features.vehicle_count >= 2:
        terms.append(0.7 * max(0.0, 1.0 - features.min_spacing / 1.0))
    return min(1.0, max(terms))


def priority(score: float) -> int:
    """1 is the most urgent, 3 the least (the seed's scale)."""
    if score >= 0.66:
        return 1
    if score >= 0.33:
        return 2
    return 3


def cooldown_open(last_assessed: Optional[float], frame_time: datetime, cooldown_s: float) -> bool:
    return last_assessed is None or frame_time.timestamp() - last_assessed >= cooldown_s or frame_time.timestamp() < last_assessed


@dataclass
class FanoutPlan:
    tasks: list[AssessmentTaskMessage]
    context: FrameContextMessage
    skipped: dict[str, int] = field(default_factory=dict)
    # The new per-camera cooldown mark (frame time), when tasks were emitted.
    cooldown_mark: Optional[float] = None


def plan_fanout(
    message: DetectionResultMessage, config: FanoutSettings, last_assessed: Optional[float]
) -> FanoutPlan:
    objects = {o.object_id: o for o in message.detected_objects}
    skipped: dict[str, int] = {}
    candidates: list[tuple[float, TrafficGroup]] = []
    for group in message.traffic_groups:
        reason = skip_reason(group, objects, config)
        if reason is None:
            candidates.append((risk_score(group), group))
        else:
            skipped[reason] = skipped.get(reason, 0) + 1

    if candidates and not cooldown_open(last_assessed, message.timestamp, config.cooldown_s):
        skipped["cooldown"] = len(candidates)
        candidates = []
    candidates.sort(key=lambda c: (-c[0], c[1].group_index))
    if len(candidates) > config.max_tasks_per_frame:
        skipped["frame_task_limit"] = len(candidates) - config.max_tasks_per_frame
        candidates = candidates[: config.max_tasks_per_frame]

    tasks = [
        AssessmentTaskMessage(
            origin_message_id=message.message_id,
            camera_id=message.camera_id,
            frame_timestamp=message.timestamp,
            image_width=message.image_width,
            image_height=message.image_height,
            group=group,
            objects=[objects[i] for i in group.object_ids if i in objects],
            priority=priority(score),
        )
        for score, group in candidates
    ]
    context = FrameContextMessage(
        origin_message_id=message.message_id,
        camera_id=message.camera_id,
        camera_name=message.camera_name,
        frame_index=message.frame_index,
        frame_timestamp=message.timestamp,
        image_width=message.image_width,
        image_height=message.image_height,
        detected_objects=message.detected_objects,
        # Crops went to the tasks; the verdict only needs the geometry.
        traffic_groups=[g.model_copy(update={"crop_jpeg_b64": None}) for g in message.traffic_groups],
        process_time_ms=message.process_time_ms,
        assessed_groups={t.group.group_index: t.task_id for t in tasks},
    )
    return FanoutPlan(
        tasks=tasks, context=context, skipped=skipped,
        # Without a cooldown there is nothing to remember (and no table write per frame).
        cooldown_mark=message.timestamp.timestamp() if tasks and config.cooldown_s > 0 else None,
    )
