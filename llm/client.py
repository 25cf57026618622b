"""An OpenAI-compatible chat-completions client (DashScope compatible mode by default;
OpenAI, vLLM, Ollama and llama.cpp work by changing base URL and model).

One call, one classified outcome: a :class:`Completion`, or an :class:`LLMError` whose
message has the key redacted. Retrying is the caller's business.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Optional

import aiohttp

from llm.errors import ErrorClass, LLMError, classify_http, parse_retry_after, redact
from streamapp.settings import LLMSettings


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: Optional[str] = None


class ChatClient:
    def __init__(self, settings: LLMSettings, user_agent: str = "trafficrisk") -> None:
        self.settings = settings
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self.user_agent = user_agent
        self._session: Optional[aiohttp.ClientSession] = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_s,
                                              sock_connect=self.settings.connect_timeout_s),
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                headers={"User-Agent": self.user_agent},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def complete(self, api_key: str, messages: list[dict], *, model: Optional[str] = None,
                       max_tokens: Optional[int] = None) -> Completion:
        body = {
            "model": model or self.settings.model,
            "messages": messages,
            "max_tokens": max_tokens or self.settings.max_tokens,
            "temperature": self.settings.temperature,
        }
        started = time.monotonic()
        try:
            async with self._get_session().post(
                self.url, json=body, headers={"Authorization": f"Bearer {api_key}"},
            ) as response:
                raw = await response.text(errors="replace")
                if response.status != 200:
                    raise classify_http(response.status, redact(raw, api_key),
                                        parse_retry_after(response.headers.get("Retry-After")))
        except asyncio.TimeoutError:
            raise LLMError(ErrorClass.timeout, f"no answer within {self.settings.request_timeout_s:g}s") from None
        except aiohttp.ClientError as exc:
            raise LLMError(ErrorClass.server_error, redact(f"{type(exc).__name__}: {exc}", api_key)) from None
        latency_ms = (time.monotonic() - started) * 1000
        return _completion(raw, latency_ms)


def _completion(raw: str, latency_ms: float) -> Completion:
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        text = choice["message"].get("content")
        usage = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise LLMError(ErrorClass.unparseable, f"malformed response body ({len(raw)} bytes): {raw[:120]!r}") from None
    finish = choice.get("finish_reason")
    if finish == "content_filter":
        raise LLMError(ErrorClass.content_filtered, "the provider filtered the answer")
    if isinstance(text, list):  # some servers answer with content parts
        text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
    return Completion(
        text=text or "", finish_reason=finish, latency_ms=latency_ms,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )
