"""The fan-out through a real worker process on Apache Kafka."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest
import yaml

from streamapp.models import AssessmentTaskMessage, DeadLetter, FrameContextMessage
from tests.factories import three_group_frame, later
from tests.support import consume, produce, start_worker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MALFORMED = [
    b"not json at all",
    b'{"camera_id": "cam-x"}',
    b'[1, 2, 3]',
    json.dumps({**json.loads(three_group_frame().to_bytes()), "timestamp": "2026-11-28T12:00:00"}).encode(),
    json.dumps({**json.loads(three_group_frame().to_bytes()), "image_width": -5}).encode(),
]


def get_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def test_worker_emits_one_task_per_worthy_group_and_dead_letters_malformed_input(stack, tmp_path):
    config = stack.write_config()
    worker = start_worker(config, tmp_path / "worker.log")
    try:
        port = yaml.safe_load(config.read_text())["web"]["port"]
        health = get_json(port, "/health")
        assert health["status"] == "UP" and health["broker"]["reachable"]
        assert set(health["agents"]) >= {"fanout"} and health["assigned_partitions"]
        assert get_json(port, "/api/health/health_check")["code"] == 200

        frame = three_group_frame("cam-1")
        produce(stack.bootstrap, stack.topic("detection_results"), [(b"cam-1", frame.to_bytes())])
        tasks = consume(stack.bootstrap, stack.topic("assessment_tasks"), expect=2, timeout=60, settle=3)
        assert len(tasks) == 2
        parsed = [AssessmentTaskMessage.model_validate_json(r.value) for r in tasks]
        assert sorted(t.group.group_index for t in parsed) == [0, 1]
        assert all(t.origin_message_id == frame.message_id and t.group.crop_jpeg_b64 for t in parsed)
        assert {r.key for r in tasks} == {b"cam-1:0"}

        after = three_group_frame("cam-2", frame_index=7)
        produce(stack.bootstrap, stack.topic("detection_results"),
                [(b"cam-bad", payload) for payload in MALFORMED] + [(b"cam-2", after.to_bytes())])
        letters = consume(stack.bootstrap, stack.topic("dlq"), expect=5, timeout=60, settle=2)
        assert len(letters) == 5
        envelopes = [DeadLetter.model_validate_json(r.value) for r in letters]
        assert sorted(e.value_b64 for e in envelopes) == sorted(
            __import__("base64").b64encode(p).decode() for p in MALFORMED)
        assert all(e.source_topic == stack.topic("detection_results") and e.offset is not None for e in envelopes)
        assert all(e.reason == "invalid_message" and e.error for e in envelopes)

        tasks = consume(stack.bootstrap, stack.topic("assessment_tasks"), expect=4, timeout=60, settle=2)
        assert len(tasks) == 4, "valid messages after the malformed ones are still processed"
        contexts = consume(stack.bootstrap, stack.topic("frame_context"), expect=2, timeout=30, settle=1)
        assert {FrameContextMessage.model_validate_json(r.value).camera_id for r in contexts} == {"cam-1", "cam-2"}
    finally:
        worker.stop()


def test_cooldown_survives_sigkill_through_the_changelog(stack, tmp_path):
    config = stack.write_config()
    # The killed member's session must expire before its partitions move; keep it short.
    quick_rejoin = {"BROKER_SESSION_TIMEOUT": "10"}
    worker = start_worker(config, tmp_path / "first.log", quick_rejoin)
    topic = stack.topic("detection_results")
    try:
        produce(stack.bootstrap, topic, [(b"cam-1", three_group_frame("cam-1", at=later(0), frame_index=0).to_bytes())])
        assert len(consume(stack.bootstrap, stack.topic("assessment_tasks"), expect=2, timeout=60)) == 2
        time.sleep(4)  # let the changelog write and the offset commit happen
    finally:
        worker.kill()
        worker.stop()

    # A fresh data folder: the cooldown can only come back from the changelog topic.
    fresh = stack.write_config("restarted.yaml", app={"data_dir": str(tmp_path / "fresh-data")})
    worker = start_worker(fresh, tmp_path / "second.log", quick_rejoin)
    try:
        produce(stack.bootstrap, topic, [
            (b"cam-1", three_group_frame("cam-1", at=later(1.0), frame_index=1).to_bytes()),
            (b"cam-1", three_group_frame("cam-1", at=later(4.0), frame_index=2).to_bytes()),
        ])
        tasks = consume(stack.bootstrap, stack.topic("assessment_tasks"), expect=4, timeout=60, settle=3)
        frames = sorted({AssessmentTaskMessage.model_validate_json(r.value).frame_timestamp for r in tasks})
        assert frames == [later(0), later(4.0)], "the frame 1 s after the first stayed in cooldown"
    finally:
        worker.stop()
