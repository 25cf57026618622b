"""Fan-out: one assessment task per group worth assessing, plus the frame's context."""
from risk.selection import plan_fanout
from streamapp import metrics
from streamapp.app import app, settings, topics
from tables.cooldowns import fanout_cooldowns


@app.agent(topics.detection_results)
async def fanout(stream):
    async for message in stream:
        plan = plan_fanout(message, settings.fanout, fanout_cooldowns.get(message.camera_id))
        metrics.FRAMES_IN.inc()
        # The context goes first so the aggregator usually has it before the results.
        await topics.frame_context.send(key=message.camera_id, value=plan.context)
        for task in plan.tasks:
            await topics.assessment_tasks.send(key=f"{task.camera_id}:{message.frame_index}", value=task)
            metrics.TASKS_OUT.labels(priority=str(task.priority)).inc()
        for reason, count in plan.skipped.items():
            metrics.GROUPS_SKIPPED.labels(reason=reason).inc(count)
        if plan.cooldown_mark is not None:
            fanout_cooldowns[message.camera_id] = plan.cooldown_mark
        yield plan
