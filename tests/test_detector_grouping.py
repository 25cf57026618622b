"""Grouping, spatial features, crops, motion gating and the frame queue on hand-made
inputs with known answers."""
from __future__ import annotations

import base64
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest

from detector.capture import Frame
from detector.crops import crop_b64, expand_box
from detector.grouping import group_indices, relative_gap, spatial_features
from detector.motion import MotionGate
from detector.pipeline import build_message
from detector.runner import FrameQueue
from streamapp.models import DetectedObject, DetectionResultMessage
from streamapp.settings import DetectorSettings

PEDESTRIANS, VEHICLES = {"person"}, {"bicycle", "car", "bus", "truck", "motorcycle"}


def obj(i: int, cls: str, box, velocity=None) -> DetectedObject:
    return DetectedObject(object_id=i, class_id=0 if cls == "person" else 2, class_name=cls, confidence=0.9,
                          bbox=box, velocity=velocity)


def scaled(box, k):
    return tuple(v * k for v in box)


def test_gap_is_measured_in_object_sizes():
    # Two 10x10 boxes, 5 px apart: half their size.
    assert relative_gap((0, 0, 10, 10), (15, 0, 25, 10)) == pytest.approx(0.5)
    assert relative_gap((0, 0, 10, 10), (5, 5, 20, 20)) == 0.0  # overlapping
    # Diagonal gap: 3 px across and 4 px down is 5 px.
    assert relative_gap((0, 0, 10, 10), (13, 14, 23, 24)) == pytest.approx(0.5)


def test_close_objects_group_and_far_ones_stay_alone():
    boxes = [(0, 0, 10, 10), (15, 0, 25, 10), (100, 100, 110, 110)]
    assert group_indices(boxes, max_gap=1.0) == [[0, 1]]


def test_group_splits_when_pedestrian_moves_away():
    car = (100, 100, 140, 140)  # size 40
    near = (150, 100, 160, 140)  # gap 10 px, mean size (40 + 20) / 2 = 30
    away = (200, 100, 210, 140)  # gap 60 px
    assert group_indices([car, near], max_gap=1.0) == [[0, 1]]
    assert group_indices([car, away], max_gap=1.0) == []


def test_grouping_links_chains_transitively():
    boxes = [(0, 0, 10, 10), (15, 0, 25, 10), (30, 0, 40, 10)]  # 0-2 are 20 px = 2 sizes apart
    assert relative_gap(boxes[0], boxes[2]) == pytest.approx(2.0)
    assert group_indices(boxes, max_gap=1.0) == [[0, 1, 2]]


@pytest.mark.parametrize("k", [1, 6])
def test_grouping_is_the_same_at_any_resolution(k):
    boxes = [(0, 0, 10, 20), (18, 0, 28, 20), (60, 0, 100, 30), (108, 5, 148, 35), (300, 300, 310, 320)]
    assert group_indices([scaled(b, k) for b in boxes], max_gap=1.0) == [[0, 1], [2, 3]]


def test_features_of_a_pedestrian_next_to_a_car():
    members = [obj(0, "person", (0, 0, 10, 10)), obj(1, "car", (15, 0, 25, 10))]
    f = spatial_features(members, PEDESTRIANS, VEHICLES)
    assert (f.object_count, f.pedestrian_count, f.vehicle_count) == (2, 1, 1)
    assert f.density == pytest.approx(200 / 250)  # two 100 px^2 boxes in a 25x10 group box
    assert f.min_spacing == pytest.approx(0.5)
    assert f.avg_spacing == pytest.approx(0.5)
    assert f.min_pedestrian_vehicle_distance == pytest.approx(0.5)
    assert f.closing_speed is None and f.time_to_collision is None  # no tracking, no velocities


def test_features_are_scale_free():
    base = [obj(0, "person", (0, 0, 10, 10)), obj(1, "car", (15, 0, 25, 10)), obj(2, "car", (30, 2, 40, 12))]
    big = [obj(o.object_id, o.class_name, scaled(o.bbox, 8)) for o in base]
    a, b = spatial_features(base, PEDESTRIANS, VEHICLES), spatial_features(big, PEDESTRIANS, VEHICLES)
    assert a.model_dump() == pytest.approx(b.model_dump())


def test_closing_speed_and_time_to_collision_of_the_closest_pair():
    # The car drives at 10 px/s towards the standing pedestrian, 5 px away: 1 size/s, 0.5 s.
    members = [obj(0, "person", (0, 0, 10, 10), velocity=(0, 0)), obj(1, "car", (15, 0, 25, 10), velocity=(-10, 0)),
               obj(2, "car", (60, 0, 70, 10), velocity=(50, 0))]
    f = spatial_features(members, PEDESTRIANS, VEHICLES)
    assert f.closing_speed == pytest.approx(1.0)
    assert f.time_to_collision == pytest.approx(0.5)


