"""The aggregator's rules, called directly: completeness, deadlines, dedupe, verdict fields."""
from __future__ import annotations

from datetime import datetime, timezone
from uuid import UUID, uuid4

from risk.aggregation import (
    CameraLedger,
    FrameState,
    Unsettled,
    apply_context,
    apply_deadline,
    apply_result,
    apply_settled,
    build_verdict,
    deadline,
    due_frames,
    max_risk,
)
from streamapp.models import (
    AssessmentResult,
    DetectedObject,
    FrameContextMessage,
    LLMMetadata,
    RiskAssessmentResultMessage,
    SpatialFeatures,
    TrafficGroup,
)
from streamapp.settings import AggregatorSettings

CONFIG = AggregatorSettings(deadline_s=5.0, remember_finished=3)
T0 = 1_800_000_000.0
FRAME_TIME = datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc)


def context(groups: int = 3, assessed: dict[int, UUID] | None = None, frame_id: UUID | None = None) -> FrameContextMessage:
    objects = [DetectedObject(object_id=i, class_id=2, class_name="car", confidence=0.9, bbox=(10 * i, 0, 10 * i + 8, 8))
               for i in range(2 * groups)]
    features = SpatialFeatures(object_count=2, vehicle_count=2, pedestrian_count=0, density=0.1, avg_spacing=1, min_spacing=1)
    traffic_groups = [TrafficGroup(group_index=g, object_ids=[2 * g, 2 * g + 1], bbox=(0, 0, 20, 8), classes=["car"],
                                   spatial_features=features) for g in range(groups)]
    return FrameContextMessage(
        origin_message_id=frame_id or uuid4(), camera_id="cam-1", frame_index=7, frame_timestamp=FRAME_TIME,
        image_width=640, image_height=480, detected_objects=objects, traffic_groups=traffic_groups,
        assessed_groups=assessed if assessed is not None else {g: uuid4() for g in range(groups)},
    )


def result(ctx: FrameContextMessage, group: int, level: str = "low", task_id: UUID | None = None) -> RiskAssessmentResultMessage:
    return RiskAssessmentResultMessage(
        task_id=task_id or ctx.assessed_groups[group], origin_message_id=ctx.origin_message_id, camera_id=ctx.camera_id,
        group_index=group, frame_timestamp=ctx.frame_timestamp, status="success",
        assessment=AssessmentResult(risk_level=level, risk_types=["tailgating"] if level != "none" else [],
                                    description=f"group {group}", confidence=0.8),
        llm_metadata=LLMMetadata(model="heuristic", assessor="heuristic", latency_ms=1.0),
    )


class Delivery:
    """A verdict record on its way to Kafka."""

    def __init__(self) -> None:
        self.delivered = False
        self.error: Exception | None = None

    def done(self) -> bool:
        return self.delivered or self.error is not None

    def cancelled(self) -> bool:
        return False

    def exception(self) -> Exception | None:
        return self.error


class Frames:
    """Plays the agent's and the timer's part: keeps the rows the rules hand back, sends
    verdicts (delivered when `deliver` says so) and settles those delivered."""

    def __init__(self) -> None:
        self.rows: dict[str, FrameState] = {}
        self.ledger = CameraLedger()
        self.unsettled = Unsettled()
        self.deliveries: list[Delivery] = []
        self.verdicts = []
        self.ignored = []

    def _keep(self, frame_id: str, step, now: float) -> None:
        if step.ignored:
            self.ignored.append(step.ignored)
            return
        if step.leaves:
            self.rows.pop(frame_id, None)
            return
        self.rows[frame_id] = step.frame
        if step.finished:
            self.verdicts.append(build_verdict(step.frame, datetime.fromtimestamp(now, timezone.utc)))
            self.deliveries.append(Delivery())
            self.unsettled.add(step.frame.camera_id, frame_id, self.deliveries[-1])

    def context(self, ctx: FrameContextMessage, now: float = T0):
        frame_id = str(ctx.origin_message_id)
        step = apply_context(self.rows.get(frame_id), self.ledger, ctx, now, CONFIG, self.unsettled)
        self._keep(frame_id, step, now)
        return step

    def result(self, res: RiskAssessmentResultMessage, now: float = T0):
        frame_id = str(res.origin_message_id)
        step = apply_result(self.rows.get(frame_id), self.ledger, res, now, CONFIG, self.unsettled)
        self._keep(frame_id, step, now)
        return step

    def tick(self, now: float):
        """The timer's look at the open and the sent frames, then the agent's handling of
        its ticks; returns the deadline steps."""
        self.unsettled.prune(self.rows.__contains__)
        settled = self.unsettled.delivered()
        open_frames = [f for f in self.rows.values() if str(f.origin_message_id) not in self.unsettled]
        steps = []
        for frame_ids in due_frames(open_frames, now, CONFIG).values():
            for frame_id in frame_ids:
                step = apply_deadline(self.rows.get(frame_id), self.ledger, now, CONFIG, self.unsettled)
                self._keep(frame_id, step, now)
                steps.append(step)
        for frame_ids in settled.values():
            for frame_id in frame_ids:
                self._keep(frame_id, apply_settled(self.rows.get(frame_id), self.ledger, CONFIG), now)
                self.unsettled.discard(frame_id)
        return steps

    def deliver(self) -> None:
        for delivery in self.deliveries:
            delivery.delivered = True

    def settle(self, now: float = T0) -> None:
        """The verdicts sent so far reach Kafka and the next tick settles them."""
        self.deliver()
        self.tick(now)

    def restarted(self) -> "Frames":
        """Another worker, with the rows and ledger from the changelogs, nothing in memory."""
        other = Frames()
        other.rows = {k: v.model_copy(deep=True) for k, v in self.rows.items()}
        other.ledger = self.ledger.model_copy(deep=True)
        return other


