"""Grouping road users into clusters, and the spatial features of each cluster.

Pure functions over :class:`DetectedObject`. Every distance is scale-free: the gap
between two boxes (edge to edge, 0 when they touch or overlap) divided by the pair's
mean size, where an object's size is the square root of its box area. A 4K camera and
a 640 px camera therefore group the same scene the same way.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from itertools import combinations
from typing import Optional

from streamapp.models import DetectedObject, SpatialFeatures

Box = tuple[float, float, float, float]


def size(box: Box) -> float:
    x1, y1, x2, y2 = box
    return math.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))


def gap_px(a: Box, b: Box) -> float:
    """Edge-to-edge distance between two boxes in pixels; 0 when they touch or overlap."""
    dx = max(a[0] - b[2], b[0] - a[2], 0.0)
    dy = max(a[1] - b[3], b[1] - a[3], 0.0)
    return math.hypot(dx, dy)


def relative_gap(a: Box, b: Box) -> float:
    """The gap between two boxes in multiples of their mean size."""
    scale = (size(a) + size(b)) / 2
    gap = gap_px(a, b)
    if scale <= 0:
        return 0.0 if gap == 0 else math.inf
    return gap / scale


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def group_indices(boxes: Sequence[Box], max_gap: float, min_size: int = 2) -> list[list[int]]:
    """Clusters of box indices linked (transitively) by a relative gap <= max_gap.

    Only clusters of at least `min_size` members are returned, each sorted, ordered by
    their first member.
    """
    uf = _UnionFind(len(boxes))
    for i, j in combinations(range(len(boxes)), 2):
        if relative_gap(boxes[i], boxes[j]) <= max_gap:
            uf.union(i, j)
    clusters: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        clusters.setdefault(uf.find(i), []).append(i)
    return sorted((c for c in clusters.values() if len(c) >= min_size), key=lambda c: c[0])


def union_box(boxes: Sequence[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _center(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def closing(a: DetectedObject, b: DetectedObject) -> tuple[Optional[float], Optional[float]]:
    """(closing speed in object sizes per second, time to collision in seconds) of a pair.

    The closing speed is how fast the centres approach each other (negative when they
    separate); the time to collision is the current gap over that speed, only while
    they approach. Both are None when either object has no velocity.
    """
    if a.velocity is None or b.velocity is None:
        return None, None
    (ax, ay), (bx, by) = _center(a.bbox), _center(b.bbox)
    dx, dy = bx - ax, by - ay
    distance = math.hypot(dx, dy)
    if distance == 0:
        return None, None
    rvx, rvy = b.velocity[0] - a.velocity[0], b.velocity[1] - a.velocity[1]
    speed_px = -(dx * rvx + dy * rvy) / distance
    scale = (size(a.bbox) + size(b.bbox)) / 2
    speed = speed_px / scale if scale > 0 else 0.0
    ttc = gap_px(a.bbox, b.bbox) / speed_px if speed_px > 0 else None
    return speed, ttc


def spatial_features(
    members: Sequence[DetectedObject],
    pedestrian_classes: Collection[str],
    vehicle_classes: Collection[str],
) -> SpatialFeatures:
    """Features of one group (at least two members)."""
    boxes = [m.bbox for m in members]
    frame = union_box(boxes)
    frame_area = (frame[2] - frame[0]) * (frame[3] - frame[1])
    pairs = list(combinations(members, 2))
    gaps = [relative_gap(a.bbox, b.bbox) for a, b in pairs]
    closest = pairs[gaps.index(min(gaps))] if pairs else None
    pv_gaps = [
        g for (a, b), g in zip(pairs, gaps)
        if {a.class_name in pedestrian_classes, b.class_name in pedestrian_classes} == {True, False}
        and (a.class_name in vehicle_classes or b.class_name in vehicle_classes)
    ]
    speed, ttc = closing(*closest) if closest else (None, None)
    return SpatialFeatures(
        object_count=len(members),
        vehicle_count=sum(m.class_name in vehicle_classes for m in members),
        pedestrian_count=sum(m.class_name in pedestrian_classes for m in members),
        # Share of the group's box covered by its members (overlaps count twice).
        density=sum(size(b) ** 2 for b in boxes) / frame_area if frame_area > 0 else 0.0,
        avg_spacing=sum(gaps) / len(gaps) if gaps else 0.0,
        min_spacing=min(gaps) if gaps else 0.0,
        min_pedestrian_vehicle_distance=min(pv_gaps) if pv_gaps else None,
        closing_speed=speed,
        time_to_collision=ttc,
    )
