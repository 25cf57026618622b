"""The answer parser on a corpus of real-world answer shapes."""
import pytest

from llm.errors import ErrorClass
from llm.parser import AnswerError, parse_assessment

PLAIN = '{"risk_level": "high", "risk_types": ["tailgating"], "description": "Too close.", "confidence": 0.9, "involved_object_ids": [1, 2]}'

# (answer, expected risk level, expected confidence or None to skip, expected ids or None)
READABLE = [
    (PLAIN, "high", 0.9, [1, 2]),
    (f"```json\n{PLAIN}\n```", "high", 0.9, [1, 2]),
    (f"```\n{PLAIN}\n```", "high", 0.9, [1, 2]),
    (f"Here is my assessment:\n{PLAIN}\nLet me know if you need more.", "high", 0.9, [1, 2]),
    ('{"risk_level": "High", "confidence": 0.7}', "high", 0.7, []),
    ('{"risk_level": "MEDIUM"}', "medium", 0.5, []),
    ('{"risk_level": "moderate", "confidence": "0.6"}', "medium", 0.6, None),
    ('{"risk_level": "中", "description": "行人距离车辆较近", "confidence": 0.8}', "medium", 0.8, None),
    ('{"风险等级": "高", "风险类型": ["人车冲突"], "描述": "行人横穿马路", "置信度": "85%"}', "high", 0.85, None),
    ('{"risk_level": "低风险"}', "low", None, None),
    ('{"risk_level": "无"}', "none", None, None),
    ('{"risk_level": "none", "risk_types": [], "description": "Normal traffic."}', "none", 0.5, []),
    ('{"risk_level": "high risk", "confidence": 95}', "high", 0.95, None),
    ('{"risk_level": 3, "confidence": "0.9"}', "high", 0.9, None),
    ('{"risk_level": "2"}', "medium", None, None),
    ('{"riskLevel": "low", "riskTypes": "tailgating, lane change", "involvedObjectIds": ["3", "obj_4"]}', "low", None, [3, 4]),
    ('{"level": "severe", "reason": "truck in emergency lane"}', "high", None, None),
    ('{"result": {"risk_level": "medium", "confidence": 0.55}}', "medium", 0.55, None),
    ('{"assessment": {"risk": {"level": "low"}}}', "low", None, None),
    ('[{"risk_level": "low"}, {"risk_level": "high"}]', "high", None, None),
    ("{'risk_level': 'high', 'confidence': 0.8, 'involved_object_ids': [1]}", "high", 0.8, [1]),
    ('{"risk_level": "medium", "confidence": 0.6,}', "medium", 0.6, None),
    ('{"risk_level": "low", "flag": true, "extra": null}', "low", None, None),
    ("{\u201crisk_level\u201d\uff1a \u201chigh\u201d\uff0c \u201cconfidence\u201d\uff1a 0.9}", "high", 0.9, None),
    ('{"risk_level": " Medium. ", "description": "Cyclist merging."}', "medium", None, None),
    ('{"risk_level": "low", "involved_object_ids": [1, 99]}', "low", None, [1]),
    ('Risk level: High\nDescription: A pedestrian steps in front of the car.\nConfidence: 0.8', "high", 0.8, None),
    ('风险等级：中\n描述：车辆跟车过近', "medium", None, None),
    ('{"risk_level": "high", "confidence": "high"}', "high", 0.8, None),
    ('The JSON: {"risk_level": "low", "description": "A {curly} text"} done', "low", None, None),
    ('{"analysis": "two cars", "risk_level": "very high"}', "high", None, None),
    ('{"risk_level": "none", "risk_types": ["tailgating"]}', "none", None, None),
]

UNREADABLE = [
    ("", ErrorClass.unparseable),
    ("   ", ErrorClass.unparseable),
    ('{"risk_level": "high", "description": "A pedestrian is cross', ErrorClass.unparseable),
    ('```json\n{"risk_level": "medium", "confid', ErrorClass.unparseable),
    ("I'm sorry, but I can't help with identifying people in images.", ErrorClass.content_filtered),
    ("抱歉，我无法分析这张图片。", ErrorClass.content_filtered),
    ('{"description": "two cars", "confidence": 0.9}', ErrorClass.unparseable),
    ('{"risk_level": "purple"}', ErrorClass.unparseable),
    ("The scene looks fine to me.", ErrorClass.unparseable),
    ('{"risk_level": "low or high"}', ErrorClass.unparseable),
]


def test_corpus_has_at_least_thirty_answer_shapes():
    assert len(READABLE) + len(UNREADABLE) >= 30


@pytest.mark.parametrize("answer,level,confidence,ids", READABLE)
def test_parser_reads_real_world_answer_shapes(answer, level, confidence, ids):
    result = parse_assessment(answer, known_ids=[0, 1, 2, 3, 4])
    assert result.risk_level == level
    if confidence is not None:
        assert result.confidence == pytest.approx(confidence)
    if ids is not None:
        assert result.involved_object_ids == ids


@pytest.mark.parametrize("answer,error_class", UNREADABLE)
def test_parser_refuses_to_guess_on_unreadable_answers(answer, error_class):
    with pytest.raises(AnswerError) as info:
        parse_assessment(answer)
    assert info.value.error_class == error_class


def test_parser_normalises_risk_types_in_english_and_chinese():
    result = parse_assessment('{"risk_level": "high", "risk_types": ["Tailgating", "闯红灯", "行人横穿", "sudden lane change"]}')
    assert result.risk_types == ["tailgating", "red_light_running", "vehicle_pedestrian_conflict", "sudden_lane_change"]


def test_parser_drops_risk_types_when_level_is_none():
    assert parse_assessment('{"risk_level": "none", "risk_types": ["tailgating"]}').risk_types == []
