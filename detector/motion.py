"""Motion gating (Frigate's lesson): run the model only when the scene changed.

A frame is compared with the last frame the model saw, on a small blurred grey copy;
when the share of changed pixels is below the threshold, the previous detections
still hold and the model is skipped. A maximum age forces a fresh detection anyway.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

# Grey levels a pixel must change by to count as moved (ignores sensor noise and
# compression artefacts), on a copy this wide.
PIXEL_DELTA = 20
WIDTH = 160


def thumbnail(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    stride = max(w // (2 * WIDTH), 1)  # subsample first: resizing a whole HD frame costs more than the rest
    small = cv2.resize(image[::stride, ::stride], (WIDTH, max(int(h * WIDTH / w), 1)), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    return cv2.GaussianBlur(grey, (5, 5), 0)


def changed_share(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(cv2.absdiff(a, b) > PIXEL_DELTA)) / a.size


class MotionGate:
    def __init__(self, threshold: float, max_age_s: float) -> None:
        self.threshold = threshold
        self.max_age_s = max_age_s
        self._reference: Optional[np.ndarray] = None
        self._reference_t = 0.0

    def should_detect(self, image: np.ndarray, t: float) -> bool:
        """Whether the model must look at this frame; if so it becomes the new reference."""
        small = thumbnail(image)
        if (
            self._reference is None
            or self._reference.shape != small.shape
            or t - self._reference_t >= self.max_age_s
            or t < self._reference_t  # a looped file started over
            or changed_share(small, self._reference) >= self.threshold
        ):
            self._reference, self._reference_t = small, t
            return True
        return False
