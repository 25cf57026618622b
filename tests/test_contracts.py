"""Message contracts: round trips (property-based) and at least 20 kinds of malformed input."""
from __future__ import annotations

import base64
import json
from datetime import timezone

import pytest
from faust.exceptions import ValueDecodeError
from hypothesis import given, settings as hsettings, strategies as st

from streamapp.codecs import dead_letter, decode
from streamapp.models import (
    AssessmentResult,
    AssessmentTaskMessage,
    DetectedObject,
    DetectionResultMessage,
    LLMMetadata,
    RiskAssessmentResultMessage,
    SpatialFeatures,
    TaskStatus,
    TrafficGroup,
)
from tests.factories import three_group_frame, tiny_jpeg_b64

coord = st.floats(min_value=0, max_value=4000, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)
when = st.datetimes(timezones=st.just(timezone.utc))
text = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s)


@st.composite
def bboxes(draw):
    x1, y1, w, h = draw(coord), draw(coord), draw(coord), draw(coord)
    return (x1, y1, x1 + w, y1 + h)


@st.composite
def detected_objects(draw, object_id):
    return DetectedObject(
        object_id=object_id, class_id=draw(st.integers(0, 79)), class_name=draw(text),
        confidence=draw(unit), bbox=draw(bboxes()),
        track_id=draw(st.none() | st.integers(0, 10**6)),
        velocity=draw(st.none() | st.tuples(st.floats(-500, 500), st.floats(-500, 500))),
    )


features = st.builds(
    SpatialFeatures, object_count=st.integers(0, 50), vehicle_count=st.integers(0, 50),
    pedestrian_count=st.integers(0, 50), density=unit, avg_spacing=coord, min_spacing=coord,
    min_pedestrian_vehicle_distance=st.none() | coord, closing_speed=st.none() | st.floats(-100, 100),
    time_to_collision=st.none() | st.floats(0, 100),
)


@st.composite
def detection_messages(draw):
    n = draw(st.integers(0, 6))
    objects = [draw(detected_objects(i)) for i in range(n)]
    groups = []
    if n >= 2:
        for index in range(draw(st.integers(0, 2))):
            ids = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
            groups.append(TrafficGroup(
                group_index=index, object_ids=ids, bbox=draw(bboxes()), classes=[draw(text)],
                spatial_features=draw(features), crop_jpeg_b64=draw(st.none() | st.just(tiny_jpeg_b64())),
            ))
    return DetectionResultMessage(
        camera_id=draw(text), frame_index=draw(st.integers(0, 10**9)), timestamp=draw(when),
        image_width=draw(st.integers(1, 8000)), image_height=draw(st.integers(1, 8000)),
        detected_objects=objects, traffic_groups=groups,
    )


@hsettings(max_examples=60, deadline=None)
@given(detection_messages())
def test_detection_message_round_trips_through_bytes(message):
    assert decode(DetectionResultMessage, message.to_bytes()) == message


@hsettings(max_examples=40, deadline=None)
@given(detection_messages(), st.integers(1, 3))
def test_assessment_task_round_trips_through_bytes(frame, priority):
    if not frame.traffic_groups:
        return
    group = frame.traffic_groups[0]
    task = AssessmentTaskMessage(
        origin_message_id=frame.message_id, camera_id=frame.camera_id, frame_timestamp=frame.timestamp,
        image_width=frame.image_width, image_height=frame.image_height, group=group,
        objects=[o for o in frame.detected_objects if o.object_id in group.object_ids], priority=priority,
    )
    assert decode(AssessmentTaskMessage, task.to_bytes()) == task


@hsettings(max_examples=60, deadline=None)
@given(
    level=st.sampled_from(["none", "low", "medium", "high"]), confidence=unit, description=st.text(max_size=200),
    types=st.lists(text, max_size=4), latency=st.floats(0, 10**5), when=when,
)
def test_risk_result_round_trips_through_bytes(level, confidence, description, types, latency, when):
    frame = three_group_frame()
    result = RiskAssessmentResultMessage(
        task_id=frame.message_id, origin_message_id=frame.message_id, camera_id="cam-1", group_index=0,
        frame_timestamp=when, status=TaskStatus.success,
        assessment=AssessmentResult(risk_level=level, risk_types=types, description=description, confidence=confidence),
        llm_metadata=LLMMetadata(model="qwen-vl-plus", key_name="key-a", latency_ms=latency),
    )
    assert decode(RiskAssessmentResultMessage, result.to_bytes()) == result


