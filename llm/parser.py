"""Turn a model's answer into an :class:`AssessmentResult`, defensively.

Real answers come fenced (```json), wrapped in prose, in Chinese, with enum values
spelled "High" or "中", numbers as strings, fields renamed or nested, Python literals
or trailing commas, cut off mid-object, or as refusals. Whatever cannot be read
honestly raises :class:`AnswerError`; an unreadable answer is never turned into "none".
"""
from __future__ import annotations

import ast
import json
import re
from typing import Any, Iterable, Optional

from llm.errors import ErrorClass, LLMError
from streamapp.models import AssessmentResult


class AnswerError(LLMError):
    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(error_class, message)


_LEVELS = {
    "none": ("none", "no", "no risk", "safe", "normal", "nil", "zero", "0", "无", "无风险", "没有风险", "安全", "正常", "无危险"),
    "low": ("low", "minor", "slight", "low risk", "1", "低", "低风险", "轻微", "较低"),
    "medium": ("medium", "moderate", "mid", "middle", "medium risk", "2", "中", "中等", "中风险", "一般", "较高"),
    "high": ("high", "severe", "critical", "very high", "extreme", "dangerous", "high risk", "3",
             "高", "高风险", "严重", "危险", "极高"),
}
_LEVEL_OF = {alias: level for level, aliases in _LEVELS.items() for alias in aliases}

_FIELDS = {
    "risk_level": ("risk_level", "risklevel", "level", "risk", "severity", "danger_level", "风险等级", "风险级别", "风险"),
    "risk_types": ("risk_types", "risktypes", "risk_type", "types", "type", "dangers", "behaviors", "behaviours",
                   "风险类型", "危险类型", "类型"),
    "description": ("description", "desc", "reason", "explanation", "summary", "analysis", "描述", "说明", "原因"),
    "confidence": ("confidence", "conf", "certainty", "probability", "score", "置信度", "可信度"),
    "involved_object_ids": ("involved_object_ids", "involvedobjectids", "object_ids", "objectids", "involved_objects",
                            "involved_ids", "objects", "ids", "涉及对象", "涉及目标"),
}
_FIELD_OF = {alias: name for name, aliases in _FIELDS.items() for alias in aliases}

_TYPE_ALIASES = {
    "tailgating": ("tailgat", "following too close", "close following", "跟车", "车距过近", "追尾"),
    "sudden_lane_change": ("lane change", "lane_change", "cut in", "cutting in", "变道", "加塞", "并线"),
    "emergency_lane": ("emergency", "shoulder", "应急车道"),
    "red_light_running": ("red light", "red_light", "signal violation", "闯红灯"),
    "vehicle_pedestrian_conflict": ("pedestrian", "jaywalk", "行人", "人车"),
}