def test_verdict_is_emitted_once_every_assessed_group_has_a_result():
    agg, ctx = Frames(), context(groups=3)
    agg.context(ctx)
    agg.result(result(ctx, 0, "low"))
    agg.result(result(ctx, 2, "high"))
    assert agg.verdicts == []
    agg.result(result(ctx, 1, "none"))
    [verdict] = agg.verdicts
    assert verdict.complete and verdict.missing_groups == []
    assert [r.group_index for r in verdict.results] == [0, 1, 2]
    assert verdict.max_risk_level == "high" and verdict.has_dangerous_driving
    assert verdict.frame_index == 7 and verdict.camera_name == ctx.camera_name
    assert len(verdict.detected_objects) == 6 and len(verdict.traffic_groups) == 3
    agg.settle()
    assert agg.rows == {} and agg.ledger.finished == [str(ctx.origin_message_id)]


def test_results_before_the_context_wait_for_it():
    agg, ctx = Frames(), context(groups=2)
    agg.result(result(ctx, 0))
    agg.result(result(ctx, 1))
    assert agg.verdicts == [] and str(ctx.origin_message_id) in agg.rows
    agg.context(ctx, now=T0 + 1)
    [verdict] = agg.verdicts
    assert verdict.complete and len(verdict.results) == 2


def test_frame_without_assessed_groups_gets_its_verdict_from_the_context_alone():
    agg, ctx = Frames(), context(groups=2, assessed={})
    agg.context(ctx)
    [verdict] = agg.verdicts
    assert verdict.complete and verdict.results == [] and verdict.max_risk_level == "none"
    assert not verdict.has_dangerous_driving


def test_redelivered_result_with_the_same_task_id_is_ignored():
    agg, ctx = Frames(), context(groups=2)
    agg.context(ctx)
    first = result(ctx, 0, "low")
    agg.result(first)
    agg.result(first.model_copy(update={"assessment": AssessmentResult(risk_level="high")}))
    assert agg.ignored == ["duplicate_result"]
    agg.result(result(ctx, 1, "none"))
    [verdict] = agg.verdicts
    assert verdict.max_risk_level == "low"


def test_result_arriving_after_the_verdict_cannot_make_a_second_one():
    agg, ctx = Frames(), context(groups=1)
    agg.context(ctx)
    res = result(ctx, 0)
    agg.result(res)
    agg.result(res)  # verdict sent, not yet on Kafka
    agg.settle()
    agg.context(ctx)  # verdict settled: remembered by the ledger
    assert len(agg.verdicts) == 1
    assert agg.ignored == ["frame_finished", "frame_finished"]
    assert agg.rows == {}


def test_deadline_emits_a_verdict_naming_the_missing_groups():
    agg, ctx = Frames(), context(groups=3)
    agg.context(ctx, now=T0)
    agg.result(result(ctx, 1, "medium"), now=T0 + 1)
    assert deadline(agg.rows[str(ctx.origin_message_id)], CONFIG) == T0 + CONFIG.deadline_s
    assert agg.tick(T0 + 4.9) == []
    agg.tick(T0 + 5.0)
    [verdict] = agg.verdicts
    assert not verdict.complete and verdict.missing_groups == [0, 2]
    assert verdict.max_risk_level == "medium"
    agg.result(result(ctx, 0), now=T0 + 6)
    assert len(agg.verdicts) == 1 and agg.ignored == ["frame_finished"]


def test_results_whose_context_never_came_are_handed_back_for_the_dlq_at_the_deadline():
    agg, ctx = Frames(), context(groups=2)
    agg.result(result(ctx, 0), now=T0)
    [step] = agg.tick(T0 + 5)
    assert [r.group_index for r in step.orphaned] == [0]
    assert agg.verdicts == [] and agg.rows == {} and agg.ledger.finished == [] and step.dropped
    # Not remembered as finished: a late context still gets its (partial) verdict.
    agg.context(ctx, now=T0 + 6)
    agg.tick(T0 + 11)
    [verdict] = agg.verdicts
    assert verdict.missing_groups == [0, 1]


def test_due_frames_are_listed_per_camera_oldest_first():
    frames = [FrameState(origin_message_id=uuid4(), camera_id=cam, first_seen=T0 + seen)
              for cam, seen in [("a", 2.0), ("b", 0.0), ("a", 0.5), ("a", 9.0)]]
    due = due_frames(frames, T0 + 7.5, CONFIG)
    assert due == {"a": [str(frames[2].origin_message_id), str(frames[0].origin_message_id)],
                   "b": [str(frames[1].origin_message_id)]}


def test_tick_for_a_frame_finished_or_not_yet_due_changes_nothing():
    agg, ctx = Frames(), context(groups=2)
    agg.context(ctx, now=T0)
    frame = agg.rows[str(ctx.origin_message_id)]
    assert apply_deadline(None, agg.ledger, T0 + 9, CONFIG).ignored == "frame_finished"
    assert apply_deadline(frame, agg.ledger, T0 + 1, CONFIG).ignored == "not_due"
    assert agg.ledger.finished == [] and agg.verdicts == []


def test_finished_frame_memory_is_bounded_per_camera():
    agg = Frames()
    contexts = [context(groups=1, assessed={}) for _ in range(5)]
    for ctx in contexts:
        agg.context(ctx)
    agg.settle()
    assert agg.ledger.finished == [str(c.origin_message_id) for c in contexts[-CONFIG.remember_finished:]]


def test_second_result_for_an_answered_group_from_a_rerun_fanout_is_ignored():
    agg, ctx = Frames(), context(groups=2)
    agg.context(ctx)
    agg.result(result(ctx, 0, "low"))
    agg.result(result(ctx, 0, "high", task_id=uuid4()))
    assert agg.ignored == ["duplicate_result"]


def test_max_risk_orders_levels_and_defaults_to_none():
    assert max_risk([]) == "none"
    assert max_risk(["low", "high", "medium"]) == "high"
    assert max_risk(["none", "low"]) == "low"


def test_low_risk_is_shown_but_not_dangerous_driving():
    agg, ctx = Frames(), context(groups=1)
    agg.context(ctx)
    agg.result(result(ctx, 0, "low"))
    [verdict] = agg.verdicts
    assert verdict.max_risk_level == "low" and not verdict.has_dangerous_driving


def test_frame_state_round_trips_through_json_as_stored_in_the_table():
    ctx = context(groups=2)
    agg = Frames()
    agg.context(ctx)
    agg.result(result(ctx, 1))
    row = agg.rows[str(ctx.origin_message_id)]
    again = FrameState.model_validate_json(row.model_dump_json(exclude_none=True))
    assert again == row


def test_a_finished_frame_keeps_its_row_until_its_verdict_is_on_kafka():
    agg, ctx = Frames(), context(groups=1)
    frame_id = str(ctx.origin_message_id)
    agg.context(ctx)
    agg.result(result(ctx, 0))
    agg.tick(T0 + 10)  # not delivered yet: nothing to settle, and not due again
    assert frame_id in agg.rows and agg.ledger.finished == [] and len(agg.verdicts) == 1
    agg.settle(T0 + 11)
    assert agg.rows == {} and agg.ledger.finished == [frame_id] and len(agg.verdicts) == 1
    assert frame_id not in agg.unsettled


def test_a_verdict_whose_delivery_failed_is_never_settled():
    agg, ctx = Frames(), context(groups=1, assessed={})
    agg.context(ctx)
    agg.deliveries[0].error = RuntimeError("broker gone")
    agg.tick(T0 + 1)
    assert str(ctx.origin_message_id) in agg.rows and agg.ledger.finished == []


def test_a_worker_that_recovers_a_finished_but_unsettled_frame_sends_its_verdict_again():
    agg, ctx = Frames(), context(groups=2)
    agg.context(ctx)
    agg.result(result(ctx, 0, "high"))
    agg.result(result(ctx, 1))
    # Killed before the verdict reached Kafka: the next owner has the complete row only.
    survivor = agg.restarted()
    survivor.tick(T0 + 1)  # long before the deadline
    [again] = survivor.verdicts
    assert again.complete and again.max_risk_level == "high"
    assert again.origin_message_id == agg.verdicts[0].origin_message_id
    survivor.settle(T0 + 2)
    assert survivor.rows == {} and survivor.ledger.finished == [str(ctx.origin_message_id)]


def test_a_row_outliving_its_settling_leaves_without_a_second_verdict():
    agg, ctx = Frames(), context(groups=1, assessed={})
    agg.context(ctx)
    survivor = agg.restarted()
    # Killed mid-settle: the ledger entry reached Kafka, the row's deletion did not.
    survivor.ledger.finished.append(str(ctx.origin_message_id))
    survivor.tick(T0 + 1)
    assert survivor.rows == {} and survivor.verdicts == []
    survivor.context(ctx)
    assert survivor.ignored == ["frame_finished"] and survivor.rows == {}


def test_settling_a_frame_twice_changes_nothing_the_second_time():
    agg, ctx = Frames(), context(groups=1, assessed={})
    agg.context(ctx)
    agg.settle()
    assert apply_settled(None, agg.ledger, CONFIG).ignored == "already_settled"
    assert agg.ledger.finished == [str(ctx.origin_message_id)]
