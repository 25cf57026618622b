"""The detector runner against Apache Kafka: real footage, real weights, real processes."""
from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import pytest
import yaml

from detector.assets import asset_path
from detector.capture import CameraConfig
from detector.runner import DetectorRunner
from detector.yolo import YoloDetector
from streamapp.models import CameraControlMessage, CameraStatusMessage, DetectionResultMessage
from streamapp.settings import load_settings
from streamapp.topic_admin import ensure_topics
from tests.support import Process, consume, produce

pytestmark = pytest.mark.kafka


def cameras_file(tmp_path: Path, *cameras: dict) -> Path:
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump({"cameras": list(cameras)}))
    return path


def statuses(stack, expect: int, timeout: float = 30.0) -> list[CameraStatusMessage]:
    records = consume(stack.bootstrap, stack.topic("camera_status"), expect=expect, timeout=timeout)
    return [CameraStatusMessage.model_validate_json(r.value) for r in records]


def statuses_of(stack, cameras: set[str], timeout: float = 30.0) -> list[CameraStatusMessage]:
    """Statuses until every camera has one (a failing camera reports each retry)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = statuses(stack, expect=10**6, timeout=2)
        if cameras <= {s.camera_id for s in seen} or time.monotonic() > deadline:
            return seen


@pytest.fixture(scope="module")
def assets() -> None:
    for name in ("yolov8n.onnx", "vtest.avi", "bikes.mp4"):
        asset_path(name)


def test_twenty_sampled_frames_become_twenty_valid_messages(stack, tmp_path, assets):
    cameras = cameras_file(tmp_path, {"id": "junction", "name": "Junction", "url": "asset:vtest.avi"})
    detector = Process(["detect", "--cameras", str(cameras), "--playback", "fast", "--max-frames", "20"],
                       stack.write_config(), tmp_path / "detect.log")
    try:
        assert detector.proc.wait(120) == 0, detector.output()[-3000:]
    finally:
        detector.stop()
    records = consume(stack.bootstrap, stack.topic("detection_results"), expect=20, settle=2.0)
    assert len(records) == 20
    messages = [DetectionResultMessage.model_validate_json(r.value) for r in records]
    assert {r.key for r in records} == {b"junction"}
    assert sorted(m.frame_index for m in messages) == list(range(20))
    assert all(len(r.value) < 1_000_000 for r in records)
    assert all((m.image_width, m.image_height) == (768, 576) and m.frame_preview_b64 for m in messages)
    assert sum(o.class_name == "person" for m in messages for o in m.detected_objects) >= 20 * 3
    assert all(g.crop_jpeg_b64 and len(g.object_ids) >= 2 for m in messages for g in m.traffic_groups)
    assert sum(len(m.traffic_groups) for m in messages) >= 20
    online = [s for s in statuses(stack, expect=2) if s.camera_id == "junction"]
    assert [s.status for s in online] == [1, 0]  # online, then finished


def test_sigterm_flushes_every_message_produced(stack, tmp_path, assets):
    cameras = cameras_file(tmp_path, {"id": "junction", "url": "asset:vtest.avi"},
                           {"id": "street", "url": "asset:bikes.mp4"})
    detector = Process(["detect", "--cameras", str(cameras), "--interval", "0.4"],
                       stack.write_config(), tmp_path / "detect.log")
    try:
        consume(stack.bootstrap, stack.topic("detection_results"), expect=6, timeout=90)
        detector.kill(signal.SIGTERM)
        assert detector.proc.returncode == 0, detector.output()[-3000:]
    finally:
        detector.stop()
    found = re.search(r"(\d+) detection messages produced, (\d+) delivered", detector.output())
    assert found, detector.output()[-3000:]
    produced, delivered = map(int, found.groups())
    assert produced == delivered >= 6
    records = consume(stack.bootstrap, stack.topic("detection_results"), expect=produced, settle=2.0)
    assert len(records) == produced


@pytest.fixture(scope="module")
def detector(assets) -> YoloDetector:
    return YoloDetector(load_settings(environ={}).detector)


async def test_bad_url_is_an_offline_status_and_no_crash(stack, detector, tmp_path):
    settings = load_settings(stack.write_config(detector={"reconnect_initial_s": 0.2}), environ={})
    await ensure_topics(settings)
    good = CameraConfig(id="junction", url="asset:vtest.avi")
    bad = [CameraConfig(id="refused", url="rtsp://127.0.0.1:9/stream"),
           CameraConfig(id="missing", url=str(tmp_path / "no-such-video.mp4"))]
    runner = DetectorRunner(settings, [good, *bad], detector=detector)
    task = asyncio.create_task(runner.run())
    try:
        seen = await asyncio.to_thread(statuses_of, stack, {"junction", "refused", "missing"})
        detections = await asyncio.to_thread(consume, stack.bootstrap, stack.topic("detection_results"), expect=1)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 60)
    first = {s.camera_id: s for s in reversed(seen)}
    assert first["refused"].status == 0 and "rtsp://127.0.0.1:9/stream" in first["refused"].message
    assert first["missing"].status == 0 and "no-such-video.mp4" in first["missing"].message
    assert first["junction"].status == 1 and first["junction"].latency_ms > 0
    assert detections  # the good camera kept working beside the broken ones
    assert not task.exception()


async def test_browser_commands_start_check_and_stop_cameras(stack, detector):
    settings = load_settings(stack.write_config(), environ={})
    await ensure_topics(settings)
    runner = DetectorRunner(settings, [], detector=detector)
    task = asyncio.create_task(runner.run())
    control = stack.topic("camera_control")

    def command(action: str, camera: str, url=None) -> tuple[bytes, bytes]:
        return camera.encode(), CameraControlMessage(action=action, camera_id=camera, url=url).to_bytes()

    try:
        await asyncio.wait_for(runner.started.wait(), 30)
        await asyncio.wait_for(runner.control.ready.wait(), 30)
        await asyncio.to_thread(produce, stack.bootstrap, control, [
            command("check_camera", "probe-ok", "asset:bikes.mp4"),
            command("check_camera", "probe-bad", "rtsp://127.0.0.1:9/x"),
            command("start_stream", "live", "asset:vtest.avi"),
            (b"junk", b"{not json"),
        ])
        detections = await asyncio.to_thread(consume, stack.bootstrap, stack.topic("detection_results"), expect=1)
        await asyncio.to_thread(produce, stack.bootstrap, control, [command("stop_stream", "live")])
        deadline = time.monotonic() + 20
        while "live" in runner.readers and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        seen = await asyncio.to_thread(statuses, stack, 4)
        dead = await asyncio.to_thread(consume, stack.bootstrap, stack.topic("dlq"), expect=1)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 60)
    by_camera: dict[str, list] = {}
    for s in seen:
        by_camera.setdefault(s.camera_id, []).append(s)
    assert by_camera["probe-ok"][0].status == 1 and by_camera["probe-ok"][0].latency_ms > 0
    assert by_camera["probe-bad"][0].status == 0
    assert [s.message for s in by_camera["live"]][:1] == ["online"]
    assert by_camera["live"][-1].status == 0 and by_camera["live"][-1].message == "stopped"
    assert {DetectionResultMessage.model_validate_json(r.value).camera_id for r in detections} == {"live"}
    assert b"invalid camera command" in dead[0].value
