"""/stats, /cameras, /cameras/{id} and /metrics on a real worker."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import yaml

from streamapp.models import CameraStatusMessage
from tests.relay_support import frame_context, group_result, record
from tests.support import Stack, consume, produce, start_worker

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("views")
    stack = Stack(bootstrap=kafka_bootstrap, workdir=workdir)
    path = stack.write_config()
    web = yaml.safe_load(path.read_text())["web"]
    proc = start_worker(path, workdir / "worker.log")
    try:
        ctx = frame_context("view-1", 0, assessed=1)
        produce(stack.bootstrap, stack.topic("frame_context"), [record(ctx)])
        produce(stack.bootstrap, stack.topic("risk_results"), [record(group_result(ctx, 0, "high"))])
        produce(stack.bootstrap, stack.topic("camera_status"), [record(CameraStatusMessage(camera_id="view-1", status=1))])
        produce(stack.bootstrap, stack.topic("frame_context"), [(b"view-2", b"{broken")])
        consume(stack.bootstrap, stack.topic("camera_verdicts"), expect=1, timeout=60)
        yield f"http://{web['host']}:{web['port']}", ctx, stack
    finally:
        proc.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def eventually(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_stats_shows_agents_partitions_lag_and_dlq(worker):
    base, _, stack = worker

    def check():
        status, body = get(base + "/stats")
        stats = json.loads(body)
        assert status == 200
        assert stats["dlq_messages"] == 1
        return stats

    stats = eventually(check)
    assert {"aggregate", "fanout"} <= set(stats["agents"])
    assert any(p.startswith("frame-context-") for p in stats["assigned_partitions"])
    lag = stats["consumer_lag"]
    assert {stack.topic(t) for t in ("detection_results", "frame_context", "risk_results")} <= set(lag)
    assert all(v >= 0 for v in lag.values())
    assert stats["relay"] == {"clients": 0, "cameras": 1, "dropped_messages": 0}
    assert "key_pool" in stats


def test_cameras_list_every_camera_and_one_camera_has_its_latest_verdict(worker):
    base, ctx, _ = worker
    status, body = get(base + "/cameras")
    assert status == 200
    [camera] = json.loads(body)["cameras"]
    assert camera["camera_id"] == "view-1" and camera["status"]["status"] == 1
    assert camera["latest_verdict"]["origin_message_id"] == str(ctx.origin_message_id)
    assert camera["latest_verdict"]["max_risk_level"] == "high"
    status, body = get(base + "/cameras/view-1")
    one = json.loads(body)
    assert status == 200 and "frame_preview_b64" not in one["latest_verdict"]
    assert len(one["latest_verdict"]["detected_objects"]) == 6
    status, body = get(base + "/cameras/unknown-camera")
    assert status == 404 and "unknown-camera" in body


def test_metrics_export_the_pipeline_figures_for_prometheus(worker):
    base, _, stack = worker
    status, body = get(base + "/metrics")
    assert status == 200
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    assert samples["trafficrisk_frames_total"] == 1
    assert samples["trafficrisk_detections_total"] == 6 and samples["trafficrisk_groups_total"] == 3
    assert samples['trafficrisk_verdicts_total{outcome="complete"}'] == 1
    assert samples["trafficrisk_frame_to_verdict_seconds_count"] == 1
    assert samples["trafficrisk_dlq_size"] == 1
    assert any(k.startswith("trafficrisk_dlq_messages_total{") and "invalid_message" in k for k in samples)
    assert samples["trafficrisk_websocket_clients"] == 0 and samples["trafficrisk_websocket_dropped_total"] == 0
    assert any(k.startswith("trafficrisk_consumer_lag{") for k in samples)