def test_objects_moving_apart_have_no_time_to_collision():
    members = [obj(0, "person", (0, 0, 10, 10), velocity=(-5, 0)), obj(1, "car", (15, 0, 25, 10), velocity=(5, 0))]
    f = spatial_features(members, PEDESTRIANS, VEHICLES)
    assert f.closing_speed == pytest.approx(-1.0)
    assert f.time_to_collision is None


def test_no_pedestrian_vehicle_distance_without_both_roles():
    members = [obj(0, "person", (0, 0, 10, 10)), obj(1, "person", (12, 0, 22, 10))]
    assert spatial_features(members, PEDESTRIANS, VEHICLES).min_pedestrian_vehicle_distance is None


def decode(b64: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)


def test_crop_takes_margin_is_clipped_and_shrunk():
    frame = np.zeros((1000, 2000, 3), np.uint8)
    assert expand_box((100, 100, 200, 300), 0.1, 2000, 1000) == (90, 80, 210, 320)
    assert expand_box((0, 0, 2000, 1000), 0.1, 2000, 1000) == (0, 0, 2000, 1000)
    crop = decode(crop_b64(frame, (0, 0, 1600, 400), 0.0, max_side=640, quality=80))
    assert crop.shape[:2] == (160, 640)
    assert decode(crop_b64(frame, (10, 10, 50, 30), 0.0, 640, 80)).shape[:2] == (20, 40)  # never upscaled


def frame_of(image: np.ndarray, camera: str = "cam", index: int = 0, t: float = 0.0) -> Frame:
    return Frame(camera_id=camera, camera_name=None, index=index, image=image,
                 captured_at=datetime.now(timezone.utc), t=t)


def test_message_from_a_4k_frame_with_20_groups_stays_under_1_mb():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (2160, 3840, 3), dtype=np.uint8)  # noise: the worst case for JPEG
    objects = []
    for g in range(20):  # 20 pairs of large boxes, far apart from each other
        x, y = (g % 5) * 760, (g // 5) * 540
        objects += [obj(2 * g, "car", (x, y, x + 300, y + 400)), obj(2 * g + 1, "person", (x + 320, y, x + 620, y + 400))]
    settings = DetectorSettings(group_gap=0.2)  # pairs 0.06 sizes apart, 0.4 sizes from the next pair
    message = build_message(frame_of(image), objects, settings)
    data = message.to_bytes()
    assert len(data) <= settings.max_message_bytes < 1_048_576
    parsed = DetectionResultMessage.model_validate_json(data)
    assert len(parsed.traffic_groups) == 20
    crops = [decode(g.crop_jpeg_b64) for g in parsed.traffic_groups]
    assert all(c is not None and max(c.shape[:2]) < settings.crop_max_side for c in crops)  # shrunk, still there
    assert max(decode(parsed.frame_preview_b64).shape[:2]) == settings.preview_max_side


def test_motion_gate_skips_still_frames_and_redetects_on_change_or_age():
    gate = MotionGate(threshold=0.01, max_age_s=9.0)
    still = np.full((480, 640, 3), 100, np.uint8)
    moved = still.copy()
    cv2.rectangle(moved, (100, 100), (300, 300), (255, 255, 255), -1)
    assert gate.should_detect(still, 0.0)  # first frame
    assert not gate.should_detect(still.copy(), 1.8)
    assert gate.should_detect(moved, 3.6)
    assert not gate.should_detect(moved.copy(), 5.4)
    assert gate.should_detect(moved.copy(), 12.6)  # 9 s since the last detection


def test_queue_drops_the_oldest_frame_and_counts_it():
    queue = FrameQueue(maxsize=2)
    image = np.zeros((4, 4, 3), np.uint8)
    for i in range(3):
        queue.put(frame_of(image, "a", i))
    assert queue.dropped == 1
    assert [f.index for f in queue.take(5, timeout=0)] == [1]  # one frame per camera per batch
    assert [f.index for f in queue.take(5, timeout=0)] == [2]


def test_queue_batches_frames_of_different_cameras():
    queue = FrameQueue(maxsize=10)
    image = np.zeros((4, 4, 3), np.uint8)
    for camera in "abca":
        queue.put(frame_of(image, camera))
    assert [f.camera_id for f in queue.take(4, timeout=0)] == ["a", "b", "c"]
