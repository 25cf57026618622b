"""Per-camera multi-object tracking with ultralytics' ByteTrack, plus pixel velocities."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional, Sequence

import numpy as np

from detector.assets import configure_ultralytics
from detector.yolo import Detection


@dataclass(frozen=True)
class Track:
    track_id: Optional[int]
    # Pixels per second between the last two sampled frames that saw this track.
    velocity: Optional[tuple[float, float]]


class CameraTracker:
    """ByteTrack over the sampled frames of one camera.

    `track_buffer` counts sampled frames (about 1.8 s apart), not video frames.
    """

    def __init__(self, track_buffer: int = 5) -> None:
        configure_ultralytics()
        from ultralytics.trackers.byte_tracker import BYTETracker

        self._tracker = BYTETracker(SimpleNamespace(
            track_high_thresh=0.25, track_low_thresh=0.1, new_track_thresh=0.25,
            track_buffer=track_buffer, match_thresh=0.8, fuse_score=True,
        ))
        self._last_seen: dict[int, tuple[float, float, float]] = {}

    def update(self, detections: Sequence[Detection], t: float, shape: tuple[int, int]) -> list[Track]:
        """Track ids and velocities for `detections` seen at time `t` (seconds)."""
        from ultralytics.engine.results import Boxes

        data = np.array(
            [[*d.bbox, d.confidence, d.class_id] for d in detections], dtype=np.float32,
        ).reshape(-1, 6)
        rows = self._tracker.update(Boxes(data, shape))
        tracks = [Track(None, None)] * len(detections)
        seen: dict[int, tuple[float, float, float]] = {}
        for row in rows:
            track_id, idx = int(row[4]), int(row[7])
            x1, y1, x2, y2 = detections[idx].bbox
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            velocity = None
            previous = self._last_seen.get(track_id)
            if previous is not None and t > previous[2]:
                dt = t - previous[2]
                velocity = ((cx - previous[0]) / dt, (cy - previous[1]) / dt)
            tracks[idx] = Track(track_id, velocity)
            seen[track_id] = (cx, cy, t)
        # Keep positions of tracks that are lost for now, so a re-found track gets a velocity.
        live = {t.track_id for t in self._tracker.lost_stracks}
        self._last_seen = {k: v for k, v in self._last_seen.items() if k in live} | seen
        return tracks
