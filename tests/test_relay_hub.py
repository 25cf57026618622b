"""The relay's plain parts: per-browser queues, dedupe, joining previews to verdicts,
and the front end's message shapes."""
from __future__ import annotations

import asyncio
import json

import pytest

from streamapp.models import CameraStatusMessage, CameraVerdictMessage
from streamapp.settings import RelaySettings
from tests.relay_support import PREVIEW_B64, frame_context, group_result
from web import frontend
from web.previews import PreviewJoin
from web.relay import ClientQueue, Hub


def verdict(camera: str = "cam-9", frame_index: int = 0) -> CameraVerdictMessage:
    from risk.aggregation import FrameState, build_verdict

    ctx = frame_context(camera, frame_index, assessed=2)
    state = FrameState(origin_message_id=ctx.origin_message_id, camera_id=camera, first_seen=0,
                       context=ctx, results={"0": group_result(ctx, 0, "high")})
    return build_verdict(state, ctx.frame_timestamp)


def deliver(hub: Hub, v: CameraVerdictMessage) -> None:
    """As on Kafka: the frame's preview (detection-results) first, its verdict later."""
    hub.on_preview(str(v.origin_message_id), PREVIEW_B64)
    hub.on_verdict(v)


async def test_slow_browser_loses_its_oldest_messages_and_they_are_counted():
    queue = ClientQueue(size=3)
    for n in range(5):
        queue.put(str(n))
    assert queue.dropped == 2
    assert [await queue.get() for _ in range(3)] == ["2", "3", "4"]
    waiter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.put("5")
    assert await asyncio.wait_for(waiter, 1) == "5"


def test_one_slow_browser_does_not_hold_back_the_others():
    hub = Hub(RelaySettings(client_queue_size=2), "w1")
    _, slow = hub.connect()
    _, fast = hub.connect()
    for n in range(4):
        deliver(hub, verdict(frame_index=n))
        fast.items.popleft()  # the fast browser keeps up
    assert slow.dropped == 2 and len(slow.items) == 2 and fast.dropped == 0
    assert [json.loads(t)["data"]["frameIndex"] for t in slow.items] == [2, 3]


def test_reemitted_verdict_is_relayed_once_and_dedupe_memory_is_bounded():
    hub = Hub(RelaySettings(dedupe_capacity=2), "w1")
    _, queue = hub.connect()
    first = verdict()
    deliver(hub, first)
    deliver(hub, first.model_copy())
    assert len(queue.items) == 1
    deliver(hub, verdict(frame_index=1))
    deliver(hub, verdict(frame_index=2))
    deliver(hub, first)  # forgotten after two newer frames: capacity is 2
    assert len(queue.items) == 4


def sent(queue: ClientQueue) -> list[tuple[int, bool]]:
    return [(m["data"]["frameIndex"], m["data"]["frame"] is not None) for m in map(json.loads, queue.items)]


def test_verdict_waits_for_a_preview_that_comes_late_and_goes_with_it():
    hub = Hub(RelaySettings(preview_wait_s=1.0), "w1")
    _, queue = hub.connect()
    v = verdict()
    hub.on_verdict(v, now=100.0)
    hub.expire(now=100.5)
    assert sent(queue) == []
    hub.on_preview(str(v.origin_message_id), PREVIEW_B64)
    assert sent(queue) == [(0, True)]
    assert json.loads(queue.items[0])["data"]["frame"] == f"data:image/jpeg;base64,{PREVIEW_B64}"


def test_verdict_whose_preview_never_comes_goes_without_a_frame_after_the_wait():
    hub = Hub(RelaySettings(preview_wait_s=1.0), "w1")
    _, queue = hub.connect()
    hub.on_verdict(verdict(frame_index=1), now=100.0)
    hub.on_verdict(verdict(frame_index=2), now=100.8)
    hub.expire(now=101.2)
    assert sent(queue) == [(1, False)]
    hub.expire(now=102.0)
    assert sent(queue) == [(1, False), (2, False)] and hub.previews.without_preview == 2


def test_previews_are_not_held_while_nobody_watches_and_are_dropped_when_the_last_browser_leaves():
    hub = Hub(RelaySettings(), "w1")
    v = verdict()
    hub.on_preview(str(v.origin_message_id), PREVIEW_B64)
    assert not hub.previews.previews
    client_id, queue = hub.connect()
    hub.on_preview("some-frame", PREVIEW_B64)
    hub.on_verdict(v, now=1.0)
    hub.disconnect(client_id)
    assert not hub.previews.previews and not hub.previews.waiting


