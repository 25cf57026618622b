"""From sampled frames to `DetectionResultMessage`s: detect, track, group, crop.

One `DetectionPipeline` serves every camera of a runner with one shared model; each
camera keeps its own tracker and motion gate. Each batch's finished messages go to the
sinks: the Kafka producer (`use_kafka`) and/or a callback (the seed's in-process
WebSocket push).
A batch goes through two stages, `detect` (motion gate, model) and `finish` (tracking,
grouping, crops, preview, sinks); `Overlapped` runs them in two threads.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from detector import crops
from detector.capture import Frame
from detector.grouping import group_indices, spatial_features, union_box
from detector.motion import MotionGate
from detector.tracking import CameraTracker
from detector.yolo import Detection
from streamapp import metrics
from streamapp.models import DetectedObject, DetectionResultMessage, TrafficGroup
from streamapp.settings import DetectorSettings

log = logging.getLogger(__name__)

Sink = Callable[[list[DetectionResultMessage]], None]
# Objects, groups and features of a frame (max_det=100) stay well under this in JSON.
NON_IMAGE_BYTES_BOUND = 64_000
MIN_CROP_SIDE = 96


class Detector(Protocol):
    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]: ...


def build_groups(
    frame: np.ndarray, objects: Sequence[DetectedObject], settings: DetectorSettings,
    crop_side: Optional[int], crop_quality: int,
) -> list[TrafficGroup]:
    """Groups of nearby objects with their features and (when crop_side is set) crops."""
    groups = []
    for index, members in enumerate(group_indices([o.bbox for o in objects], settings.group_gap, settings.min_group_size)):
        chosen = [objects[i] for i in members]
        box = union_box([o.bbox for o in chosen])
        group = TrafficGroup(
            group_index=index,
            object_ids=[o.object_id for o in chosen],
            bbox=box,
            classes=sorted({o.class_name for o in chosen}),
            spatial_features=spatial_features(chosen, settings.pedestrian_classes, settings.vehicle_classes),
        )
        if crop_side:
            # Assigned, not validated: base64 we just encoded, which validation would decode again.
            group.crop_jpeg_b64 = crops.crop_b64(frame, box, settings.crop_margin, crop_side, crop_quality)
        groups.append(group)
    return groups


def build_message(frame: Frame, objects: list[DetectedObject], settings: DetectorSettings) -> DetectionResultMessage:
    """The message for one frame, its crops shrunk until it fits `max_message_bytes`."""
    height, width = frame.image.shape[:2]
    message = DetectionResultMessage(
        camera_id=frame.camera_id, camera_name=frame.camera_name, frame_index=frame.index,
        timestamp=frame.captured_at, image_width=width, image_height=height,
        detected_objects=objects,
    )
    message.frame_preview_b64 = crops.preview_b64(frame.image, settings.preview_max_side, settings.preview_quality)
    side, quality = settings.crop_max_side, settings.crop_quality
    while True:
        message.traffic_groups = build_groups(frame.image, objects, settings, side, quality)
        images = len(message.frame_preview_b64 or "") + sum(len(g.crop_jpeg_b64 or "") for g in message.traffic_groups)
        # Serialising the message costs as much as sending it: measure it only near the limit.
        if side is None or images + NON_IMAGE_BYTES_BOUND <= settings.max_message_bytes \
                or len(message.to_bytes()) <= settings.max_message_bytes:
            break
        if side > MIN_CROP_SIDE:
            side, quality = max(int(side * 0.7), MIN_CROP_SIDE), max(quality - 10, 40)
        else:
            # Still too big at thumbnail size: send the groups without crops.
            log.warning("camera %s: %d groups do not fit %d bytes even as thumbnails; crops left out",
                        frame.camera_id, len(message.traffic_groups), settings.max_message_bytes)
            side = None
    return message


def to_objects(detections: Sequence[Detection], tracks: Optional[Sequence] = None) -> list[DetectedObject]:
    return [
        DetectedObject(
            object_id=i, class_id=d.class_id, class_name=d.class_name, confidence=d.confidence,
            bbox=tuple(max(v, 0.0) for v in d.bbox),
            track_id=tracks[i].track_id if tracks else None,
            velocity=tracks[i].velocity if tracks else None,
        )
        for i, d in enumerate(detections)
    ]


class CameraState:
    """What one camera remembers between its frames."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.tracker = CameraTracker(settings.track_buffer) if settings.tracking else None
        self.gate = MotionGate(settings.motion_threshold, settings.motion_max_age_s) if settings.motion_gating else None
        self.objects: list[DetectedObject] = []

    def needs_detection(self, frame: Frame) -> bool:
        return self.gate is None or self.gate.should_detect(frame.image, frame.t)

    def update(self, frame: Frame, detections: Sequence[Detection]) -> list[DetectedObject]:
        tracks = self.tracker.update(detections, frame.t, frame.image.shape[:2]) if self.tracker else None
        self.objects = to_objects(detections, tracks)
        return self.objects


