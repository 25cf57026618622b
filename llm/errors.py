"""What went wrong with a model call, and what to do about it.

Every failure becomes an :class:`LLMError` with one :class:`ErrorClass`; the class
decides whether the task retries, how long it waits, and what the key pool does with
the key (cool it, cool its account, disable it). Retry-After from the provider wins
over our own backoff.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from enum import Enum
from typing import Optional


class ErrorClass(str, Enum):
    rate_limited = "rate_limited"            # 429 for this key
    account_throttled = "account_throttled"  # 429 for the whole account (quota, burst)
    server_error = "server_error"            # 5xx, connection reset
    timeout = "timeout"
    auth = "auth"                            # 401/403: the key is bad
    bad_request = "bad_request"              # 4xx we caused; retrying will not help
    content_filtered = "content_filtered"    # provider's inspection or a refusal
    unparseable = "unparseable"              # the answer is not a usable assessment
    deadline_exceeded = "deadline_exceeded"  # the task ran out of time


class LLMError(Exception):
    """A classified failure. The message never contains a key (see ``redact``)."""

    def __init__(self, error_class: ErrorClass, message: str, *, status: Optional[int] = None,
                 retry_after: Optional[float] = None) -> None:
        super().__init__(f"{error_class.value}: {message}")
        self.error_class = error_class
        self.status = status
        self.retry_after = retry_after


class NoUsableKey(Exception):
    """Every key of the pool is disabled; waiting will not help."""


@dataclass(frozen=True)
class RetryRule:
    max_attempts: int
    # The task itself sleeps the backoff before retrying; for throttling only the key
    # (or account) cools and the task retries at once on whatever key is ready.
    task_waits: bool = True


RULES: dict[ErrorClass, RetryRule] = {
    ErrorClass.rate_limited: RetryRule(max_attempts=8, task_waits=False),
    ErrorClass.account_throttled: RetryRule(max_attempts=8, task_waits=False),
    ErrorClass.server_error: RetryRule(max_attempts=5),
    ErrorClass.timeout: RetryRule(max_attempts=3),
    ErrorClass.auth: RetryRule(max_attempts=4, task_waits=False),
    ErrorClass.bad_request: RetryRule(max_attempts=1),
    ErrorClass.content_filtered: RetryRule(max_attempts=2),
    ErrorClass.unparseable: RetryRule(max_attempts=3),
    ErrorClass.deadline_exceeded: RetryRule(max_attempts=1),
}


def backoff(attempt: int, base: float, cap: float, retry_after: Optional[float] = None,
            rng: random.Random = random.Random()) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): Retry-After
    when the provider gave one, else capped exponential backoff with full jitter."""
    if retry_after is not None:
        return max(0.0, retry_after)
    return rng.uniform(0.5, 1.0) * min(cap, base * 2 ** (attempt - 1))


def should_retry(error: LLMError, attempts: int, max_attempts: int) -> bool:
    return attempts < min(max_attempts, RULES[error.error_class].max_attempts)


_ACCOUNT_MARKERS = ("allocationquota", "quota exceeded", "burstrate", "burst_rate", "increased too quickly", "account")
_FILTER_MARKERS = ("datainspectionfailed", "data_inspection_failed", "content_filter", "inappropriate content")


def _error_text(body: str) -> tuple[str, str]:
    """(code, message) from an OpenAI- or DashScope-shaped error body, else ("", body)."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return "", body[:500]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("code") or err.get("type") or ""), str(err.get("message") or "")[:500]
    return "", body[:500]


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs; our backoff applies


def classify_http(status: int, body: str, retry_after: Optional[float]) -> LLMError:
    """Turn a non-200 answer into a classified error."""
    code, message = _error_text(body)
    text = f"{code} {message}".lower()
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status == 429:
        cls = ErrorClass.account_throttled if any(m in text for m in _ACCOUNT_MARKERS) else ErrorClass.rate_limited
    elif status in (401, 403):
        cls = ErrorClass.auth
    elif status == 408:
        cls = ErrorClass.timeout
    elif status >= 500:
        cls = ErrorClass.server_error
    elif any(m in text for m in _FILTER_MARKERS):
        cls = ErrorClass.content_filtered
    else:
        cls = ErrorClass.bad_request
    return LLMError(cls, detail, status=status, retry_after=retry_after)


def redact(text: str, secret: str) -> str:
    """Remove a key from text the provider may echo (OpenAI does, partly masked)."""
    if not secret:
        return text
    text = text.replace(secret, "[redacted]")
    # Providers echo prefixes and suffixes of a wrong key ("sk-abc***xyz").
    for n in (12, 8):
        if len(secret) > 2 * n:
            text = text.replace(secret[:n], "[redacted]").replace(secret[-n:], "[redacted]")
    return text