def test_preview_join_holds_at_most_its_capacity_on_either_side():
    join: PreviewJoin[str] = PreviewJoin(capacity=2, wait_s=5.0)
    for n in range(3):
        join.preview(f"p{n}", f"image{n}")
    assert list(join.previews) == ["p1", "p2"]
    assert join.verdict("p0", "v0", now=0.0) == []  # its preview was the oldest, now gone
    assert join.verdict("v1", "late1", now=0.0) == []
    assert join.verdict("v2", "late2", now=0.0) == [("v0", None)]  # a third waiter pushes out the first
    assert join.verdict("p2", "v2", now=0.0) == [("v2", "image2")]


def test_latest_verdict_per_camera_keeps_the_newest_frame():
    hub = Hub(RelaySettings(), "w1")
    newer, older = verdict(frame_index=5), verdict(frame_index=4)
    older.frame_timestamp = newer.frame_timestamp.replace(year=newer.frame_timestamp.year - 1)
    hub.on_verdict(newer)
    hub.on_verdict(older)
    assert hub.latest["cam-9"].frame_index == 5


def test_offline_status_also_tells_the_browser_the_stream_stopped():
    hub = Hub(RelaySettings(), "w1")
    _, queue = hub.connect()
    hub.on_status(CameraStatusMessage(camera_id="c1", status=0, message="rtsp timeout"))
    kinds = [json.loads(t) for t in queue.items]
    assert [k["type"] for k in kinds] == ["camera_status", "stream_stopped"]
    assert kinds[0]["data"]["cameraId"] == "c1" and kinds[0]["data"]["status"] == 0
    assert kinds[1]["data"] == {"cameraId": "c1", "reason": "rtsp timeout"}
    assert [m["type"] for m in hub.snapshot()] == ["camera_status"]


def test_detection_result_has_the_front_ends_fields_in_camel_case():
    message = frontend.detection_result(verdict(), PREVIEW_B64)
    assert message["type"] == "detection_result"
    data = message["data"]
    assert {"cameraId", "timestamp", "frame", "imageWidth", "imageHeight", "detectedObjects", "trafficGroups",
            "dangerousDrivingResults", "hasDangerousDriving", "maxRiskLevel", "processTime"} <= set(data)
    assert data["frame"].startswith("data:image/jpeg;base64,")
    assert data["maxRiskLevel"] == "high" and data["hasDangerousDriving"] is True
    assert data["missingGroups"] == [1] and data["complete"] is False
    group = data["trafficGroups"][0]
    assert group["riskLevel"] == "high" and group["spatialFeatures"]["minPedestrianVehicleDistance"] == 0.3
    assert "crop_jpeg_b64" not in json.dumps(data) and "_" not in "".join(data["detectedObjects"][0])
    [result] = data["dangerousDrivingResults"]
    assert result == {"type": "vehicle_pedestrian_conflict", "riskLevel": "high", "confidence": 0.7,
                      "description": "group 0 is high", "groupIndex": 0, "riskTypes": ["vehicle_pedestrian_conflict"],
                      "involvedObjectIds": [0], "assessor": "heuristic", "model": "heuristic", "keyName": None}


@pytest.mark.parametrize("text, message", [
    ("not json", "not valid JSON"),
    ('["start_stream"]', "JSON object with a 'type'"),
    ('{"type": "format_disk"}', "unknown command"),
    ('{"type": "start_stream", "data": {"rtspUrl": "rtsp://x"}}', "camera_id"),
    ('{"type": "check_camera", "cameraId": "c1"}', "needs rtspUrl"),
])
def test_bad_commands_get_a_clear_error(text, message):
    with pytest.raises(frontend.CommandError, match=message):
        frontend.parse_command(text)


def test_commands_are_read_nested_under_data_or_flat():
    nested = frontend.parse_command('{"type": "start_stream", "data": {"cameraId": "c1", "rtspUrl": "rtsp://h/1", "cameraName": "Gate"}}')
    flat = frontend.parse_command('{"type": "stop_stream", "cameraId": "c1"}')
    assert (nested.control.action, nested.control.camera_id, nested.control.url, nested.control.camera_name) == (
        "start_stream", "c1", "rtsp://h/1", "Gate")
    assert (flat.control.action, flat.control.camera_id, flat.control.url) == ("stop_stream", "c1", None)
    assert frontend.parse_command('{"type": "ping"}').kind == "ping"