def _frame() -> dict:
    return json.loads(three_group_frame().to_bytes())


def _with(**changes) -> bytes:
    data = _frame()
    data.update(changes)
    return json.dumps(data).encode()


def _object_with(**changes) -> bytes:
    data = _frame()
    data["detected_objects"][0].update(changes)
    return json.dumps(data).encode()


def _group_with(**changes) -> bytes:
    data = _frame()
    data["traffic_groups"][0].update(changes)
    return json.dumps(data).encode()


MALFORMED = {
    "empty payload": b"",
    "plain text": b"hello",
    "truncated json": three_group_frame().to_bytes()[:-40],
    "json array": b"[1, 2]",
    "json string": b'"a frame"',
    "json null": b"null",
    "invalid utf-8": b"\xff\xfe\xfa",
    "missing camera_id": json.dumps({k: v for k, v in _frame().items() if k != "camera_id"}).encode(),
    "empty camera_id": _with(camera_id=""),
    "camera_id not a string": _with(camera_id=["x"]),
    "naive timestamp": _with(timestamp="2026-11-28T12:00:00"),
    "timestamp not a date": _with(timestamp="yesterday"),
    "negative frame index": _with(frame_index=-1),
    "zero image width": _with(image_width=0),
    "image height as text": _with(image_height="tall"),
    "message_id not a uuid": _with(message_id="1234"),
    "objects not a list": _with(detected_objects={"a": 1}),
    "bbox with three numbers": _object_with(bbox=[1, 2, 3]),
    "bbox inverted": _object_with(bbox=[100, 100, 50, 50]),
    "bbox negative": _object_with(bbox=[-5, 0, 10, 10]),
    "confidence above one": _object_with(confidence=1.7),
    "class name missing": _object_with(class_name=None),
    "group refers to unknown object": _group_with(object_ids=[0, 99]),
    "group without members": _group_with(object_ids=[]),
    "crop not base64": _group_with(crop_jpeg_b64="not base64!!"),
    "spatial features missing": json.dumps(
        {**_frame(), "traffic_groups": [{k: v for k, v in _frame()["traffic_groups"][0].items() if k != "spatial_features"}]}
    ).encode(),
    "preview not base64": _with(frame_preview_b64="@@@"),
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_detection_payload_is_rejected_with_a_reason(payload):
    with pytest.raises(ValueDecodeError) as err:
        decode(DetectionResultMessage, payload)
    assert str(err.value)
    letter = dead_letter(topic="detection-results", partition=3, offset=42, key=b"cam-1", value=payload,
                         exc=err.value, reason="invalid_message", worker_id="w1")
    assert base64.b64decode(letter.value_b64) == payload, "the envelope keeps the original bytes"
    assert letter.error_type in {"ValidationError", "ValueDecodeError"}
    assert (letter.source_topic, letter.partition, letter.offset, letter.worker_id) == ("detection-results", 3, 42, "w1")


def test_tombstone_is_rejected():
    with pytest.raises(ValueDecodeError, match="empty payload"):
        decode(DetectionResultMessage, None)


def test_successful_result_must_carry_an_assessment():
    frame = three_group_frame()
    with pytest.raises(ValueDecodeError, match="must carry an assessment"):
        decode(RiskAssessmentResultMessage, json.dumps({
            "task_id": str(frame.message_id), "origin_message_id": str(frame.message_id), "camera_id": "c",
            "group_index": 0, "frame_timestamp": "2026-11-28T12:00:00Z", "status": "success",
        }).encode())


def test_validation_errors_name_the_field_not_the_value():
    huge = "A" * 100_000
    with pytest.raises(ValueDecodeError) as err:
        decode(DetectionResultMessage, _with(camera_id=huge))
    assert "camera_id" in str(err.value) and huge not in str(err.value)
