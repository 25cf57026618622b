"""The detector runner: many cameras in one process, one shared model.

    capture threads (one per camera)  ->  bounded FrameQueue (drop oldest)
      ->  detection thread (batches across cameras, the model)
      ->  finishing thread (tracking, groups, crops, preview, JSON; overlaps the next batch)
      ->  asyncio loop: DetectionKafkaProducer (+ optional callback)

`stop()` (SIGTERM) stops capture, lets the detection thread drain the queue, waits for
every delivery and flushes the producer. Several runners may split a camera list.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from detector.capture import CameraConfig, CameraReader, Frame, Playback
from detector.pipeline import DetectionPipeline, Detector, Overlapped
from detector.producer import DetectionKafkaProducer
from streamapp import metrics
from streamapp.models import CameraStatusMessage, DetectionResultMessage
from streamapp.codecs import describe_validation_error
from streamapp.settings import ConfigError, Settings, read_yaml

log = logging.getLogger(__name__)


class CamerasFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cameras: list[CameraConfig] = []


def load_cameras(path: Path) -> list[CameraConfig]:
    """The camera list, read like the settings file (so URLs may carry ${VAR} credentials)."""
    try:
        cameras = CamerasFile.model_validate(read_yaml(path)).cameras
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None
    ids = [c.id for c in cameras]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"{path}: camera ids must be unique")
    return cameras


def split_cameras(cameras: Sequence[CameraConfig], shard: int, shards: int) -> list[CameraConfig]:
    """This runner's share when `shards` runners split one camera list."""
    return [c for i, c in enumerate(cameras) if i % shards == shard]


class FrameQueue:
    """Frames waiting for the model. Live cameras drop the oldest frame when full
    (a stale frame is worth less than a fresh one); `put(block=True)` waits instead."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, frame: Frame, block: bool = False, stopped: Optional[threading.Event] = None) -> None:
        with self._cond:
            while block and len(self._items) >= self.maxsize and not (stopped and stopped.is_set()):
                self._cond.wait(0.1)
            while len(self._items) >= self.maxsize:
                old = self._items.popleft()
                self.dropped += 1
                metrics.DETECTOR_DROPPED.inc()
                log.debug("queue full: dropped frame %d of camera %s", old.index, old.camera_id)
            self._items.append(frame)
            self._cond.notify_all()

    def take(self, max_items: int, timeout: float) -> list[Frame]:
        """Up to max_items frames, oldest first and at most one per camera."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            batch: list[Frame] = []
            cameras: set[str] = set()
            for frame in list(self._items):
                if len(batch) >= max_items:
                    break
                if frame.camera_id not in cameras:
                    cameras.add(frame.camera_id)
                    batch.append(frame)
                    self._items.remove(frame)
            if batch:
                self._cond.notify_all()
            return batch

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class RunOptions:
    playback: Playback = Playback.realtime
    # Stop each camera after this many sampled frames; the runner exits when all did.
    max_frames: Optional[int] = None
    interval_s: Optional[float] = None
    loop: Optional[bool] = None


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("camera control stopped: %r", task.exception())


