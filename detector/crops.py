"""Group crops and frame previews as base64 JPEG."""
from __future__ import annotations

import base64

import cv2
import numpy as np

Box = tuple[float, float, float, float]


def expand_box(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The box grown by `margin` times its size on every side, clipped to the frame."""
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return (
        max(int(x1 - mx), 0), max(int(y1 - my), 0),
        min(int(np.ceil(x2 + mx)), width), min(int(np.ceil(y2 + my)), height),
    )


def fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is at most `max_side`; never upscale."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    # Area averaging only pays for large reductions; bilinear is several times cheaper.
    interpolation = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(image, (max(int(w * scale), 1), max(int(h * scale), 1)), interpolation=interpolation)


def jpeg_b64(image: np.ndarray, quality: int) -> str:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return base64.b64encode(data.tobytes()).decode()


def crop_b64(frame: np.ndarray, box: Box, margin: float, max_side: int, quality: int) -> str:
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = expand_box(box, margin, width, height)
    crop = frame[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
    return jpeg_b64(fit(crop, max_side), quality)


def preview_b64(frame: np.ndarray, max_side: int, quality: int) -> str:
    return jpeg_b64(fit(frame, max_side), quality)
