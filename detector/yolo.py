"""Object detection with ultralytics YOLO (.pt, .onnx or an OpenVINO folder)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from detector.assets import ASSETS, AssetMissing, asset_path, configure_ultralytics, default_model_path
from streamapp.settings import DetectorSettings


@dataclass(frozen=True)
class Detection:
    bbox: tuple[float, float, float, float]
    class_id: int
    class_name: str
    confidence: float


def resolve_model(path: Optional[Path]) -> Path:
    """The model file: detector.model, `asset:<name>` (fetched into the cache), or the default."""
    if path is not None and str(path).startswith("asset:"):
        name = str(path)[len("asset:"):]
        if name not in ASSETS:
            raise AssetMissing(f"detector.model: unknown asset {name!r}; known: {', '.join(ASSETS)}")
        return asset_path(name)
    model = path or default_model_path()
    if not model.exists():
        raise AssetMissing(
            f"no detection model at {model}: run `python -m detector.assets` to fetch the "
            "YOLOv8n weights into the cache, or set detector.model to a .pt, .onnx or OpenVINO model"
        )
    return model


class YoloDetector:
    """One loaded model; `detect` takes a batch of BGR frames (one per camera)."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self.path = resolve_model(settings.model)
        configure_ultralytics()
        from ultralytics import YOLO

        self.model = YOLO(str(self.path), task="detect")
        names: dict[int, str] = self.model.names
        unknown = set(settings.classes) - set(names.values())
        if unknown:
            raise ValueError(f"detector.classes: not classes of {self.path.name}: {sorted(unknown)}")
        self.class_ids = [i for i, name in names.items() if name in settings.classes]
        self.names = names
        self.detect([np.zeros((480, 640, 3), np.uint8)])  # builds ultralytics' predictor and backend
        self._tune_onnxruntime()

    def _tune_onnxruntime(self) -> None:
        """Recreate a CPU ONNX Runtime session with our thread settings (ultralytics
        exposes no session options); other backends are left as they are."""
        backend = getattr(getattr(self.model.predictor, "model", None), "backend", None)
        session = getattr(backend, "session", None)
        if (
            self.path.suffix != ".onnx" or session is None or getattr(backend, "use_io_binding", False)
            or session.get_providers() != ["CPUExecutionProvider"]
        ):
            return
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.settings.onnx_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.settings.onnx_spinning else "0")
        backend.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        if not frames:
            return []
        results = self.model.predict(
            list(frames), conf=self.settings.confidence, iou=self.settings.iou, imgsz=self.settings.imgsz,
            max_det=self.settings.max_det, classes=self.class_ids, verbose=False,
            batch=min(len(frames), self.settings.batch_size),
        )
        out = []
        for result in results:
            boxes = result.boxes
            xyxy = boxes.xyxy.cpu().numpy() if hasattr(boxes.xyxy, "cpu") else np.asarray(boxes.xyxy)
            conf = np.asarray(boxes.conf.cpu() if hasattr(boxes.conf, "cpu") else boxes.conf)
            cls = np.asarray(boxes.cls.cpu() if hasattr(boxes.cls, "cpu") else boxes.cls).astype(int)
            out.append([
                Detection(tuple(float(v) for v in box), int(c), self.names[int(c)], float(s))
                for box, c, s in zip(xyxy, cls, conf)
            ])
        return out