_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i cannot|i can't|i can not|unable to (assist|help|analy[sz]e|provide)|"
    r"as an ai)\b|抱歉|无法(提供|分析|判断|协助)|不能(提供|分析)", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON|javascript|js)?\s*(.*?)```", re.DOTALL)
_FULLWIDTH = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "：": ":", "，": ",", "｛": "{", "｝": "}",
                            "［": "[", "］": "]"})


def _objects(text: str) -> Iterable[str]:
    """Every balanced {...} in text (string-aware), outermost first."""
    start = text.find("{")
    while start != -1:
        depth, in_string, escape = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                escape = ch == "\\" and not escape
                if ch == '"' and not escape:
                    in_string = False
                elif ch != "\\":
                    escape = False
                continue
            if ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    yield text[start:i + 1]
                    start = text.find("{", i + 1)
                    break
        else:
            return  # unbalanced from here on: truncated


def _loads(candidate: str) -> Any:
    """JSON, then the usual near-JSON: trailing commas, Python literals, single quotes."""
    try:
        return json.loads(candidate)
    except ValueError:
        pass
    relaxed = re.sub(r",\s*([}\]])", r"\1", candidate)
    try:
        return json.loads(relaxed)
    except ValueError:
        pass
    try:
        return ast.literal_eval(re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False",
                                       re.sub(r"\bnull\b", "None", relaxed))))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _find_mapping(data: Any) -> Optional[dict]:
    """The dict that holds the assessment: the top level, or nested under a wrapper
    ("result", "assessment", ...), or the riskiest item of a list."""
    if isinstance(data, list):
        found = [m for m in (_find_mapping(d) for d in data) if m is not None]
        if not found:
            return None
        return max(found, key=lambda m: ["none", "low", "medium", "high"].index(_level(_get(m, "risk_level")) or "none"))
    if not isinstance(data, dict):
        return None
    if _get(data, "risk_level") is not None:
        return data
    for value in data.values():
        if isinstance(value, (dict, list)):
            found = _find_mapping(value)
            if found is not None:
                return found
    return None


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _get(mapping: dict, field: str) -> Any:
    for key, value in mapping.items():
        if isinstance(key, str) and _FIELD_OF.get(_norm(key)) == field:
            return value
        if isinstance(key, str) and _FIELD_OF.get(_norm(key).replace("_", "")) == field:
            return value
    return None


def _level(value: Any) -> Optional[str]:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        value = str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, dict):
        return _level(_get(value, "risk_level"))
    text = str(value).strip().lower().strip(".!。")
    if text in _LEVEL_OF:
        return _LEVEL_OF[text]
    text = re.sub(r"[_\-]+", " ", text)
    text = re.sub(r"\s*(risk|level|风险|级别|等级)\s*$", "", text).strip()
    if text in _LEVEL_OF:
        return _LEVEL_OF[text]
    words = re.findall(r"[a-z]+|[\u4e00-\u9fff]", text)
    hits = {_LEVEL_OF[w] for w in words if w in _LEVEL_OF}
    return hits.pop() if len(hits) == 1 else None


def _confidence(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return 0.5
    if isinstance(value, str):
        match = re.search(r"-?\d+(?:\.\d+)?", value)
        if not match:
            return {"high": 0.8, "高": 0.8, "medium": 0.6, "中": 0.6, "low": 0.4, "低": 0.4}.get(value.strip().lower(), 0.5)
        number = float(match.group())
        if "%" in value:
            number /= 100
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        return 0.5
    if 1 < number <= 100:
        number /= 100  # "85" meaning 85 %
    return min(1.0, max(0.0, number))


def _types(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else re.split(r"[,;、，/|]+", str(value))
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text or _norm(text) in ("none", "无", "n/a"):
            continue
        canonical = next((name for name, keys in _TYPE_ALIASES.items() if any(k in text.lower() for k in keys)),
                         _norm(text)[:64])
        if canonical not in out:
            out.append(canonical)
    return out


def _ids(value: Any, known: Optional[set[int]]) -> list[int]:
    if value is None:
        return []
    items = value if isinstance(value, list) else re.split(r"[,;\s]+", str(value))
    out: list[int] = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("id", item.get("object_id"))
        match = re.search(r"\d+", str(item)) if item is not None and not isinstance(item, bool) else None
        if match:
            number = int(match.group())
            if (known is None or number in known) and number not in out:
                out.append(number)
    return out


def _prose(text: str) -> Optional[dict]:
    """'Risk level: High. Description: ...' answers without any JSON."""
    match = re.search(r"(risk[\s_]*level|风险等级|风险级别)\s*[:=是为]\s*\**\s*([A-Za-z]+|[\u4e00-\u9fff]{1,3})",
                      text, re.IGNORECASE)
    if not match:
        return None
    found: dict = {"risk_level": match.group(2)}
    desc = re.search(r"(description|描述)\s*[:：]\s*(.+)", text, re.IGNORECASE)
    if desc:
        found["description"] = desc.group(2).strip()
    conf = re.search(r"(confidence|置信度)\s*[:：]\s*([\d.]+%?)", text, re.IGNORECASE)
    if conf:
        found["confidence"] = conf.group(2)
    return found


def parse_assessment(text: Optional[str], known_ids: Optional[Iterable[int]] = None) -> AssessmentResult:
    """Parse one answer. Raises AnswerError(unparseable) for empty, truncated or
    unreadable answers and AnswerError(content_filtered) for refusals."""
    if text is None or not text.strip():
        raise AnswerError(ErrorClass.unparseable, "empty answer")
    text = text.strip().translate(_FULLWIDTH)
    known = set(known_ids) if known_ids is not None else None
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    mapping = None
    for candidate in candidates:
        candidate = candidate.strip()
        if candidate[:1] in "[{":  # the whole answer is one JSON value (a list of groups, say)
            mapping = _find_mapping(_loads(candidate))
        for obj in _objects(candidate) if mapping is None else ():
            mapping = _find_mapping(_loads(obj))
            if mapping is not None:
                break
        if mapping is not None:
            break
    if mapping is None:
        if _REFUSAL.search(text):
            raise AnswerError(ErrorClass.content_filtered, f"the model declined: {text[:160]!r}")
        mapping = _prose(text)
    if mapping is None:
        opened = text.count("{") > text.count("}")
        raise AnswerError(ErrorClass.unparseable,
                          ("truncated JSON" if opened else "no assessment found") + f": {text[:160]!r}")
    level = _level(_get(mapping, "risk_level"))
    if level is None:
        raise AnswerError(ErrorClass.unparseable, f"unknown risk level {_get(mapping, 'risk_level')!r}")
    description = _get(mapping, "description")
    return AssessmentResult(
        risk_level=level,
        risk_types=_types(_get(mapping, "risk_types")) if level != "none" else [],
        description=(str(description).strip() if description is not None else "")[:500],
        confidence=_confidence(_get(mapping, "confidence")),
        involved_object_ids=_ids(_get(mapping, "involved_object_ids"), known),
    )
