"""Helpers for the verdict tests: synthetic frames and results, and a WebSocket client."""
from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Optional
from uuid import UUID, uuid4

import aiohttp

from streamapp.models import (
    AssessmentResult,
    DetectedObject,
    FrameContextMessage,
    LLMMetadata,
    RiskAssessmentResultMessage,
    SpatialFeatures,
    TrafficGroup,
)

PREVIEW_B64 = base64.b64encode(b"\xff\xd8\xff\xe0 tiny jpeg stand-in bytes \xff\xd9").decode()


def frame_context(camera_id: str, frame_index: int, assessed: int = 2, groups: int = 3,
                  at: Optional[datetime] = None) -> FrameContextMessage:
    objects = [DetectedObject(object_id=i, class_id=2, class_name="car" if i % 2 else "person", confidence=0.9,
                              bbox=(20.0 * i, 10, 20.0 * i + 15, 40)) for i in range(2 * groups)]
    features = SpatialFeatures(object_count=2, vehicle_count=1, pedestrian_count=1, density=0.2,
                               avg_spacing=0.5, min_spacing=0.3, min_pedestrian_vehicle_distance=0.3)
    traffic_groups = [TrafficGroup(group_index=g, object_ids=[2 * g, 2 * g + 1], bbox=(40.0 * g, 10, 40.0 * g + 35, 40),
                                   classes=["car", "person"], spatial_features=features) for g in range(groups)]
    return FrameContextMessage(
        origin_message_id=uuid4(), camera_id=camera_id, camera_name=f"Camera {camera_id}", frame_index=frame_index,
        frame_timestamp=at or datetime.now(timezone.utc), image_width=640, image_height=480,
        detected_objects=objects, traffic_groups=traffic_groups,
        process_time_ms=42.0, assessed_groups={g: uuid4() for g in range(assessed)},
    )


def group_result(ctx: FrameContextMessage, group: int, level: str = "medium",
                 task_id: Optional[UUID] = None) -> RiskAssessmentResultMessage:
    return RiskAssessmentResultMessage(
        task_id=task_id or ctx.assessed_groups[group], origin_message_id=ctx.origin_message_id,
        camera_id=ctx.camera_id, group_index=group, frame_timestamp=ctx.frame_timestamp, status="success",
        assessment=AssessmentResult(risk_level=level, risk_types=["vehicle_pedestrian_conflict"] if level != "none" else [],
                                    description=f"group {group} is {level}", confidence=0.7, involved_object_ids=[2 * group]),
        llm_metadata=LLMMetadata(model="heuristic", assessor="heuristic", latency_ms=2.0),
    )


def record(message) -> tuple[bytes, bytes]:
    return message.camera_id.encode(), message.to_bytes()


class WsClient:
    """A browser stand-in: connects to /ws and keeps every message it receives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[dict] = []
        self._session: Optional[aiohttp.ClientSession] = None
        self.socket: Optional[aiohttp.ClientWebSocketResponse] = None
        self._reader: Optional[asyncio.Task] = None

    async def __aenter__(self) -> "WsClient":
        self._session = aiohttp.ClientSession()
        self.socket = await self._session.ws_connect(self.url)
        self._reader = asyncio.ensure_future(self._read())
        await self.wait_for(lambda m: m["type"] == "connection_ack", 1, timeout=10)
        return self

    async def __aexit__(self, *exc) -> None:
        self._reader.cancel()
        await self.socket.close()
        await self._session.close()

    async def _read(self) -> None:
        async for message in self.socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))

    async def send(self, payload: dict) -> None:
        await self.socket.send_str(json.dumps(payload))

    def of_type(self, kind: str, camera_prefix: str = "") -> list[dict]:
        return [m["data"] for m in self.messages
                if m["type"] == kind and str(m["data"].get("cameraId", "")).startswith(camera_prefix)]

    async def wait_for(self, predicate, count: int, timeout: float = 60.0, settle: float = 0.0,
                       strict: bool = True) -> list[dict]:
        """Wait until ``count`` messages match, then ``settle`` seconds more (to catch extras).
        At the timeout: fail, or (strict=False) return what matched, for the caller to judge."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matched = [m for m in self.messages if predicate(m)]
            if len(matched) >= count:
                await asyncio.sleep(settle)
                return [m for m in self.messages if predicate(m)]
            await asyncio.sleep(0.1)
        matched = [m for m in self.messages if predicate(m)]
        if not strict:
            return matched
        raise AssertionError(f"{len(matched)} of {count} expected messages within {timeout}s; "
                             f"types seen: {sorted({m['type'] for m in self.messages})}")


def ws_url(config: dict, token: Optional[str] = None) -> str:
    web = config["web"]
    return f"http://{web['host']}:{web['port']}/ws" + (f"?token={token}" if token else "")


def later(at: datetime, seconds: float) -> datetime:
    return at + timedelta(seconds=seconds)
