"""Message contracts (BRIEF section 3), validated at every Kafka boundary.

Field names follow the seed's ``kafka_messages.py``. Bboxes are ``[x1, y1, x2, y2]``
in pixels; timestamps are timezone-aware UTC; images are base64 JPEG.
"""
from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal, Optional
from uuid import UUID, uuid4

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

RiskLevel = Literal["none", "low", "medium", "high"]
RISK_ORDER: dict[str, int] = {"none": 0, "low": 1, "medium": 2, "high": 3}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (ISO-8601 with Z or +00:00)")
    return value.astimezone(timezone.utc)


def _bbox(value: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = value
    if min(value) < 0:
        raise ValueError("bbox coordinates must be non-negative pixels")
    if x2 < x1 or y2 < y1:
        raise ValueError("bbox must be [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1")
    return value


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _base64(value: str) -> str:
    # The same rules as b64decode(validate=True), without decoding: images are checked
    # on every hop, and deleting the alphabet in C is ~9x faster than decoding.
    body = value.rstrip("=")
    if len(value) % 4 or len(value) - len(body) > 2 or not body.isascii() or body.encode().translate(None, _B64_ALPHABET):
        raise ValueError("not valid base64")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
BBox = Annotated[tuple[float, float, float, float], AfterValidator(_bbox)]
Base64Jpeg = Annotated[str, AfterValidator(_base64)]
NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class TaskStatus(str, Enum):
    pending = "pending"
    processing = "processing"
    success = "success"
    failed = "failed"
    retrying = "retrying"


class DetectedObject(Message):
    object_id: int = Field(ge=0)
    class_id: int = Field(ge=0)
    class_name: NonEmpty
    confidence: float = Field(ge=0, le=1)
    bbox: BBox
    track_id: Optional[int] = None
    # Pixels per second, from the track history; absent without tracking.
    velocity: Optional[tuple[float, float]] = None

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.bbox
        return (x1 + x2) / 2, (y1 + y2) / 2


class SpatialFeatures(Message):
    object_count: int = Field(ge=0)
    vehicle_count: int = Field(ge=0)
    pedestrian_count: int = Field(ge=0)
    density: float = Field(ge=0)
    avg_spacing: float = Field(ge=0)
    min_spacing: float = Field(ge=0)
    # Spacing is in multiples of object size (scale-free); None when a role is absent.
    min_pedestrian_vehicle_distance: Optional[float] = Field(default=None, ge=0)
    closing_speed: Optional[float] = None
    time_to_collision: Optional[float] = Field(default=None, ge=0)


class TrafficGroup(Message):
    group_index: int = Field(ge=0)
    object_ids: list[int] = Field(min_length=1)
    bbox: BBox
    classes: list[str]
    spatial_features: SpatialFeatures
    crop_jpeg_b64: Optional[Base64Jpeg] = None


class FrameFields(Message):
    """What every per-frame message says of the frame itself."""

    camera_id: NonEmpty
    camera_name: Optional[str] = None
    frame_index: int = Field(ge=0)
    image_width: int = Field(gt=0)
    image_height: int = Field(gt=0)
    detected_objects: list[DetectedObject] = []
    traffic_groups: list[TrafficGroup] = []
    process_time_ms: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _groups_refer_to_objects(self) -> "FrameFields":
        ids = {o.object_id for o in self.detected_objects}
        for group in self.traffic_groups:
            missing = set(group.object_ids) - ids
            if missing:
                raise ValueError(f"group {group.group_index} refers to unknown objects {sorted(missing)}")
        return self


class DetectionResultMessage(FrameFields):
    message_id: UUID = Field(default_factory=uuid4)
    timestamp: UtcDatetime
    # A small preview of the whole frame for the dashboard; never sent to the LLM. It
    # travels on this topic only: the relay joins it to the frame's verdict
    # (web/previews.py), so no agent, table or later topic copies it.
    frame_preview_b64: Optional[Base64Jpeg] = None


class AssessmentTaskMessage(Message):
    task_id: UUID = Field(default_factory=uuid4)
    origin_message_id: UUID
    camera_id: NonEmpty
    frame_timestamp: UtcDatetime
    image_width: int = Field(gt=0)
    image_height: int = Field(gt=0)
    group: TrafficGroup
    objects: list[DetectedObject]
    priority: int = Field(ge=1, le=3)
    created_at: UtcDatetime = Field(default_factory=utcnow)
    retry_count: int = Field(default=0, ge=0)
    status: TaskStatus = TaskStatus.pending


class AssessmentResult(Message):
    risk_level: RiskLevel
    risk_types: list[str] = []
    description: str = ""
    confidence: float = Field(default=0.5, ge=0, le=1)
    involved_object_ids: list[int] = []


class LLMMetadata(Message):
    # Which assessor answered: a model name, or "heuristic" for the local fallback.
    model: str
    assessor: Literal["llm", "heuristic"] = "llm"
    key_name: Optional[str] = None
    latency_ms: float = Field(default=0, ge=0)
    attempts: int = Field(default=1, ge=1)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


class RiskAssessmentResultMessage(Message):
    result_id: UUID = Field(default_factory=uuid4)
    task_id: UUID
    origin_message_id: UUID
    camera_id: NonEmpty
    group_index: int = Field(ge=0)
    frame_timestamp: UtcDatetime
    status: TaskStatus
    assessment: Optional[AssessmentResult] = None
    llm_metadata: Optional[LLMMetadata] = None
    error: Optional[str] = None
    completed_at: UtcDatetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _success_has_assessment(self) -> "RiskAssessmentResultMessage":
        if self.status == TaskStatus.success and self.assessment is None:
            raise ValueError("a successful result must carry an assessment")
        return self


class FrameContextMessage(FrameFields):
    """What the aggregator needs of a frame besides the results: sent once per frame
    by the fan-out, keyed like the results; no crops, no preview."""

    origin_message_id: UUID
    frame_timestamp: UtcDatetime
    # group_index -> task_id of every group sent for assessment.
    assessed_groups: dict[int, UUID] = {}
    fanout_at: UtcDatetime = Field(default_factory=utcnow)


class CameraStatusMessage(Message):
    camera_id: NonEmpty
    status: Literal[0, 1, 2]  # 0 offline, 1 online, 2 fault (front end's codes)
    message: str = ""
    latency_ms: Optional[float] = None
    timestamp: UtcDatetime = Field(default_factory=utcnow)


class DeadLetter(Message):
    """The envelope of a message that could not be handled."""

    source_topic: str
    partition: Optional[int] = None
    offset: Optional[int] = None
    key_b64: Optional[str] = None
    value_b64: str
    error_type: str
    error: str
    reason: str
    first_seen: UtcDatetime = Field(default_factory=utcnow)
    worker_id: str
    attempts: int = 0

    @field_validator("error")
    @classmethod
    def _short(cls, value: str) -> str:
        return value[:2000]


class GroupVerdict(Message):
    group_index: int = Field(ge=0)
    task_id: UUID
    status: TaskStatus
    assessment: Optional[AssessmentResult] = None
    llm_metadata: Optional[LLMMetadata] = None
    error: Optional[str] = None


class CameraVerdictMessage(FrameFields):
    """One verdict per frame and camera: the frame context joined with its group results
    (the preview image is joined later, by the relay)."""

    origin_message_id: UUID
    frame_timestamp: UtcDatetime
    results: list[GroupVerdict] = []
    # Groups sent for assessment whose result did not arrive before the deadline.
    missing_groups: list[int] = []
    max_risk_level: RiskLevel = "none"
    has_dangerous_driving: bool = False
    complete: bool = True
    verdict_at: UtcDatetime = Field(default_factory=utcnow)


class CameraControlMessage(Message):
    """A browser's command for the detector runner (start_stream / stop_stream / check_camera)."""

    action: Literal["start_stream", "stop_stream", "check_camera"]
    camera_id: NonEmpty
    url: Optional[str] = None
    camera_name: Optional[str] = None
    request_id: UUID = Field(default_factory=uuid4)
    requested_at: UtcDatetime = Field(default_factory=utcnow)
