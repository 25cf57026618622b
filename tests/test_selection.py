"""Which groups are worth a model call: pure rules of the fan-out."""
from __future__ import annotations

from risk.selection import cooldown_open, plan_fanout, priority, risk_score, skip_reason
from streamapp.settings import FanoutSettings
from tests.factories import group, later, obj, three_group_frame

CONFIG = FanoutSettings()


def test_pedestrian_next_to_car_is_assessed_first_with_top_priority():
    plan = plan_fanout(three_group_frame(), CONFIG, last_assessed=None)
    assert [t.group.group_index for t in plan.tasks] == [0, 1]
    assert plan.tasks[0].priority == 1


def test_group_of_pedestrians_only_is_skipped_for_lack_of_vehicle():
    plan = plan_fanout(three_group_frame(), CONFIG, last_assessed=None)
    assert plan.skipped == {"no_vehicle": 1}


def test_single_member_group_is_too_small():
    car = obj(0, "car", (0, 0, 10, 10))
    assert skip_reason(group(0, [car]), {0: car}, CONFIG) == "too_few_members"


def test_classes_outside_the_interest_list_do_not_count():
    bench, car = obj(0, "bench", (0, 0, 10, 10)), obj(1, "car", (12, 0, 30, 10))
    assert skip_reason(group(0, [bench, car]), {0: bench, 1: car}, CONFIG) == "classes_not_of_interest"


def test_frames_inside_the_cooldown_produce_no_tasks_but_still_a_context():
    first = plan_fanout(three_group_frame(at=later(0)), CONFIG, last_assessed=None)
    second = plan_fanout(three_group_frame(at=later(2.9)), CONFIG, last_assessed=first.cooldown_mark)
    third = plan_fanout(three_group_frame(at=later(3.0)), CONFIG, last_assessed=first.cooldown_mark)
    assert second.tasks == [] and second.skipped["cooldown"] == 2 and second.cooldown_mark is None
    assert second.context.assessed_groups == {}
    assert len(third.tasks) == 2


def test_cooldown_is_open_for_a_new_camera_and_for_clock_resets():
    assert cooldown_open(None, later(0), 3.0)
    assert cooldown_open(later(10).timestamp(), later(0), 3.0)


def test_task_limit_per_frame_keeps_the_most_urgent_groups():
    plan = plan_fanout(three_group_frame(), CONFIG.model_copy(update={"max_tasks_per_frame": 1}), None)
    assert [t.group.group_index for t in plan.tasks] == [0]
    assert plan.skipped["frame_task_limit"] == 1


def test_without_a_cooldown_every_frame_is_assessed_and_no_mark_is_kept():
    config = CONFIG.model_copy(update={"cooldown_s": 0})
    first = plan_fanout(three_group_frame(), config, None)
    second = plan_fanout(three_group_frame(at=later(0.1)), config, last_assessed=None)
    assert len(first.tasks) == len(second.tasks) == 2
    assert first.cooldown_mark is None and second.cooldown_mark is None


def test_context_lists_assessed_groups_and_carries_no_images():
    plan = plan_fanout(three_group_frame(), CONFIG, None)
    assert plan.context.assessed_groups == {t.group.group_index: t.task_id for t in plan.tasks}
    assert all(g.crop_jpeg_b64 is None for g in plan.context.traffic_groups)
    assert all(t.group.crop_jpeg_b64 for t in plan.tasks)
    assert "frame_preview_b64" not in plan.context.model_dump()


def test_tasks_carry_their_members_as_detection_context():
    frame = three_group_frame()
    task = plan_fanout(frame, CONFIG, None).tasks[0]
    assert [o.object_id for o in task.objects] == task.group.object_ids
    assert task.origin_message_id == frame.message_id


def test_priority_follows_the_geometric_score():
    person, car = obj(0, "person", (0, 0, 10, 30)), obj(1, "car", (12, 0, 60, 30))
    near = group(0, [person, car], ped_vehicle=0.1)
    far = group(0, [person, car], ped_vehicle=1.9, min_spacing=3.0)
    imminent = group(0, [person, car], ped_vehicle=1.9, ttc=0.5)
    assert priority(risk_score(near)) == 1
    assert priority(risk_score(far)) == 3
    assert priority(risk_score(imminent)) == 1
