"""The chat-completions client against the fake provider: every failure is classified,
Retry-After is read, keys never leak into errors; and the retry rules."""
import random

import pytest
from aiohttp import web

from llm.client import ChatClient
from llm.errors import ErrorClass, LLMError, backoff, classify_http, should_retry
from llm.prompt import build_messages
from streamapp.settings import LLMSettings
from tests.llm_support import fake_provider, key, make_task

KEY = key("k1", "acct", rps=100)


async def call(provider, api_key=KEY["api_key"], timeout=5.0):
    client = ChatClient(LLMSettings(base_url=provider.base_url, request_timeout_s=timeout))
    try:
        return await client.complete(api_key, build_messages(make_task()))
    finally:
        await client.close()


async def test_client_sends_crop_and_context_and_reads_the_answer_and_usage():
    async with fake_provider([KEY]) as provider:
        completion = await call(provider)
    assert "risk_level" in completion.text
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    messages = build_messages(make_task())
    assert messages[1]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert '"class":"person"' in messages[1]["content"][1]["text"]


@pytest.mark.parametrize("fault,error_class", [
    ({"kind": "429", "retry_after": 7}, ErrorClass.rate_limited),
    ({"kind": "server_error"}, ErrorClass.server_error),
    ({"kind": "malformed"}, ErrorClass.unparseable),
    ({"kind": "truncated"}, ErrorClass.unparseable),
    ({"kind": "bad_request"}, ErrorClass.bad_request),
    ({"kind": "unauthorized"}, ErrorClass.auth),
])
async def test_client_classifies_each_provider_fault(fault, error_class):
    async with fake_provider([KEY]) as provider:
        provider.one_shot.append({**fault, "count": 1})
        with pytest.raises(LLMError) as info:
            await call(provider)
    assert info.value.error_class == error_class
    if fault["kind"] == "429":
        assert info.value.retry_after == 7


async def test_client_times_out_a_hanging_call():
    async with fake_provider([KEY], hang_s=3) as provider:
        provider.one_shot.append({"kind": "timeout", "count": 1})
        with pytest.raises(LLMError) as info:
            await call(provider, timeout=0.5)
    assert info.value.error_class == ErrorClass.timeout


async def test_account_quota_and_bursts_are_account_wide_throttles():
    account = {"acct": {"rps": 2}}
    async with fake_provider([KEY], account) as provider:
        await call(provider)
        await call(provider)
        with pytest.raises(LLMError) as info:
            await call(provider)  # a third within the account's second
    assert info.value.error_class == ErrorClass.account_throttled
    assert info.value.retry_after is not None


async def test_unknown_key_is_an_auth_error_that_never_echoes_the_key():
    secret = "sk-wrong-0123456789abcdefghijkl"

    async def echo(request):  # like OpenAI: the wrong key, partly masked, in the message
        return web.json_response({"error": {"message": f"Incorrect API key provided: {secret[:12]}***{secret[-8:]} "
                                             f"(full {secret})", "code": "invalid_api_key"}}, status=401)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    client = ChatClient(LLMSettings(base_url=f"http://127.0.0.1:{port}/v1"))
    try:
        with pytest.raises(LLMError) as info:
            await client.complete(secret, [{"role": "user", "content": "hi"}])
    finally:
        await client.close()
        await runner.cleanup()
    assert info.value.error_class == ErrorClass.auth
    text = str(info.value)
    assert secret not in text and secret[:12] not in text and secret[-8:] not in text


async def test_connection_refused_is_a_server_error():
    client = ChatClient(LLMSettings(base_url="http://127.0.0.1:9/v1", connect_timeout_s=1))
    try:
        with pytest.raises(LLMError) as info:
            await client.complete("sk-x", [{"role": "user", "content": "hi"}])
    finally:
        await client.close()
    assert info.value.error_class == ErrorClass.server_error


@pytest.mark.parametrize("status,body,error_class", [
    (429, '{"error": {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded"}}', ErrorClass.rate_limited),
    (429, '{"error": {"code": "Throttling.AllocationQuota", "message": "Allocated quota exceeded"}}', ErrorClass.account_throttled),
    (429, '{"error": {"code": "limit_burst_rate", "message": "Request rate increased too quickly."}}', ErrorClass.account_throttled),
    (429, "Too Many Requests", ErrorClass.rate_limited),
    (400, '{"error": {"code": "data_inspection_failed", "message": "Input data may contain inappropriate content."}}', ErrorClass.content_filtered),
    (400, '{"error": {"code": "InvalidParameter", "message": "bad image"}}', ErrorClass.bad_request),
    (403, '{"error": {"code": "AccessDenied"}}', ErrorClass.auth),
    (502, "<html>Bad Gateway</html>", ErrorClass.server_error),
    (408, "", ErrorClass.timeout),
])
def test_http_answers_are_classified(status, body, error_class):
    assert classify_http(status, body, None).error_class == error_class


def test_backoff_is_capped_exponential_with_jitter_and_retry_after_wins():
    rng = random.Random(1)
    delays = [backoff(n, 0.5, 4.0, None, rng) for n in range(1, 8)]
    assert all(0.25 * 2 ** (n - 1) <= d <= min(4.0, 0.5 * 2 ** (n - 1)) for n, d in zip(range(1, 4), delays))
    assert max(delays) <= 4.0 and len(set(delays)) == len(delays)
    assert backoff(5, 0.5, 4.0, 12.0, rng) == 12.0


def test_retry_rules_stop_bad_requests_at_once_and_allow_retries_for_transient_classes():
    assert not should_retry(LLMError(ErrorClass.bad_request, "x"), 1, 5)
    assert should_retry(LLMError(ErrorClass.server_error, "x"), 1, 5)
    assert not should_retry(LLMError(ErrorClass.server_error, "x"), 5, 5)
    assert should_retry(LLMError(ErrorClass.unparseable, "x"), 2, 5)
    assert not should_retry(LLMError(ErrorClass.unparseable, "x"), 3, 5)
