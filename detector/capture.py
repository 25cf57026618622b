"""Camera capture through OpenCV: RTSP, HTTP(S), video files and webcams.

One light thread per camera. It never buffers frames: between samples it only
`grab()`s (the decoder keeps the latest frame) and `retrieve()`s (colour conversion,
copy) just the sampled ones. Files play in real time (like a live stream: behind
schedule it catches up by grabbing faster) or as fast as the consumer takes them, and
may loop. A failing source is reported as a status change and reopened with
exponential backoff; it never raises out of the thread.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Callable, Optional, Union

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from detector.assets import ASSETS, AssetMissing, asset_path

log = logging.getLogger(__name__)

OFFLINE, ONLINE, FAULT = 0, 1, 2
OPEN_TIMEOUT_MS = 5000


class Playback(str, Enum):
    realtime = "realtime"
    fast = "fast"


class CameraConfig(BaseModel):
    """One camera of `config/cameras.yaml`."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    name: Optional[str] = None
    # rtsp://, http(s)://, a file path, a webcam index ("0"), or asset:<name> for the
    # cached sample footage (asset:vtest.avi, asset:bikes.mp4).
    url: str
    interval_s: Optional[float] = Field(default=None, gt=0)
    loop: bool = True


@dataclass
class Frame:
    camera_id: str
    camera_name: Optional[str]
    index: int
    image: np.ndarray
    captured_at: datetime
    # Seconds on the source's clock: media time for files, monotonic time for streams.
    t: float
    # time.monotonic() when the frame was taken, for latency figures.
    taken: float = field(default_factory=time.monotonic)


def resolve_source(url: str) -> Union[str, int]:
    """What cv2.VideoCapture opens: a webcam index, a path, or the URL itself."""
    if url.isdigit():
        return int(url)
    if url.startswith("asset:"):
        name = url[len("asset:"):]
        if name not in ASSETS:
            raise AssetMissing(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
        return str(asset_path(name))
    return url


def is_file(source: Union[str, int]) -> bool:
    return isinstance(source, str) and "://" not in source


def open_capture(source: Union[str, int]) -> cv2.VideoCapture:
    if isinstance(source, int):
        return cv2.VideoCapture(source)
    if is_file(source) and not Path(source).is_file():
        return cv2.VideoCapture()  # never opened: OpenCV would print a warning and fail anyway
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
    ])


def probe(url: str) -> tuple[int, str, Optional[float]]:
    """(status, message, latency_ms) of opening a source and decoding one frame."""
    started = time.monotonic()
    try:
        source = resolve_source(url)
    except AssetMissing as exc:
        return OFFLINE, str(exc), None
    cap = open_capture(source)
    try:
        if not cap.isOpened():
            return OFFLINE, f"cannot open {url}", None
        ok, _ = cap.read()
        latency = (time.monotonic() - started) * 1000
        if not ok:
            return FAULT, f"opened {url} but no frame could be decoded", latency
        return ONLINE, "online", latency
    finally:
        cap.release()


StatusCallback = Callable[[str, int, str, Optional[float]], None]


