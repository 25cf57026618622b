"""The fan-out agent's own loop, without a broker (Faust's test_context)."""
from __future__ import annotations

from unittest.mock import AsyncMock, patch

from agents.fanout import fanout
from streamapp.app import topics
from tables.cooldowns import fanout_cooldowns
from tests.factories import later, three_group_frame


async def test_agent_sends_context_and_tasks_then_marks_the_camera_cooldown():
    with patch.object(topics.frame_context, "send", AsyncMock()) as contexts, \
            patch.object(topics.assessment_tasks, "send", AsyncMock()) as tasks, \
            patch.object(fanout_cooldowns, "on_key_set"):
        async with fanout.test_context() as agent:
            await agent.put(three_group_frame("cam-9", at=later(0), frame_index=5))
            assert tasks.await_count == 2
            assert {c.kwargs["key"] for c in tasks.await_args_list} == {"cam-9:5"}
            assert contexts.await_args.kwargs["key"] == "cam-9"
            assert fanout_cooldowns["cam-9"] == later(0).timestamp()

            await agent.put(three_group_frame("cam-9", at=later(1), frame_index=6))
            assert tasks.await_count == 2, "inside the cooldown no new tasks"
            assert contexts.await_count == 2, "but every frame still gets its context"
