"""The verdict path on Apache Kafka with two real workers: frame context and group
results in, one detection_result per frame out of /ws on either worker."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import yaml

from streamapp.models import CameraControlMessage, CameraStatusMessage, CameraVerdictMessage
from tests.factories import three_group_frame
from tests.relay_support import WsClient, frame_context, group_result, record, ws_url
from tests.support import Stack, consume, free_port, produce, start_worker

pytestmark = pytest.mark.kafka
TOKEN = "relay-test-token"


@pytest.fixture(scope="module")
def workers(kafka_bootstrap, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("relay")
    stack = Stack(bootstrap=kafka_bootstrap, workdir=workdir,
                  extra={"aggregator": {"deadline_s": 2.0, "tick_interval_s": 0.5},
                         "relay": {"client_queue_size": 50}, "web": {"auth_token": TOKEN}})
    configs, procs = [], []
    try:
        for n in (1, 2):
            path = stack.write_config(f"worker{n}.yaml", app={"data_dir": str(workdir / f"data{n}")},
                                      web={"port": free_port()})
            configs.append(yaml.safe_load(path.read_text()))
            procs.append(start_worker(path, workdir / f"worker{n}.log"))
        yield stack, configs, procs
    finally:
        for proc in procs:
            proc.stop()


async def _produce(stack: Stack, field: str, messages) -> None:
    await asyncio.to_thread(produce, stack.bootstrap, stack.topic(field), [record(m) for m in messages])


async def test_browser_on_either_worker_gets_one_result_per_frame_of_every_camera(workers):
    stack, configs, _ = workers
    cameras = [f"all-{i}" for i in range(8)]  # spread over the partitions of both workers
    contexts = [frame_context(cam, n) for cam in cameras for n in range(3)]
    async with WsClient(ws_url(configs[0], TOKEN)) as first, WsClient(ws_url(configs[1], TOKEN)) as second:
        # Results first for half the frames, a redelivered result for every frame.
        early = [group_result(c, 0, "high" if c.frame_index == 1 else "low") for c in contexts[::2]]
        await _produce(stack, "risk_results", early)
        await _produce(stack, "frame_context", contexts)
        rest = [group_result(c, 0, "high" if c.frame_index == 1 else "low") for c in contexts[1::2]]
        rest += [group_result(c, 1, "none") for c in contexts]
        await _produce(stack, "risk_results", rest + early[:4] + rest[:4])
        for client in (first, second):
            got = await client.wait_for(
                lambda m: m["type"] == "detection_result" and m["data"]["cameraId"].startswith("all-"),
                len(contexts), timeout=60, settle=3.0)
            by_frame = {m["data"]["messageId"]: m["data"] for m in got}
            assert len(got) == len(contexts) == len(by_frame), "exactly one detection_result per frame"
            assert {m["data"]["cameraId"] for m in got} == set(cameras)
            for ctx in contexts:
                result = by_frame[str(ctx.origin_message_id)]
                expected = "high" if ctx.frame_index == 1 else "low"
                assert result["maxRiskLevel"] == expected
                assert result["hasDangerousDriving"] is (expected == "high")
                assert result["complete"] is True and result["missingGroups"] == []
                # No detection message carried a preview for these frames: after the
                # relay's wait they go without one.
                assert result["frame"] is None
                assert result["imageWidth"] == 640 and result["imageHeight"] == 480
                assert len(result["detectedObjects"]) == 6 and "className" in result["detectedObjects"][0]
                assert [g["riskLevel"] for g in result["trafficGroups"]] == [expected, "none", None]
                assert [(r["groupIndex"], r["riskLevel"]) for r in result["dangerousDrivingResults"]] == [(0, expected), (1, "none")]
                first_result = result["dangerousDrivingResults"][0]
                assert first_result["type"] == "vehicle_pedestrian_conflict" and first_result["confidence"] == 0.7
                assert first_result["description"] == f"group 0 is {expected}"
                assert result["processTime"] == 42.0


async def test_frame_preview_travels_on_detection_results_only_and_is_joined_by_the_relay(workers):
    stack, configs, _ = workers
    frame = three_group_frame(camera_id="preview-1")
    async with WsClient(ws_url(configs[1], TOKEN)) as client:
        await asyncio.sleep(1)  # the relay follows detection-results from the moment a browser is there
        await _produce(stack, "detection_results", [frame])
        [result] = await client.wait_for(lambda m: m["type"] == "detection_result"
                                         and m["data"]["cameraId"] == "preview-1", 1, timeout=60, settle=1.0)
    assert result["data"]["messageId"] == str(frame.message_id)
    assert result["data"]["frame"] == f"data:image/jpeg;base64,{frame.frame_preview_b64}"
    verdicts = [r.value for r in await asyncio.to_thread(
        consume, stack.bootstrap, stack.topic("camera_verdicts"), expect=10**6, timeout=4) if r.key == b"preview-1"]
    contexts = [r.value for r in await asyncio.to_thread(
        consume, stack.bootstrap, stack.topic("frame_context"), expect=10**6, timeout=4) if r.key == b"preview-1"]
    assert len(verdicts) == len(contexts) == 1
    assert frame.frame_preview_b64.encode() not in verdicts[0] + contexts[0]


async def test_frame_missing_a_result_gets_a_verdict_naming_it_after_the_deadline(workers):
    stack, configs, _ = workers
    ctx = frame_context("deadline-1", 0, assessed=3)
    async with WsClient(ws_url(configs[1], TOKEN)) as client:
        await _produce(stack, "frame_context", [ctx])
        await _produce(stack, "risk_results", [group_result(ctx, 2, "medium")])
        [result] = await client.wait_for(lambda m: m["type"] == "detection_result"
                                         and m["data"]["cameraId"] == "deadline-1", 1, timeout=30, settle=2.5)
        result = result["data"]
        assert result["complete"] is False and result["missingGroups"] == [0, 1]
        assert result["maxRiskLevel"] == "medium"
        # A result arriving after the deadline verdict changes nothing.
        await _produce(stack, "risk_results", [group_result(ctx, 0, "high")])
        await asyncio.sleep(3)
        assert len(client.of_type("detection_result", "deadline-1")) == 1


async def test_reemitted_verdict_reaches_the_browser_once(workers):
    stack, configs, _ = workers
    ctx = frame_context("again-1", 0, assessed=0)
    async with WsClient(ws_url(configs[0], TOKEN)) as client:
        await _produce(stack, "frame_context", [ctx])
        await client.wait_for(lambda m: m["type"] == "detection_result" and m["data"]["cameraId"] == "again-1", 1)
        [verdict] = [CameraVerdictMessage.model_validate_json(r.value) for r in await asyncio.to_thread(
            consume, stack.bootstrap, stack.topic("camera_verdicts"), expect=10**6, timeout=4)
            if r.key == b"again-1"]
        # As a worker would after a crash between emitting and committing.
        await _produce(stack, "camera_verdicts", [verdict, verdict])
        await asyncio.sleep(3)
        assert len(client.of_type("detection_result", "again-1")) == 1


async def test_commands_are_acknowledged_and_reach_the_control_topic(workers):
    stack, configs, _ = workers
    async with WsClient(ws_url(configs[1], TOKEN)) as client:
        await client.send({"type": "ping"})
        await client.send({"type": "start_stream", "data": {"cameraId": "cmd-1", "rtspUrl": "rtsp://10.0.0.9/live",
                                                            "cameraName": "Gate"}})
        await client.send({"type": "stop_stream", "cameraId": "cmd-1"})
        await client.send({"type": "check_camera", "data": {"cameraId": "cmd-2"}})
        await client.send({"type": "reboot", "data": {"cameraId": "cmd-3"}})
        await client.wait_for(lambda m: m["type"] in ("pong", "ack", "error"), 5, timeout=15)
        assert len(client.of_type("pong")) == 1
        acks = client.of_type("ack")
        assert [(a["action"], a["cameraId"]) for a in acks] == [("start_stream", "cmd-1"), ("stop_stream", "cmd-1")]
        errors = client.of_type("error")
        assert [e["cameraId"] for e in errors] == ["cmd-2", "cmd-3"]
        assert "rtspUrl" in errors[0]["message"] and "unknown command" in errors[1]["message"]
    records = await asyncio.to_thread(consume, stack.bootstrap, stack.topic("camera_control"), expect=2, timeout=20)
    controls = [CameraControlMessage.model_validate_json(r.value) for r in records]
    assert [(c.action, c.camera_id, c.url) for c in controls] == [
        ("start_stream", "cmd-1", "rtsp://10.0.0.9/live"), ("stop_stream", "cmd-1", None)]
    assert controls[0].camera_name == "Gate"
    assert [str(c.request_id) for c in controls] == [a["requestId"] for a in acks]
    assert {r.key for r in records} == {b"cmd-1"}


async def test_camera_status_is_relayed_and_offline_also_means_stream_stopped(workers):
    stack, configs, _ = workers
    async with WsClient(ws_url(configs[0], TOKEN)) as client:
        await _produce(stack, "camera_status", [
            CameraStatusMessage(camera_id="status-1", status=1, message="online", latency_ms=35.0),
            CameraStatusMessage(camera_id="status-1", status=0, message="stopped by operator"),
        ])
        await client.wait_for(lambda m: m["type"] == "stream_stopped", 1, timeout=20)
        statuses = client.of_type("camera_status", "status-1")
        assert [(s["status"], s["message"]) for s in statuses] == [(1, "online"), (0, "stopped by operator")]
        assert statuses[0]["latencyMs"] == 35.0
        assert client.of_type("stream_stopped") == [{"cameraId": "status-1", "reason": "stopped by operator"}]
    # A browser that connects later is told every camera's current status at once.
    async with WsClient(ws_url(configs[1], TOKEN)) as late:
        await late.wait_for(lambda m: m["type"] == "camera_status" and m["data"]["cameraId"] == "status-1", 1, timeout=10)
        assert late.of_type("camera_status", "status-1")[0]["status"] == 0


async def test_ws_and_views_need_the_token_but_health_checks_do_not(workers):
    _, configs, _ = workers
    base = f"http://{configs[0]['web']['host']}:{configs[0]['web']['port']}"
    async with aiohttp.ClientSession() as session:
        for path in ("/ws", "/stats", "/cameras", "/metrics", "/ws?token=wrong"):
            async with session.get(base + path) as response:
                assert response.status == 401, path
        async with session.get(base + "/api/health/health_check") as response:
            assert response.status == 200 and json.loads(await response.text())["code"] == 200
        async with session.get(base + "/cameras", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200
