"""The local assessor: a deterministic risk verdict from a group's geometry, no network.

It runs when no LLM key is configured (the demo) and, labelled as such, when every key
of the pool is disabled. Distances are in multiples of object size, so the verdict does
not depend on the camera's resolution. Terms, each scored 0..1, the largest wins:

- a pedestrian close to a vehicle (``min_pedestrian_vehicle_distance``), or boxes of a
  pedestrian and a vehicle overlapping;
- a short time to collision (tracking), or a high closing speed;
- two vehicles nearly touching (``min_spacing`` when there are two or more vehicles);
- a crowded group (many road users in one cluster), which never alone exceeds "low".
"""
from __future__ import annotations

import math
from itertools import combinations
from typing import Optional

from streamapp.models import AssessmentResult, AssessmentTaskMessage, DetectedObject, LLMMetadata

HEURISTIC_MODEL = "heuristic"
PEDESTRIANS = frozenset({"person"})
VEHICLES = frozenset({"bicycle", "car", "motorcycle", "bus", "truck"})
LEVELS = ((0.75, "high"), (0.5, "medium"), (0.25, "low"))


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _iou(a: DetectedObject, b: DetectedObject) -> float:
    ax1, ay1, ax2, ay2 = a.bbox
    bx1, by1, bx2, by2 = b.bbox
    w, h = min(ax2, bx2) - max(ax1, bx1), min(ay2, by2) - max(ay1, by1)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def _gap(a: DetectedObject, b: DetectedObject) -> float:
    """Centre distance in multiples of the pair's mean size."""
    (ax, ay), (bx, by) = a.center, b.center
    size = (math.sqrt(max(1.0, (a.bbox[2] - a.bbox[0]) * (a.bbox[3] - a.bbox[1])))
            + math.sqrt(max(1.0, (b.bbox[2] - b.bbox[0]) * (b.bbox[3] - b.bbox[1])))) / 2
    return math.hypot(ax - bx, ay - by) / size


def _closest(objects: list[DetectedObject], left: frozenset, right: frozenset) -> Optional[tuple[DetectedObject, DetectedObject]]:
    pairs = [(a, b) for a, b in combinations(objects, 2)
             if (a.class_name in left and b.class_name in right) or (a.class_name in right and b.class_name in left)]
    return min(pairs, key=lambda p: _gap(*p)) if pairs else None


def assess(task: AssessmentTaskMessage) -> AssessmentResult:
    features = task.group.spatial_features
    objects = task.objects
    ped_vehicle = _closest(objects, PEDESTRIANS, VEHICLES)
    vehicles = _closest(objects, VEHICLES, VEHICLES)

    conflict = 0.0
    if features.min_pedestrian_vehicle_distance is not None:
        conflict = _clamp(1.0 - features.min_pedestrian_vehicle_distance / 2.0)
    if ped_vehicle is not None:
        conflict = max(conflict, _clamp(3.0 * _iou(*ped_vehicle)))
    following = 0.0
    if features.vehicle_count >= 2:
        following = 0.8 * _clamp(1.0 - features.min_spacing)
    if features.time_to_collision is not None:
        following = max(following, _clamp(1.0 - features.time_to_collision / 4.0))
    crowding = min(0.3, 0.05 * max(0, features.object_count - 2))

    score = max(conflict, following, crowding)
    level = next((name for threshold, name in LEVELS if score >= threshold), "none")
    types, involved, reasons = [], [], []
    if conflict >= 0.25 and ped_vehicle is not None:
        types.append("vehicle_pedestrian_conflict")
        involved += [o.object_id for o in ped_vehicle]
        reasons.append("a pedestrian is very close to a vehicle")
    if following >= 0.25:
        types.append("tailgating")
        if vehicles is not None:
            involved += [o.object_id for o in vehicles if o.object_id not in involved]
        reasons.append("vehicles are closing on each other" if features.time_to_collision is not None
                       else "vehicles are following too closely")
    if not reasons:
        reasons.append("a dense cluster of road users" if crowding >= 0.25 else "no close interaction between road users")
    return AssessmentResult(
        risk_level=level,
        risk_types=types if level != "none" else [],
        description=f"Heuristic: {'; '.join(reasons)} (score {score:.2f}).",
        confidence=round(0.4 + 0.4 * score, 2),
        involved_object_ids=involved if level != "none" else [],
    )


def metadata(attempts: int = 1) -> LLMMetadata:
    return LLMMetadata(model=HEURISTIC_MODEL, assessor="heuristic", attempts=attempts)
