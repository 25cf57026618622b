"""End to end with real processes on Apache Kafka: the detector runner on 30 sampled
frames of real footage (bikes.mp4 as three cameras, YOLOv8n) -> worker(s) running fan-out, the assessor
against the local fake provider, and the aggregator -> a browser on /ws gets exactly
one detection_result per frame, its risk fields filled from the assessor's results."""
from __future__ import annotations

import asyncio

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from streamapp.models import DetectionResultMessage
from tests.relay_support import WsClient, ws_url
from tests.support import Process, Stack, consume, free_port, start_worker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Three cameras on three different partitions (of the stack's 4): whichever two
# partitions a killed worker owned, one of these cameras was on them.
CAMERAS = ["street-0", "street-3", "street-5"]
FRAMES_PER_CAMERA = 10
FRAMES = FRAMES_PER_CAMERA * len(CAMERAS)
KEY_NAME = "e2e-key"
SECRET = "sk-e2e-0123456789abcdef0123"
# A killed worker's partitions move after 8 s instead of Faust's 60 s (Faust reads these).
FAST_GROUP = {"BROKER_SESSION_TIMEOUT": "8", "BROKER_HEARTBEAT_INTERVAL": "1"}


@pytest.fixture
def pipeline(kafka_bootstrap, tmp_path):
    """Provider process, keys file and config for a stack; yields a config writer."""
    from tests.llm_support import ProviderProcess

    provider = ProviderProcess({"latency_ms": 40, "jitter_ms": 10,
                                "keys": [{"name": KEY_NAME, "api_key": SECRET, "rps": 100}]}, tmp_path)
    keys_file = tmp_path / "api_keys.yaml"
    keys_file.write_text(yaml.safe_dump({"keys": [{"name": KEY_NAME, "api_key": "${E2E_KEY}", "qps_limit": 100}]}))
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(yaml.safe_dump({"cameras": [{"id": c, "name": c, "url": "asset:bikes.mp4"} for c in CAMERAS]}))
    partitions = {DefaultPartitioner()(c.encode(), [0, 1, 2, 3], [0, 1, 2, 3]) for c in CAMERAS}
    assert len(partitions) == len(CAMERAS)
    stack = Stack(bootstrap=kafka_bootstrap, workdir=tmp_path, extra={
        # Every frame's worthy groups are assessed (no per-camera cooldown), and frames in
        # flight when a worker dies still complete from their results.
        "fanout": {"cooldown_s": 0},
        "aggregator": {"deadline_s": 30},
    })
    stack.extra["llm"] = {"keys_file": str(keys_file), "base_url": provider.base_url,
                          "state_topic": f"keypool-state-{stack.suffix}", "request_timeout_s": 10}
    try:
        yield stack, cameras, {"E2E_KEY": SECRET, **FAST_GROUP}
    finally:
        provider.stop()


def run_detector(stack: Stack, cameras, playback: str) -> Process:
    config = stack.write_config("detector.yaml")
    return Process(["detect", "--cameras", str(cameras), "--playback", playback, "--max-frames", str(FRAMES_PER_CAMERA),
                    "--interval", "0.6"], config, stack.workdir / "detector.log")


def committed_offsets(bootstrap: str, group: str) -> dict:
    async def run() -> dict:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return {f"{tp.topic}:{tp.partition}": meta.offset
                    for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
        finally:
            await admin.close()

    return asyncio.run(run())


def frame_trail(stack: Stack, frames: list[DetectionResultMessage], group: str) -> dict:
    """Where each frame got to on Kafka: its detection-results partition and offset, the
    group's commits there, and which topics mention its id (for a failure message)."""
    ids = {str(m.message_id): (m.camera_id, m.frame_index) for m in frames}
    trail = {key: [] for key in ids.values()}
    for r in consume(stack.bootstrap, stack.topic("detection_results"), expect=10**6, timeout=5):
        key = ids.get(str(DetectionResultMessage.model_validate_json(r.value).message_id))
        if key:
            trail[key].append(f"detection_results:{r.partition} @{r.offset}")
    commits = committed_offsets(stack.bootstrap, group)
    trail["commits"] = {k: v for k, v in commits.items() if k.startswith(stack.topic("detection_results"))}
    for field in ("frame_context", "assessment_tasks", "risk_results", "camera_verdicts", "dlq"):
        values = [r.value or b"" for r in consume(stack.bootstrap, stack.topic(field), expect=10**6, timeout=5)]
        for m in frames:
            hits = sum(str(m.message_id).encode() in v for v in values)
            if hits:
                trail[(m.camera_id, m.frame_index)].append(f"{field} x{hits}")
    return trail


async def check_results(got: list[dict], produced: list[DetectionResultMessage], stack: Stack, group: str) -> None:
    by_frame = {m["data"]["messageId"]: m["data"] for m in got}
    assert len(got) == len(by_frame), "a frame's detection_result arrived twice"
    missing = [m for m in produced if str(m.message_id) not in by_frame]
    if missing:
        trail = await asyncio.to_thread(frame_trail, stack, missing, group)
        raise AssertionError(f"no detection_result for frames (and where they got to): {trail}")
    assert len(by_frame) == len(produced)
    assessed = 0
    for message in produced:
        result = by_frame[str(message.message_id)]
        assert result["frame"].startswith("data:image/jpeg;base64,") and len(result["frame"]) > 1000
        assert (result["imageWidth"], result["imageHeight"]) == (message.image_width, message.image_height)
        assert len(result["detectedObjects"]) == len(message.detected_objects)
        assert len(result["trafficGroups"]) == len(message.traffic_groups)
        assert result["complete"] is True and result["missingGroups"] == []
        for entry in result["dangerousDrivingResults"]:
            assessed += 1
            assert entry["assessor"] == "llm" and entry["keyName"] == KEY_NAME and entry["model"] == "qwen-vl-plus"
            assert entry["riskLevel"] in ("none", "low", "medium", "high") and entry["description"]
        levels = [e["riskLevel"] for e in result["dangerousDrivingResults"]]
        expected_max = max(levels, key=["none", "low", "medium", "high"].index, default="none")
        assert result["maxRiskLevel"] == expected_max
        assert result["hasDangerousDriving"] is (expected_max in ("medium", "high"))
    assert assessed >= 10, f"only {assessed} groups were assessed over {FRAMES} frames"
    assert SECRET not in repr(got)


def is_result(message: dict) -> bool:
    return message["type"] == "detection_result" and message["data"]["cameraId"] in CAMERAS


async def produced_frames(stack: Stack) -> list[DetectionResultMessage]:
    records = await asyncio.to_thread(consume, stack.bootstrap, stack.topic("detection_results"), expect=FRAMES, timeout=30)
    return [DetectionResultMessage.model_validate_json(r.value) for r in records]


async def test_detector_to_browser_one_result_per_frame_with_risk_from_the_assessor(pipeline):
    stack, cameras, env = pipeline
    config = stack.write_config("worker.yaml")
    worker = start_worker(config, stack.workdir / "worker.log", env)
    detector = None
    try:
        async with WsClient(ws_url(yaml.safe_load(config.read_text()))) as client:
            detector = run_detector(stack, cameras, "fast")
            got = await client.wait_for(is_result, FRAMES, timeout=150, settle=3, strict=False)
            assert await asyncio.to_thread(detector.proc.wait, 60) == 0, detector.output()[-3000:]
        produced = await produced_frames(stack)
        assert len(produced) == FRAMES
        await check_results(got, produced, stack, f"trafficrisk-test-{stack.suffix}")
    finally:
        if detector:
            detector.stop()
        worker.stop()


async def test_browser_on_the_survivor_gets_every_frame_once_when_the_other_worker_is_killed(pipeline):
    stack, cameras, env = pipeline
    configs, workers, detector = [], [], None
    try:
        for n in (1, 2):
            path = stack.write_config(f"worker{n}.yaml", app={"data_dir": str(stack.workdir / f"data{n}")},
                                      web={"port": free_port()})
            configs.append(yaml.safe_load(path.read_text()))
            workers.append(start_worker(path, stack.workdir / f"worker{n}.log", env))
        victim, survivor = workers
        async with WsClient(ws_url(configs[1])) as client:
            # Real-time playback spreads each camera's 10 frames over 6 s, so the kill lands mid-run.
            detector = run_detector(stack, cameras, "realtime")
            await client.wait_for(is_result, 3, timeout=120)
            victim.kill()
            got = await client.wait_for(is_result, FRAMES, timeout=150, settle=5, strict=False)
            assert await asyncio.to_thread(detector.proc.wait, 60) == 0, detector.output()[-3000:]
        produced = await produced_frames(stack)
        assert len(produced) == FRAMES
        await check_results(got, produced, stack, f"trafficrisk-test-{stack.suffix}")
        assert survivor.proc.poll() is None and victim.proc.returncode == -9
    finally:
        if detector:
            detector.stop()
        for worker in workers:
            worker.stop()
