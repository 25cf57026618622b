"""exactly_once on Apache Kafka: detection messages through the fan-out, the heuristic
assessor and the aggregator on a worker that is SIGKILLed mid-run and restarted. The
committed camera-verdicts topic itself (not only the browser) then holds exactly one
verdict per frame.

One worker, because Faust 0.15.3 picks a send's transactional producer by the
DESTINATION partition: with several workers, a re-keyed send (fan-out to
assessment-tasks, assessor to risk-assessment-results) to a partition another worker
owns fails with "No transaction producer found".
"""
from __future__ import annotations

import asyncio

import pytest
import yaml

from streamapp.models import CameraVerdictMessage
from tests.factories import later, three_group_frame
from tests.relay_support import WsClient, ws_url
from tests.support import Stack, consume, produce, start_worker

# A restarted worker rejoins quickly instead of after Faust's 60 s default (Faust reads these).
FAST_GROUP = {"BROKER_SESSION_TIMEOUT": "8", "BROKER_HEARTBEAT_INTERVAL": "1"}

pytestmark = pytest.mark.kafka
CAMERAS = [f"eos-{i}" for i in range(6)]


def frames(first: int, count: int):
    return [three_group_frame(camera_id=CAMERAS[n % len(CAMERAS)], at=later(n), frame_index=n)
            for n in range(first, first + count)]


def is_result(message: dict) -> bool:
    return message["type"] == "detection_result" and message["data"]["cameraId"].startswith("eos-")


async def test_exactly_once_pipeline_commits_one_verdict_per_frame_across_a_worker_kill(kafka_bootstrap, tmp_path):
    stack = Stack(bootstrap=kafka_bootstrap, workdir=tmp_path, extra={
        "app": {"processing_guarantee": "exactly_once"},
        "fanout": {"cooldown_s": 0},
        # Long enough that frames in flight at the kill still complete from their results.
        "aggregator": {"deadline_s": 60},
        "llm": {"keys_file": str(tmp_path / "no-keys.yaml")},  # the heuristic assesses
    })
    config = stack.write_config()
    web = yaml.safe_load(config.read_text())
    send = lambda batch: asyncio.to_thread(  # noqa: E731
        produce, stack.bootstrap, stack.topic("detection_results"), [(m.camera_id.encode(), m.to_bytes()) for m in batch])
    worker = start_worker(config, tmp_path / "before-kill.log", FAST_GROUP)
    try:
        first, second = frames(0, 12), frames(12, 12)
        async with WsClient(ws_url(web)) as client:
            await send(first)
            await client.wait_for(is_result, 3, timeout=60)
        worker.kill()
        worker.stop()
        worker = start_worker(config, tmp_path / "after-kill.log", FAST_GROUP)
        async with WsClient(ws_url(web)) as client:
            await send(second)
            got = await client.wait_for(lambda m: is_result(m) and m["data"]["frameIndex"] >= 12, len(second),
                                        timeout=90, settle=2)
        by_frame = {m["data"]["messageId"]: m["data"] for m in got}
        assert len(got) == len(by_frame) == len(second)
        for result in by_frame.values():
            assert result["complete"] is True
            assert [r["groupIndex"] for r in result["dangerousDrivingResults"]] == [0, 1]
            assert all(r["assessor"] == "heuristic" for r in result["dangerousDrivingResults"])

        records = await asyncio.to_thread(consume, stack.bootstrap, stack.topic("camera_verdicts"),
                                          expect=len(first) + len(second), timeout=60, settle=3)
        verdicts = [CameraVerdictMessage.model_validate_json(r.value) for r in records]
        assert sorted(str(v.origin_message_id) for v in verdicts) == sorted(str(m.message_id) for m in first + second), \
            "read_committed camera-verdicts must hold each frame's verdict exactly once"
        assert all(v.complete for v in verdicts)
    finally:
        worker.stop()
