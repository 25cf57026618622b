"""Small, valid messages for tests, built the way the detector builds them."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np

from streamapp.models import DetectedObject, DetectionResultMessage, SpatialFeatures, TrafficGroup

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def tiny_jpeg_b64(width: int = 32, height: int = 24) -> str:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 127, np.uint8))
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


def obj(object_id: int, class_name: str, bbox: tuple, class_id: int = 0) -> DetectedObject:
    return DetectedObject(object_id=object_id, class_id=class_id, class_name=class_name, confidence=0.8, bbox=bbox)


def group(index: int, members: list[DetectedObject], *, ped_vehicle: float | None = None,
          min_spacing: float = 0.5, ttc: float | None = None, crop: bool = True) -> TrafficGroup:
    x1 = min(o.bbox[0] for o in members)
    y1 = min(o.bbox[1] for o in members)
    x2 = max(o.bbox[2] for o in members)
    y2 = max(o.bbox[3] for o in members)
    vehicles = [o for o in members if o.class_name != "person"]
    return TrafficGroup(
        group_index=index,
        object_ids=[o.object_id for o in members],
        bbox=(x1, y1, x2, y2),
        classes=sorted({o.class_name for o in members}),
        spatial_features=SpatialFeatures(
            object_count=len(members), vehicle_count=len(vehicles),
            pedestrian_count=len(members) - len(vehicles), density=0.1,
            avg_spacing=min_spacing * 1.5, min_spacing=min_spacing,
            min_pedestrian_vehicle_distance=ped_vehicle, time_to_collision=ttc,
        ),
        crop_jpeg_b64=tiny_jpeg_b64() if crop else None,
    )


def three_group_frame(camera_id: str = "cam-1", at: datetime = T0, frame_index: int = 0) -> DetectionResultMessage:
    """Three groups: pedestrian by a car and two close cars (worth assessing), and two
    pedestrians together (no vehicle, not worth a model call)."""
    objects = [
        obj(0, "person", (100, 100, 130, 180)),
        obj(1, "car", (135, 120, 260, 200), class_id=2),
        obj(2, "car", (400, 100, 520, 180), class_id=2),
        obj(3, "truck", (525, 90, 700, 190), class_id=7),
        obj(4, "person", (20, 300, 50, 380)),
        obj(5, "person", (55, 300, 85, 380)),
    ]
    groups = [
        group(0, objects[0:2], ped_vehicle=0.2),
        group(1, objects[2:4], min_spacing=0.1),
        group(2, objects[4:6]),
    ]
    return DetectionResultMessage(
        camera_id=camera_id, frame_index=frame_index, timestamp=at, image_width=768, image_height=576,
        detected_objects=objects, traffic_groups=groups, frame_preview_b64=tiny_jpeg_b64(64, 48),
    )


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
