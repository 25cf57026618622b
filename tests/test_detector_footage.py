"""The real YOLOv8n weights on the real sample footage (fetched from the registries into
the cache by detector.assets, as `make test` does)."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest

from detector.assets import AssetMissing, asset_path
from detector.capture import Frame
from detector.pipeline import DetectionPipeline
from detector.yolo import YoloDetector
from streamapp.settings import DetectorSettings


def read_frames(name: str, indices: list[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(asset_path(name)))
    frames, i = {}, 0
    while len(frames) < len(indices):
        ok, image = cap.read()
        assert ok, f"{name} ended before frame {max(indices)}"
        if i in indices:
            frames[i] = image
        i += 1
    cap.release()
    return frames


@pytest.fixture(scope="module")
def detector() -> YoloDetector:
    asset_path("yolov8n.onnx")
    return YoloDetector(DetectorSettings())


def classes(detections) -> Counter:
    return Counter(d.class_name for d in detections)


def test_finds_pedestrians_and_parked_vehicles_at_the_junction(detector):
    frames = read_frames("vtest.avi", [0, 300])
    for found in detector.detect([frames[0], frames[300]]):
        assert found[0].bbox  # boxes in pixels of the original 768x576 frame
        assert all(0 <= d.bbox[0] < d.bbox[2] <= 768 and 0 <= d.bbox[1] < d.bbox[3] <= 576 for d in found)
        counts = classes(found)
        assert counts["person"] >= 3, counts
        assert counts["car"] + counts["truck"] >= 1, counts


def test_finds_cars_people_and_bikes_in_the_street_footage(detector):
    frames = read_frames("bikes.mp4", [45, 135])
    street, riders = detector.detect([frames[45], frames[135]])
    assert classes(street)["car"] >= 2 and classes(street)["person"] >= 1, classes(street)
    assert {"person", "bicycle", "motorcycle"} <= set(classes(riders)), classes(riders)


def test_only_classes_of_interest_are_reported(detector):
    frames = read_frames("vtest.avi", [100])
    assert set(classes(detector.detect([frames[100]])[0])) <= set(DetectorSettings().classes)


def test_tracking_keeps_ids_and_measures_velocity_across_sampled_frames(detector):
    # Every 5th frame of vtest (0.5 s apart): pedestrians keep their track ids.
    pipeline = DetectionPipeline(DetectorSettings(), detector)
    images = read_frames("vtest.avi", [0, 5, 10, 15])
    messages = [
        pipeline.process([Frame("junction", None, n, images[i], datetime.now(timezone.utc), t=i / 10)])[0]
        for n, i in enumerate(sorted(images))
    ]
    ids = [{o.track_id for o in m.detected_objects if o.track_id is not None} for m in messages]
    assert len(ids[1] & ids[2] & ids[3]) >= 3, ids
    moving = [o.velocity for o in messages[-1].detected_objects if o.velocity and abs(o.velocity[0]) + abs(o.velocity[1]) > 2]
    assert moving, "walking pedestrians must have a velocity in px/s"
    assert all(m.traffic_groups for m in messages)  # the junction always has a cluster


def test_fast_configuration_still_finds_pedestrians(detector):
    # The speed-up model (dynamic axes, 320 px input, batches) on the same frames.
    fast = YoloDetector(DetectorSettings(model="asset:yolov8n-dynamic.onnx", imgsz=320, batch_size=2))
    frames = read_frames("vtest.avi", [0, 300])
    for found in fast.detect([frames[0], frames[300]]):
        assert classes(found)["person"] >= 3, classes(found)


@pytest.mark.parametrize("model", ["yolov8n.pt", "yolov8n_openvino_model"])
def test_pytorch_and_openvino_models_find_the_same_objects_as_the_onnx_export(detector, model):
    if model.endswith("openvino_model"):
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    other = YoloDetector(DetectorSettings(model=f"asset:{model}"))
    frame = read_frames("vtest.avi", [0])[0]
    onnx_found, other_found = detector.detect([frame])[0], other.detect([frame])[0]
    assert classes(other_found) == classes(onnx_found)
    for a, b in zip(sorted(onnx_found, key=lambda d: d.bbox), sorted(other_found, key=lambda d: d.bbox)):
        assert a.bbox == pytest.approx(b.bbox, abs=2.0)


def test_missing_model_says_how_to_fetch_it(tmp_path):
    with pytest.raises(AssetMissing, match=r"python -m detector.assets"):
        YoloDetector(DetectorSettings(model=tmp_path / "nothing.onnx"))