class CameraReader(threading.Thread):
    """Samples one camera every `interval_s` and hands each frame to `on_frame`.

    `on_frame(frame)` may block (fast file playback waits for room in the queue).
    `on_status(camera_id, status, message, latency_ms)` is called on every change.
    """

    def __init__(
        self,
        camera: CameraConfig,
        interval_s: float,
        on_frame: Callable[[Frame], None],
        on_status: StatusCallback,
        playback: Playback = Playback.realtime,
        loop: Optional[bool] = None,
        max_frames: Optional[int] = None,
        reconnect_initial_s: float = 1.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        super().__init__(name=f"camera-{camera.id}", daemon=True)
        self.camera = camera
        self.interval_s = interval_s
        self.on_frame = on_frame
        self.on_status = on_status
        self.playback = playback
        self.loop = camera.loop if loop is None else loop
        self.max_frames = max_frames
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.stopped = threading.Event()
        self.samples = 0
        self._status: Optional[tuple[int, str]] = None

    def stop(self) -> None:
        self.stopped.set()

    def _report(self, status: int, message: str, latency_ms: Optional[float] = None) -> None:
        if self._status == (status, message):
            return
        self._status = (status, message)
        level = logging.INFO if status == ONLINE else logging.WARNING
        log.log(level, "camera %s: %s", self.camera.id, message)
        self.on_status(self.camera.id, status, message, latency_ms)

    def run(self) -> None:
        delay = self.reconnect_initial_s
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                source = resolve_source(self.camera.url)
            except AssetMissing as exc:
                source, reason = None, str(exc)
            else:
                reason = f"cannot open {self.camera.url}"
            cap = open_capture(source) if source is not None else None
            if cap is None or not cap.isOpened():
                self._report(OFFLINE, f"{reason}; retrying in {delay:g} s")
            else:
                try:
                    outcome = self._read(cap, source, started)
                finally:
                    cap.release()
                if outcome == "done":
                    self._report(OFFLINE, "stopped" if self.stopped.is_set() else "finished")
                    return
                if outcome == "read":
                    delay = self.reconnect_initial_s  # it worked for a while: start the backoff over
            if self.stopped.wait(delay):
                break
            delay = min(delay * 2, self.reconnect_max_s)
        self._report(OFFLINE, "stopped")

    def _emit(self, image: np.ndarray, t: float) -> bool:
        """Hand one sample over; True when the reader should stop (max_frames reached)."""
        self.on_frame(Frame(
            camera_id=self.camera.id, camera_name=self.camera.name, index=self.samples,
            image=image, captured_at=datetime.now(timezone.utc), t=t,
        ))
        self.samples += 1
        return self.max_frames is not None and self.samples >= self.max_frames

    def _read(self, cap: cv2.VideoCapture, source: Union[str, int], started: float) -> str:
        """Read until stopped ("done"), or the source fails ("lost" before any frame, "read" after)."""
        ok, image = cap.read()
        if not ok:
            self._report(FAULT, f"opened {self.camera.url} but no frame could be decoded")
            return "lost"
        self._report(ONLINE, "online", (time.monotonic() - started) * 1000)
        if is_file(source):
            return self._read_file(cap, image)
        return self._read_stream(cap, image)

    def _read_stream(self, cap: cv2.VideoCapture, first: np.ndarray) -> str:
        last = time.monotonic()
        if self._emit(first, last):
            return "done"
        while not self.stopped.is_set():
            if not cap.grab():
                self._report(OFFLINE, f"stream lost: {self.camera.url}")
                return "read"
            now = time.monotonic()
            if now - last < self.interval_s:
                continue
            ok, image = cap.retrieve()
            if not ok:
                self._report(FAULT, f"frame could not be decoded: {self.camera.url}")
                return "read"
            # Keep the schedule unless we fell more than one interval behind.
            last = last + self.interval_s if now - last < 2 * self.interval_s else now
            if self._emit(image, now):
                return "done"
        return "done"

    def _read_file(self, cap: cv2.VideoCapture, first: np.ndarray) -> str:
        """Sample every `step`-th frame. In real time, a reader that fell behind (a
        starved CPU) grabs its way back to the present before it samples again, as a
        live reader skips stale buffered frames: intervals stretch, never shrink."""
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps < 1000 else 25.0
        step = max(1, round(self.interval_s * fps))
        realtime = self.playback is Playback.realtime
        pos, offset, since = 0, 0.0, step
        anchor = time.monotonic()
        image: Optional[np.ndarray] = first
        while not self.stopped.is_set():
            behind = realtime and time.monotonic() - (anchor + pos / fps) > 2 / fps
            sample = since >= step and not behind
            if image is not None:
                ok = True
            elif sample:
                ok, image = cap.read()
            else:
                ok = cap.grab()
            if not ok:
                if pos == 0 or not self.loop:
                    return "done" if pos > 0 else "read"
                # Loop: rewind, and keep media time and the real-time schedule running on.
                offset += pos / fps
                anchor += pos / fps
                if not cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                    return "read"
                pos = 0
                continue
            if image is not None:
                if self._emit(image, offset + pos / fps):
                    return "done"
                image, since = None, 0
            pos += 1
            since += 1
            if realtime:
                wait = anchor + pos / fps - time.monotonic()
                if wait > 0 and self.stopped.wait(wait):
                    break
        return "done"