class DetectorRunner:
    def __init__(
        self,
        settings: Settings,
        cameras: Sequence[CameraConfig],
        options: RunOptions = RunOptions(),
        detector: Optional[Detector] = None,
        callback: Optional[Callable[[DetectionResultMessage], None]] = None,
    ) -> None:
        self.settings = settings
        self.config = settings.detector
        self.options = options
        self.initial_cameras = list(cameras)
        self._detector = detector
        self.callback = callback
        self.queue = FrameQueue(self.config.queue_size)
        self.readers: dict[str, CameraReader] = {}
        self.producer = DetectionKafkaProducer(settings) if self.config.use_kafka else None
        self.produced = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop = asyncio.Event()
        self._capture_done = threading.Event()
        self._pipeline: Optional[DetectionPipeline] = None
        self.control = None
        self.started = asyncio.Event()

    # -- called from the capture and detection threads -----------------------------

    def _on_frame(self, frame: Frame) -> None:
        reader = self.readers.get(frame.camera_id)
        block = self.options.playback is Playback.fast
        self.queue.put(frame, block=block, stopped=reader.stopped if reader else None)

    def _on_status(self, camera_id: str, status: int, message: str, latency_ms: Optional[float]) -> None:
        metrics.CAMERA_STATUS.labels(camera_id).set(status)
        self.publish_status(CameraStatusMessage(camera_id=camera_id, status=status, message=message, latency_ms=latency_ms))

    def publish_status(self, status: CameraStatusMessage) -> None:
        if self.producer is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.producer.send_status, status)

    def _on_messages(self, messages: list[DetectionResultMessage]) -> None:
        self.produced += len(messages)
        if self.producer is not None and self._loop is not None:
            self.producer.send_from_thread(self._loop, messages)
        if self.callback is not None:
            for message in messages:
                self.callback(message)

    def _detect_loop(self) -> None:
        stages = Overlapped(self._pipeline)
        try:
            while True:
                batch = self.queue.take(self.config.batch_size, timeout=0.1)
                if batch:
                    try:
                        stages.submit(batch)
                    except Exception:  # noqa: BLE001 - one bad frame must not stop every camera
                        log.exception("detection failed for cameras %s", [f.camera_id for f in batch])
                elif self._capture_done.is_set():
                    return
        finally:
            stages.close()  # drains: every frame taken becomes a message before the producer flushes

    # -- cameras -------------------------------------------------------------------

    def add_camera(self, camera: CameraConfig) -> None:
        if camera.id in self.readers and self.readers[camera.id].is_alive():
            self.readers[camera.id].stop()
        reader = CameraReader(
            camera, self.options.interval_s or camera.interval_s or self.config.sample_interval_s,
            self._on_frame, self._on_status, playback=self.options.playback, loop=self.options.loop,
            max_frames=self.options.max_frames, reconnect_initial_s=self.config.reconnect_initial_s,
            reconnect_max_s=self.config.reconnect_max_s,
        )
        self.readers[camera.id] = reader
        reader.start()

    def remove_camera(self, camera_id: str) -> bool:
        reader = self.readers.pop(camera_id, None)
        if reader is None:
            return False
        reader.stop()
        if self._pipeline is not None:
            self._pipeline.forget(camera_id)
        return True

    def stop(self) -> None:
        """Ask the runner to finish (thread-safe; the SIGTERM handler calls it)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        else:
            self._stop.set()  # not running yet: run() returns as soon as it started

    # -- the run -------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.config.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(self.config.metrics_port)
        if self._detector is None:
            from detector.yolo import YoloDetector  # loads torch/ultralytics: only here

            self._detector = await self._loop.run_in_executor(None, YoloDetector, self.config)
        self._pipeline = DetectionPipeline(self.config, self._detector, [self._on_messages])
        if self.producer is not None:
            await self.producer.start()
        control_task = None
        if self.producer is not None and self.config.control:
            from detector.control import CameraControl

            self.control = CameraControl(self.settings, self)
            control_task = asyncio.ensure_future(self.control.run())
            control_task.add_done_callback(_log_failure)
        detect_thread = threading.Thread(target=self._detect_loop, name="detector", daemon=True)
        detect_thread.start()
        for camera in self.initial_cameras:
            self.add_camera(camera)
        self.started.set()
        log.info("detector running: %d cameras, model %s", len(self.initial_cameras), getattr(self._detector, "path", "-"))
        try:
            await self._wait_until_done()
        finally:
            for reader in list(self.readers.values()):
                reader.stop()
            await self._loop.run_in_executor(None, self._join_readers)
            self._capture_done.set()
            await self._loop.run_in_executor(None, detect_thread.join)
            if control_task is not None:
                control_task.cancel()
                await asyncio.gather(control_task, return_exceptions=True)
            if self.producer is not None:
                await self.producer.stop()
            log.info("detector stopped: %d detection messages, %d dropped frames%s", self.produced,
                     self.queue.dropped, f", {self.producer.failed} undeliverable" if self.producer and self.producer.failed else "")

    async def _wait_until_done(self) -> None:
        """Until stop() or, when cameras were given, every one of them finished."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
            if self.initial_cameras and not any(r.is_alive() for r in self.readers.values()):
                return

    def _join_readers(self) -> None:
        deadline = time.monotonic() + 10
        for reader in list(self.readers.values()):
            reader.join(max(deadline - time.monotonic(), 0.1))
