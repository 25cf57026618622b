"""The local assessor: deterministic verdicts from geometry, labelled as heuristic."""
from datetime import datetime, timezone
from uuid import uuid4

from risk import heuristic
from streamapp.models import AssessmentTaskMessage, DetectedObject, SpatialFeatures, TrafficGroup


def task(objects, **features) -> AssessmentTaskMessage:
    defaults = dict(object_count=len(objects), vehicle_count=sum(o.class_name != "person" for o in objects),
                    pedestrian_count=sum(o.class_name == "person" for o in objects), density=0.1,
                    avg_spacing=3.0, min_spacing=3.0)
    group = TrafficGroup(group_index=0, object_ids=[o.object_id for o in objects], bbox=(0, 0, 600, 400),
                         classes=[o.class_name for o in objects], spatial_features=SpatialFeatures(**{**defaults, **features}))
    return AssessmentTaskMessage(origin_message_id=uuid4(), camera_id="c", frame_timestamp=datetime.now(timezone.utc),
                                 image_width=640, image_height=480, group=group, objects=objects, priority=2)


def obj(i, cls, box):
    return DetectedObject(object_id=i, class_id=0 if cls == "person" else 2, class_name=cls, confidence=0.9, bbox=box)


PERSON = obj(0, "person", (100, 100, 130, 190))
CAR_NEAR = obj(1, "car", (125, 120, 245, 200))
CAR_FAR = obj(2, "car", (500, 100, 620, 180))


def test_pedestrian_touching_a_vehicle_is_high_risk_with_both_involved():
    result = heuristic.assess(task([PERSON, CAR_NEAR], min_pedestrian_vehicle_distance=0.2))
    assert result.risk_level == "high"
    assert result.risk_types == ["vehicle_pedestrian_conflict"]
    assert sorted(result.involved_object_ids) == [0, 1]


def test_pedestrian_far_from_vehicles_is_no_risk():
    result = heuristic.assess(task([PERSON, CAR_FAR], min_pedestrian_vehicle_distance=6.0))
    assert result.risk_level == "none" and result.risk_types == [] and result.involved_object_ids == []


def test_short_time_to_collision_between_vehicles_reads_as_tailgating():
    cars = [obj(1, "car", (100, 100, 200, 160)), obj(2, "car", (230, 100, 330, 160))]
    result = heuristic.assess(task(cars, min_spacing=1.5, time_to_collision=0.8, closing_speed=40.0))
    assert result.risk_level == "high" and result.risk_types == ["tailgating"]


def test_crowding_alone_never_exceeds_low():
    people = [obj(i, "person", (i * 40, 0, i * 40 + 30, 90)) for i in range(12)]
    assert heuristic.assess(task(people, object_count=12)).risk_level == "low"


def test_same_geometry_gives_the_same_verdict():
    first = heuristic.assess(task([PERSON, CAR_NEAR], min_pedestrian_vehicle_distance=0.9))
    assert first == heuristic.assess(task([PERSON, CAR_NEAR], min_pedestrian_vehicle_distance=0.9))
    assert first.risk_level == "medium"


def test_heuristic_results_are_labelled():
    meta = heuristic.metadata()
    assert meta.model == "heuristic" and meta.assessor == "heuristic" and meta.key_name is None
