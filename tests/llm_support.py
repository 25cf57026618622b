"""Helpers for the key-pool, client and assessor tests: an in-process fake provider,
pools built from dicts, and assessment tasks."""
from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Optional
from uuid import uuid4

import yaml

from bench.fake_provider import FakeProvider
from llm.keyconfig import KeyPoolConfig
from llm.keypool import KeyPool
from streamapp.models import AssessmentTaskMessage, DetectedObject, SpatialFeatures, TrafficGroup
from tests.support import ROOT, free_port

SECRET_PREFIX = "sk-test-"


def key(name: str, account: Optional[str] = None, **limits) -> dict:
    return {"name": name, "api_key": f"{SECRET_PREFIX}{name}-0123456789abcdef", "account": account, **limits}


def pool_config(keys: list[dict], accounts: Optional[dict] = None, **extra) -> KeyPoolConfig:
    return KeyPoolConfig.model_validate({
        "accounts": accounts or {},
        "keys": [{"name": k["name"], "api_key": k["api_key"], "account": k.get("account"),
                  **({"qps_limit": k["rps"]} if k.get("rps") else {}),
                  **({"priority": k["priority"]} if "priority" in k else {})} for k in keys],
        **extra})


def make_pool(keys: list[dict], accounts: Optional[dict] = None, clock=None, **extra) -> KeyPool:
    kwargs = {"clock": clock} if clock else {}
    return KeyPool(pool_config(keys, accounts, **extra), worker_id="test-worker", **kwargs)


@contextlib.asynccontextmanager
async def fake_provider(keys: list[dict], accounts: Optional[dict] = None, **config) -> AsyncIterator[FakeProvider]:
    provider = FakeProvider({"latency_ms": 20, "jitter_ms": 5, "accounts": accounts or {},
                             "keys": [{k: v for k, v in key.items() if v is not None} for key in keys], **config})
    runner = await provider.start()
    provider.base_url = f"http://127.0.0.1:{provider.port}/v1"
    try:
        yield provider
    finally:
        await runner.cleanup()


def make_task(*, pedestrian_gap: float = 0.4, priority: int = 2, camera: str = "cam-1",
              with_crop: bool = True) -> AssessmentTaskMessage:
    objects = [
        DetectedObject(object_id=0, class_id=0, class_name="person", confidence=0.9, bbox=(100, 100, 130, 190)),
        DetectedObject(object_id=1, class_id=2, class_name="car", confidence=0.8, bbox=(140, 120, 260, 200)),
    ]
    features = SpatialFeatures(object_count=2, vehicle_count=1, pedestrian_count=1, density=0.5, avg_spacing=1.2,
                               min_spacing=1.2, min_pedestrian_vehicle_distance=pedestrian_gap)
    group = TrafficGroup(group_index=0, object_ids=[0, 1], bbox=(100, 100, 260, 200), classes=["person", "car"],
                         spatial_features=features,
                         crop_jpeg_b64=base64.b64encode(b"\xff\xd8fake-jpeg\xff\xd9").decode() if with_crop else None)
    return AssessmentTaskMessage(origin_message_id=uuid4(), camera_id=camera, frame_timestamp=datetime.now(timezone.utc),
                                 image_width=640, image_height=480, group=group, objects=objects, priority=priority)


class ProviderProcess:
    """`python -m bench.fake_provider` as a child process, with its admin API."""

    def __init__(self, config: dict, workdir: Path) -> None:
        path = workdir / "provider.yaml"
        path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log_path = workdir / "provider.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fake_provider", "--config", str(path),
                                      "--port", str(self.port)], cwd=ROOT, stdout=open(self.log_path, "wb"),
                                     stderr=subprocess.STDOUT)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 30
        while "fake provider on" not in self.log_path.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.1)

    def admin(self, path: str, body: Optional[dict] = None):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                         data=json.dumps(body).encode() if body is not None else None,
                                         method="POST" if body is not None else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=15) as response:
        return response.read().decode()