@dataclass
class Detected:
    """A batch after the model, before tracking: detections by position in `frames`
    (gated frames have none)."""

    frames: Sequence[Frame]
    states: list[CameraState]
    detections: dict[int, list[Detection]]


class DetectionPipeline:
    def __init__(self, settings: DetectorSettings, detector: Detector, sinks: Sequence[Sink] = ()) -> None:
        self.settings = settings
        self.detector = detector
        self.sinks = list(sinks)
        self.cameras: dict[str, CameraState] = {}

    def forget(self, camera_id: str) -> None:
        self.cameras.pop(camera_id, None)

    def process(self, frames: Sequence[Frame]) -> list[DetectionResultMessage]:
        """One batch, at most one frame per camera is best (tracking sees them in order anyway)."""
        return self.finish(self.detect(frames))

    def detect(self, frames: Sequence[Frame]) -> Detected:
        states = [self.cameras.setdefault(f.camera_id, CameraState(self.settings)) for f in frames]
        todo = [i for i, (f, s) in enumerate(zip(frames, states)) if s.needs_detection(f)]
        detections = dict(zip(todo, self.detector.detect([frames[i].image for i in todo])))
        metrics.DETECTOR_FRAMES.labels("detected").inc(len(todo))
        metrics.DETECTOR_FRAMES.labels("gated").inc(len(frames) - len(todo))
        return Detected(frames, states, detections)

    def finish(self, batch: Detected) -> list[DetectionResultMessage]:
        """Tracking, groups, crops and the sinks; batches must come in the order they were detected."""
        messages = []
        for i, (frame, state) in enumerate(zip(batch.frames, batch.states)):
            # A gated frame keeps the last objects: the scene has not moved since.
            objects = state.update(frame, batch.detections[i]) if i in batch.detections else state.objects
            message = build_message(frame, objects, self.settings)
            message.process_time_ms = (time.monotonic() - frame.taken) * 1000
            metrics.DETECTOR_LATENCY.observe(message.process_time_ms / 1000)
            metrics.DETECTOR_OBJECTS.inc(len(message.detected_objects))
            metrics.DETECTOR_GROUPS.inc(len(message.traffic_groups))
            messages.append(message)
        for sink in self.sinks:
            sink(messages)
        return messages


class Overlapped:
    """The pipeline in two threads: a worker finishes batch N while the caller's thread
    runs the model on batch N+1. OpenCV and ONNX Runtime release the GIL, and the model
    alone leaves about a third of two cores idle (its single-threaded pre- and
    post-processing, waits between operators), which the finishing work fills."""

    def __init__(self, pipeline: DetectionPipeline) -> None:
        self.pipeline = pipeline
        # One batch waiting at most: the model never runs more than a batch ahead.
        self._batches: queue.Queue[Optional[Detected]] = queue.Queue(maxsize=1)
        self._worker = threading.Thread(target=self._finish_loop, name="detector-finish", daemon=True)
        self._worker.start()

    def submit(self, frames: Sequence[Frame]) -> None:
        """Runs the model on `frames`, then queues them for finishing (waits while a batch is queued)."""
        self._batches.put(self.pipeline.detect(frames))

    def close(self) -> None:
        """Finishes every submitted batch, then stops the worker."""
        self._batches.put(None)
        self._worker.join()

    def _finish_loop(self) -> None:
        while (batch := self._batches.get()) is not None:
            try:
                self.pipeline.finish(batch)
            except Exception:  # noqa: BLE001 - one bad frame must not stop every camera
                log.exception("detection failed for cameras %s", [f.camera_id for f in batch.frames])
