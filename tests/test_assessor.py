"""The assessor's decision per task (pool + client + parser + retry rules) against the
fake provider; the Kafka-level behaviour is in test_assessor_kafka.py."""
import random

from llm.assess import Assessor
from llm.client import ChatClient
from llm.errors import ErrorClass
from streamapp.models import TaskStatus
from streamapp.settings import LLMSettings
from tests.llm_support import fake_provider, key, make_pool, make_task


def assessor_for(provider, keys, **settings) -> Assessor:
    config = LLMSettings(base_url=provider.base_url, backoff_base_s=0.01, backoff_cap_s=0.05,
                         request_timeout_s=2, **settings)
    return Assessor(config, make_pool(keys, default_cooldown=0.2), ChatClient(config), rng=random.Random(3))


async def close(assessor: Assessor) -> None:
    await assessor.pool.close()
    await assessor.client.close()


async def test_answer_becomes_a_result_keyed_to_the_task_with_call_metadata():
    keys = [key("k1")]
    async with fake_provider(keys) as provider:
        assessor = assessor_for(provider, keys)
        task = make_task(pedestrian_gap=0.3)
        outcome = await assessor.assess(task)
        await close(assessor)
    result = outcome.result
    assert result.task_id == task.task_id and result.camera_id == task.camera_id
    assert result.status == TaskStatus.success and result.assessment.risk_level == "high"
    meta = result.llm_metadata
    assert (meta.model, meta.assessor, meta.key_name, meta.attempts) == ("qwen-vl-plus", "llm", "k1", 1)
    assert meta.prompt_tokens > 0 and meta.latency_ms > 0


async def test_server_errors_are_retried_on_another_key_then_succeed():
    keys = [key("k1"), key("k2")]
    async with fake_provider(keys) as provider:
        provider.one_shot.append({"kind": "server_error", "count": 2})
        assessor = assessor_for(provider, keys)
        outcome = await assessor.assess(make_task())
        await close(assessor)
    assert outcome.result is not None and outcome.result.llm_metadata.attempts == 3
    assert assessor.stats.retries == 2


async def test_a_429_is_retried_at_once_on_a_key_that_is_not_cooling():
    keys = [key("k1"), key("k2")]
    async with fake_provider(keys) as provider:
        provider.one_shot.append({"kind": "429", "key": "k1", "retry_after": 30, "count": 1})
        assessor = assessor_for(provider, keys)
        outcome = await assessor.assess(make_task())
        cooling = assessor.pool.health_check()["states"]["COOLING"]
        await close(assessor)
    assert outcome.result.llm_metadata.key_name == "k2" and cooling == 1


async def test_unreadable_answers_go_to_the_dlq_after_their_retries_never_as_none():
    keys = [key("k1")]
    async with fake_provider(keys, faults={"malformed": 1.0}) as provider:
        assessor = assessor_for(provider, keys)
        outcome = await assessor.assess(make_task())
        await close(assessor)
    assert outcome.result is None
    assert outcome.error.error_class == ErrorClass.unparseable and outcome.attempts == 3


async def test_bad_requests_are_not_retried():
    keys = [key("k1")]
    async with fake_provider(keys, faults={"bad_request": 1.0}) as provider:
        assessor = assessor_for(provider, keys)
        outcome = await assessor.assess(make_task())
        await close(assessor)
    assert outcome.error.error_class == ErrorClass.bad_request and outcome.attempts == 1


async def test_when_every_key_is_rejected_the_heuristic_answers_labelled():
    keys = [key("k1"), key("k2")]
    async with fake_provider([]) as provider:  # the provider knows neither key: 401
        assessor = assessor_for(provider, keys)
        outcome = await assessor.assess(make_task(pedestrian_gap=0.3))
        health = assessor.pool.health_check()
        await close(assessor)
    assert health["states"]["DISABLED"] == 2
    meta = outcome.result.llm_metadata
    assert (meta.model, meta.assessor) == ("heuristic", "heuristic") and meta.attempts == 3


async def test_without_fallback_a_dead_pool_sends_tasks_to_the_dlq():
    keys = [key("k1")]
    async with fake_provider([]) as provider:
        assessor = assessor_for(provider, keys, heuristic_fallback=False)
        outcome = await assessor.assess(make_task())
        await close(assessor)
    assert outcome.result is None and outcome.error.error_class == ErrorClass.auth


async def test_a_task_that_cannot_get_a_key_before_its_deadline_is_dead_lettered():
    keys = [key("k1")]
    async with fake_provider(keys) as provider:
        provider.one_shot.append({"kind": "429", "retry_after": 60, "count": 1})
        assessor = assessor_for(provider, keys, task_deadline_s=0.5)
        outcome = await assessor.assess(make_task())
        await close(assessor)
    assert outcome.error.error_class == ErrorClass.deadline_exceeded


async def test_no_key_configured_means_every_task_is_assessed_by_the_heuristic():
    assessor = Assessor(LLMSettings(), None, None)
    outcome = await assessor.assess(make_task(pedestrian_gap=0.3))
    assert assessor.mode == "heuristic"
    assert outcome.result.llm_metadata.model == "heuristic" and outcome.result.assessment.risk_level == "high"
