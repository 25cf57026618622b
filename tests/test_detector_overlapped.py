"""The detector's two-stage pipeline: the model on one batch while a worker finishes the
previous one must give the same messages, in the same order, as running them in turn."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from detector.capture import Frame
from detector.pipeline import DetectionPipeline, Overlapped
from detector.yolo import Detection
from streamapp.settings import DetectorSettings

PERSON = Detection((10.0, 10.0, 30.0, 60.0), 0, "person", 0.9)
CAR = Detection((35.0, 20.0, 90.0, 60.0), 2, "car", 0.8)


class Scripted:
    """A detector that reports a person next to a car in every frame."""

    def detect(self, images):
        return [[PERSON, CAR] for _ in images]


def batch(n: int, cameras: int = 2) -> list[Frame]:
    image = np.full((120, 160, 3), 40 * n % 255, np.uint8)
    return [Frame(f"cam{k}", None, n, image, datetime.now(timezone.utc), t=n * 1.8) for k in range(cameras)]


def test_overlapped_batches_give_the_same_messages_in_order_and_close_drains_them():
    settings = DetectorSettings(tracking=False)
    got, expected = [], []
    overlapped = Overlapped(DetectionPipeline(settings, Scripted(), [got.append]))
    for n in range(6):
        overlapped.submit(batch(n))
    overlapped.close()  # returns only when every submitted batch reached the sinks
    sequential = DetectionPipeline(settings, Scripted(), [expected.append])
    for n in range(6):
        sequential.process(batch(n))
    assert [[(m.camera_id, m.frame_index) for m in ms] for ms in got] == \
        [[(m.camera_id, m.frame_index) for m in ms] for ms in expected]
    for a, b in zip(sum(got, []), sum(expected, [])):
        assert a.detected_objects == b.detected_objects
        assert [g.object_ids for g in a.traffic_groups] == [g.object_ids for g in b.traffic_groups] == [[0, 1]]
        assert a.frame_preview_b64 == b.frame_preview_b64 and a.traffic_groups[0].crop_jpeg_b64


def test_a_batch_that_fails_to_finish_does_not_stop_the_next_ones():
    got = []

    def sink(messages):
        if messages[0].frame_index == 1:
            raise RuntimeError("sink failed")
        got.append(messages)

    overlapped = Overlapped(DetectionPipeline(DetectorSettings(tracking=False), Scripted(), [sink]))
    for n in range(3):
        overlapped.submit(batch(n))
    overlapped.close()
    assert [ms[0].frame_index for ms in got] == [0, 2]
