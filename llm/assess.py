"""One task, one outcome: ask the model through the key pool, retry by the error's
class, and hand back either a result message or the failure for the DLQ.

No Kafka here; the assessor agent sends what this returns. Without a pool (no key
configured) the local heuristic answers; with one, the heuristic answers only when
every key is disabled, labelled ``llm_metadata.model="heuristic"``.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Optional

from llm.client import ChatClient
from llm.errors import RULES, ErrorClass, LLMError, NoUsableKey, backoff, should_retry
from llm.keypool import KeyPool
from llm.parser import parse_assessment
from llm.prompt import build_messages, estimate_tokens
from risk import heuristic
from streamapp import metrics
from streamapp.models import AssessmentResult, AssessmentTaskMessage, LLMMetadata, RiskAssessmentResultMessage, TaskStatus
from streamapp.settings import LLMSettings

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    task: AssessmentTaskMessage
    result: Optional[RiskAssessmentResultMessage] = None
    error: Optional[LLMError] = None
    attempts: int = 0


@dataclass
class AssessorStats:
    """The seed scheduler's statistics."""

    tasks: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    heuristic: int = 0
    in_flight: int = 0
    latency_ms_total: float = 0.0
    failures: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        done = self.succeeded + self.failed
        return {
            "tasks": self.tasks, "succeeded": self.succeeded, "failed": self.failed, "retries": self.retries,
            "heuristic": self.heuristic, "in_flight": self.in_flight,
            "success_rate": round(self.succeeded / done, 4) if done else None,
            "avg_latency_ms": round(self.latency_ms_total / self.succeeded, 1) if self.succeeded else None,
            "failures_by_class": dict(self.failures),
        }


class Assessor:
    def __init__(self, settings: LLMSettings, pool: Optional[KeyPool], client: Optional[ChatClient],
                 rng: Optional[random.Random] = None) -> None:
        self.settings = settings
        self.pool = pool if pool is not None and pool.keys else None
        self.client = client
        self.rng = rng or random.Random()
        self.stats = AssessorStats()

    @property
    def mode(self) -> str:
        return "llm" if self.pool is not None else "heuristic"

    async def assess(self, task: AssessmentTaskMessage) -> Outcome:
        self.stats.tasks += 1
        self.stats.in_flight += 1
        try:
            outcome = await self._assess(task) if self.pool is not None else self._heuristic(task, 1)
        finally:
            self.stats.in_flight -= 1
        if outcome.result is not None:
            self.stats.succeeded += 1
            meta = outcome.result.llm_metadata
            self.stats.latency_ms_total += meta.latency_ms if meta else 0
            metrics.ASSESSMENTS.labels(assessor=meta.assessor if meta else "llm", status="success").inc()
        else:
            self.stats.failed += 1
            cls = outcome.error.error_class.value
            self.stats.failures[cls] = self.stats.failures.get(cls, 0) + 1
            metrics.ASSESSMENTS.labels(assessor="llm", status="failed").inc()
        return outcome

    def _heuristic(self, task: AssessmentTaskMessage, attempts: int) -> Outcome:
        self.stats.heuristic += 1
        return Outcome(task, _result(task, heuristic.assess(task), heuristic.metadata(attempts)), attempts=attempts)

    async def _assess(self, task: AssessmentTaskMessage) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.task_deadline_s
        messages = build_messages(task)
        estimate = estimate_tokens(task, self.settings.max_tokens)
        known_ids = [o.object_id for o in task.objects]
        attempts = 0
        while True:
            attempts += 1
            try:
                lease = await asyncio.wait_for(self.pool.acquire(task.priority, estimate), deadline - loop.time())
            except NoUsableKey:
                if self.settings.heuristic_fallback:
                    return self._heuristic(task, attempts)
                return Outcome(task, error=LLMError(ErrorClass.auth, "every key of the pool is disabled"),
                               attempts=attempts)
            except asyncio.TimeoutError:
                return Outcome(task, error=LLMError(
                    ErrorClass.deadline_exceeded, f"no key free within {self.settings.task_deadline_s:g}s"), attempts=attempts)
            name, started = lease.key_name, time.monotonic()
            try:
                completion = await self.client.complete(lease.key.secret(), messages)
                assessment = parse_assessment(completion.text, known_ids)
            except LLMError as error:
                self.pool.release(lease, error)
                self._count(name, error.error_class.value, time.monotonic() - started)
                if error.error_class in (ErrorClass.rate_limited, ErrorClass.account_throttled):
                    metrics.LLM_RATE_LIMITED.labels(key=name).inc()
                if not should_retry(error, attempts, self.settings.max_attempts):
                    log.warning("task %s failed after %d attempt(s): %s", task.task_id, attempts, error)
                    return Outcome(task, error=error, attempts=attempts)
                self.stats.retries += 1
                if RULES[error.error_class].task_waits:
                    delay = backoff(attempts, self.settings.backoff_base_s, self.settings.backoff_cap_s,
                                    error.retry_after, self.rng)
                    if loop.time() + delay >= deadline:
                        return Outcome(task, error=error, attempts=attempts)
                    await asyncio.sleep(delay)
                continue
            except BaseException:
                self.pool.release(lease, None)  # cancelled mid-call: the key did nothing wrong
                raise
            self.pool.release(lease, None, prompt_tokens=completion.prompt_tokens,
                              completion_tokens=completion.completion_tokens)
            self._count(name, "ok", completion.latency_ms / 1000)
            meta = LLMMetadata(
                model=self.settings.model, assessor="llm", key_name=name, latency_ms=completion.latency_ms,
                attempts=attempts, prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
            )
            return Outcome(task, _result(task, assessment, meta), attempts=attempts)

    @staticmethod
    def _count(key_name: str, outcome: str, seconds: float) -> None:
        metrics.LLM_CALLS.labels(key=key_name, outcome=outcome).inc()
        metrics.LLM_LATENCY.labels(key=key_name).observe(seconds)


def _result(task: AssessmentTaskMessage, assessment: AssessmentResult, meta: LLMMetadata) -> RiskAssessmentResultMessage:
    return RiskAssessmentResultMessage(
        task_id=task.task_id, origin_message_id=task.origin_message_id, camera_id=task.camera_id,
        group_index=task.group.group_index, frame_timestamp=task.frame_timestamp,
        status=TaskStatus.success, assessment=assessment, llm_metadata=meta,
    )
