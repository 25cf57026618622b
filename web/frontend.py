"""The existing front end's WebSocket protocol (BRIEF section 3), in one place.

Server -> browser messages are ``{"type": ..., "data": {...}}`` with camelCase keys;
our models stay snake_case everywhere else. Browser -> server commands are parsed
into a :class:`CameraControlMessage` (or a ping), accepting the payload either under
``data`` or flat beside ``type``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import ValidationError

from streamapp.codecs import describe_validation_error
from streamapp.models import CameraControlMessage, CameraStatusMessage, CameraVerdictMessage, utcnow

COMMANDS = ("start_stream", "stop_stream", "check_camera")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camelize(value: Any) -> Any:
    if isinstance(value, dict):
        return {camel(str(k)): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def envelope(kind: str, data: dict) -> dict:
    return {"type": kind, "data": data}


def connection_ack(client_id: str, worker_id: str) -> dict:
    return envelope("connection_ack", {"clientId": client_id, "workerId": worker_id, "serverTime": utcnow().isoformat()})


def pong() -> dict:
    return envelope("pong", {"timestamp": utcnow().isoformat()})


def error(message: str, camera_id: Optional[str] = None) -> dict:
    return envelope("error", {"cameraId": camera_id, "message": message})


def command_ack(command: CameraControlMessage) -> dict:
    """The relay took the command; the detector runner answers with camera_status."""
    return envelope("ack", {"action": command.action, "cameraId": command.camera_id,
                            "requestId": str(command.request_id)})


def camera_status(status: CameraStatusMessage) -> dict:
    return envelope("camera_status", camelize(status.model_dump(mode="json")))


def stream_stopped(status: CameraStatusMessage) -> dict:
    return envelope("stream_stopped", {"cameraId": status.camera_id, "reason": status.message or "offline"})


def detection_result(verdict: CameraVerdictMessage, preview_b64: Optional[str] = None) -> dict:
    """A verdict in the front end's shape: groups carry their risk, results are listed
    as dangerousDrivingResults (one per assessed group), the preview is a data URL."""
    results = {r.group_index: r for r in verdict.results}
    groups = []
    for group in verdict.traffic_groups:
        row = camelize(group.model_dump(mode="json", exclude={"crop_jpeg_b64"}, exclude_none=True))
        result = results.get(group.group_index)
        row["riskLevel"] = result.assessment.risk_level if result and result.assessment else None
        row["assessed"] = result is not None
        groups.append(row)
    dangerous = []
    for r in verdict.results:
        if r.assessment is None:
            continue
        meta = r.llm_metadata
        dangerous.append({
            "type": ", ".join(r.assessment.risk_types) or "none",
            "riskLevel": r.assessment.risk_level,
            "confidence": r.assessment.confidence,
            "description": r.assessment.description,
            "groupIndex": r.group_index,
            "riskTypes": r.assessment.risk_types,
            "involvedObjectIds": r.assessment.involved_object_ids,
            "assessor": meta.assessor if meta else None,
            "model": meta.model if meta else None,
            "keyName": meta.key_name if meta else None,
        })
    return envelope("detection_result", {
        "cameraId": verdict.camera_id,
        "cameraName": verdict.camera_name,
        "messageId": str(verdict.origin_message_id),
        "frameIndex": verdict.frame_index,
        "timestamp": verdict.frame_timestamp.isoformat(),
        "frame": f"data:image/jpeg;base64,{preview_b64}" if preview_b64 else None,
        "imageWidth": verdict.image_width,
        "imageHeight": verdict.image_height,
        "detectedObjects": camelize([o.model_dump(mode="json", exclude_none=True) for o in verdict.detected_objects]),
        "trafficGroups": groups,
        "dangerousDrivingResults": dangerous,
        "hasDangerousDriving": verdict.has_dangerous_driving,
        "maxRiskLevel": verdict.max_risk_level,
        "missingGroups": verdict.missing_groups,
        "complete": verdict.complete,
        "processTime": verdict.process_time_ms,
        "verdictAt": verdict.verdict_at.isoformat(),
    })


class CommandError(ValueError):
    def __init__(self, message: str, camera_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.camera_id = camera_id


@dataclass
class Command:
    kind: str  # "ping" or "control"
    control: Optional[CameraControlMessage] = None


def parse_command(text: str) -> Command:
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise CommandError("not valid JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise CommandError("a command is a JSON object with a 'type'")
    kind = message["type"]
    body = message.get("data") if isinstance(message.get("data"), dict) else message
    camera_id = body.get("cameraId")
    if kind == "ping":
        return Command("ping")
    if kind not in COMMANDS:
        raise CommandError(f"unknown command {kind!r}; expected ping or one of {', '.join(COMMANDS)}", camera_id)
    try:
        control = CameraControlMessage(
            action=kind, camera_id=camera_id, url=body.get("rtspUrl"), camera_name=body.get("cameraName"),
        )
    except ValidationError as exc:
        raise CommandError(f"{kind}: {describe_validation_error(exc)}", camera_id if isinstance(camera_id, str) else None) from None
    if kind in ("start_stream", "check_camera") and not control.url:
        raise CommandError(f"{kind} needs rtspUrl", control.camera_id)
    return Command("control", control)
