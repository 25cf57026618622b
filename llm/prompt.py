"""The request we send for one traffic group: a traffic-safety analyst's instructions,
the group crop as an image data URL, and the detection context as text (BRIEF 4)."""
from __future__ import annotations

import json

from streamapp.models import AssessmentTaskMessage

RISK_TYPES = ("tailgating", "sudden_lane_change", "emergency_lane", "red_light_running",
              "vehicle_pedestrian_conflict", "other")

SYSTEM_PROMPT = (
    "You are a traffic-safety analyst reviewing one cropped region of a traffic camera frame. "
    "Judge whether the road users in it show dangerous behaviour: tailgating, sudden lane change, "
    "emergency-lane use, red-light running, or a vehicle-pedestrian conflict. "
    "Use the image and the detection context (object classes, pixel boxes [x1, y1, x2, y2] in the "
    "full frame, and spatial features where distances are multiples of object size). "
    "When unsure, choose the lower risk level. "
    "Answer with one JSON object only, no prose and no code fence, exactly these fields: "
    '{"risk_level": "none" | "low" | "medium" | "high", '
    f'"risk_types": [zero or more of {", ".join(RISK_TYPES)}], '
    '"description": "one short sentence in English", '
    '"confidence": a number from 0 to 1, '
    '"involved_object_ids": [ids of the objects involved]}'
)


def context_text(task: AssessmentTaskMessage) -> str:
    group = task.group
    context = {
        "camera_id": task.camera_id,
        "frame_size": [task.image_width, task.image_height],
        "group_bbox": [round(v) for v in group.bbox],
        "objects": [
            {"id": o.object_id, "class": o.class_name, "confidence": round(o.confidence, 2),
             "bbox": [round(v) for v in o.bbox],
             **({"velocity_px_s": [round(v, 1) for v in o.velocity]} if o.velocity else {})}
            for o in task.objects
        ],
        "spatial_features": group.spatial_features.model_dump(exclude_none=True),
    }
    return "Detection context:\n" + json.dumps(context, separators=(",", ":"))


def build_messages(task: AssessmentTaskMessage) -> list[dict]:
    content: list[dict] = [{"type": "text", "text": context_text(task)}]
    if task.group.crop_jpeg_b64:
        content.insert(0, {"type": "image_url",
                           "image_url": {"url": f"data:image/jpeg;base64,{task.group.crop_jpeg_b64}"}})
    else:
        content[0]["text"] += "\n(No image is available for this group; judge from the context.)"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def estimate_tokens(task: AssessmentTaskMessage, max_tokens: int) -> int:
    """A pre-call estimate for token-per-minute pacing, corrected after the call.
    Qwen-VL spends about one token per 28x28 pixels of image (at least 4)."""
    text = len(SYSTEM_PROMPT) + len(context_text(task))
    x1, y1, x2, y2 = task.group.bbox
    image = max(4, int((x2 - x1) * (y2 - y1) / (28 * 28))) if task.group.crop_jpeg_b64 else 0
    return text // 3 + image + max_tokens
