"""The key pool on its own: pacing, cooldowns, disabling, strategies, backpressure,
shared-state merging, health check; and against the fake provider, no 429 at full pace."""
import asyncio
import logging
import random
from pathlib import Path

import pytest

from llm.errors import ErrorClass, LLMError, NoUsableKey
from llm.keyconfig import load_key_config
from llm.keypool import OPERATOR, KeyRecord, KeyState
from llm.pacing import Limit, Pacer
from streamapp.settings import ConfigError
from tests.llm_support import fake_provider, key, make_pool


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def throttled(retry_after=None, account=False) -> LLMError:
    cls = ErrorClass.account_throttled if account else ErrorClass.rate_limited
    return LLMError(cls, "HTTP 429", status=429, retry_after=retry_after)


@pytest.mark.parametrize("count,window", [(10, 1.0), (50, 1.0), (2400, 60.0)])
def test_pacer_never_puts_more_than_the_limit_into_any_window_despite_jitter(count, window):
    pacer = Pacer(Limit(count, window), safety=0.995, jitter_s=0.025)
    rng = random.Random(count)
    now, arrivals = 0.0, []
    for _ in range(int(count * 3)):
        now = pacer.ready_at(now)
        pacer.take(now)
        arrivals.append(now + rng.uniform(0, 0.02))  # the way to the provider varies
        now += rng.uniform(0, 0.002)  # and the dispatcher wakes a little late
    arrivals.sort()
    j = 0
    for i, t in enumerate(arrivals):
        while arrivals[j] <= t - window:
            j += 1
        assert i - j + 1 <= count
    assert len(arrivals) / arrivals[-1] > count / window * 0.97  # and it still uses the quota


def test_round_robin_rotates_and_priority_prefers_lower_numbers():
    clock = Clock()
    pool = make_pool([key("a"), key("b"), key("c")], clock=clock)
    assert [pool._choose(clock())[0].name for _ in range(4)] == ["a", "b", "c", "a"]
    pool = make_pool([key("a", priority=2), key("b", priority=1), key("c", priority=2)], clock=clock,
                     strategy="priority")
    assert {pool._choose(clock())[0].name for _ in range(3)} == {"b"}


async def test_least_loaded_picks_the_key_with_fewest_calls_in_flight():
    clock = Clock()
    pool = make_pool([key("a"), key("b")], clock=clock, strategy="least_loaded")
    first = await pool.acquire()
    second = await pool.acquire()
    assert {first.key_name, second.key_name} == {"a", "b"}
    pool.release(first, None)
    third = await pool.acquire()
    assert third.key_name == first.key_name
    await pool.close()


async def test_key_cools_on_429_and_honours_retry_after():
    clock = Clock()
    pool = make_pool([key("a"), key("b")], clock=clock, default_cooldown=7)
    lease = await pool.acquire()
    pool.release(lease, throttled(retry_after=30))
    cooled = pool.by_name[lease.key_name]
    assert cooled.state(clock()) == KeyState.COOLING
    assert cooled.record.cooling_until == pytest.approx(clock() + 30)
    for _ in range(3):
        other = await pool.acquire()
        assert other.key_name != lease.key_name
        pool.release(other, None)
    clock.now += 31
    assert cooled.state(clock()) == KeyState.AVAILABLE
    other = await pool.acquire()
    pool.release(other, throttled())  # no Retry-After: the configured default
    assert pool.by_name[other.key_name].record.cooling_until == pytest.approx(clock() + 7)
    await pool.close()


async def test_account_throttle_cools_every_key_of_the_account_only():
    clock = Clock()
    pool = make_pool([key("a1", "acct-a"), key("a2", "acct-a"), key("b1", "acct-b")],
                     accounts={"acct-a": {"rps": 50}, "acct-b": {"rps": 50}}, clock=clock)
    lease = await pool.acquire()
    assert lease.key_name == "a1"
    pool.release(lease, throttled(retry_after=5, account=True))
    states = {k.name: k.state(clock()) for k in pool.keys}
    assert states == {"a1": KeyState.COOLING, "a2": KeyState.COOLING, "b1": KeyState.AVAILABLE}
    await pool.close()


async def test_auth_failure_disables_the_key_with_a_log_line_naming_it_only(caplog):
    pool = make_pool([key("good"), key("bad")])
    caplog.set_level(logging.INFO)
    lease = await pool.acquire()
    while lease.key_name != "bad":
        pool.release(lease, None)
        lease = await pool.acquire()
    secret = lease.key.secret()
    pool.release(lease, LLMError(ErrorClass.auth, "HTTP 401", status=401))
    assert pool.by_name["bad"].state(pool.clock()) == KeyState.DISABLED
    assert "key bad DISABLED" in caplog.text and secret not in caplog.text
    for _ in range(3):
        other = await pool.acquire()
        assert other.key_name == "good"
        pool.release(other, None)
    await pool.close()


async def test_callers_wait_while_every_key_cools_then_proceed():
    pool = make_pool([key("a")])
    lease = await pool.acquire()
    pool.release(lease, throttled(retry_after=0.3))
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0.15)
    assert not waiter.done()  # backpressure, not failure
    assert pool.health_check()["status"] == "DEGRADED"
    lease = await asyncio.wait_for(waiter, 2)
    assert lease.key_name == "a"
    await pool.close()


async def test_acquire_fails_only_when_every_key_is_disabled():
    pool = make_pool([key("a", rps=1)])
    waiter = asyncio.ensure_future(pool.acquire())
    lease = await waiter
    queued = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0.05)
    pool.release(lease, LLMError(ErrorClass.auth, "HTTP 403", status=403))
    with pytest.raises(NoUsableKey):
        await asyncio.wait_for(queued, 2)
    with pytest.raises(NoUsableKey):
        await pool.acquire()
    await pool.close()


async def test_repeated_server_errors_cool_the_key_after_max_retry_per_key():
    clock = Clock()
    pool = make_pool([key("a", priority=1), key("b", priority=2)], clock=clock, max_retry_per_key=2,
                     default_cooldown=4, strategy="priority")
    for _ in range(2):
        lease = await pool.acquire()
        assert lease.key_name == "a"
        pool.release(lease, LLMError(ErrorClass.server_error, "HTTP 500", status=500))
    assert pool.by_name["a"].state(clock()) == KeyState.COOLING
    assert pool.by_name["b"].state(clock()) == KeyState.AVAILABLE
    await pool.close()


async def test_urgent_tasks_get_the_next_key_first():
    pool = make_pool([key("a", rps=5)])
    first = await pool.acquire()
    order = []

    async def take(priority, label):
        lease = await pool.acquire(priority=priority)
        order.append(label)
        pool.release(lease, None)

    waiting = [asyncio.ensure_future(take(3, "routine")), asyncio.ensure_future(take(1, "urgent"))]
    await asyncio.sleep(0)
    pool.release(first, None)
    await asyncio.wait_for(asyncio.gather(*waiting), 3)
    assert order == ["urgent", "routine"]
    await pool.close()


def test_remote_records_merge_later_cooldown_and_sticky_disable_until_operator_enables():
    clock = Clock()
    pool = make_pool([key("a"), key("b")], clock=clock)
    pool.apply_record(KeyRecord(key_name="a", cooling_until=clock() + 10, cool_reason="peer 429", updated_by="w2",
                                updated_at=clock()))
    pool.apply_record(KeyRecord(key_name="a", cooling_until=clock() + 3, updated_by="w3", updated_at=clock() + 1))
    assert pool.by_name["a"].record.cooling_until == clock() + 10
    pool.apply_record(KeyRecord(key_name="b", disabled=True, disabled_reason="HTTP 401", updated_by="w2", updated_at=clock()))
    pool.apply_record(KeyRecord(key_name="b", disabled=False, updated_by="w3", updated_at=clock() + 5))
    assert pool.by_name["b"].state(clock()) == KeyState.DISABLED
    pool.apply_record(KeyRecord(key_name="b", disabled=False, updated_by=OPERATOR, updated_at=clock() + 6))
    assert pool.by_name["b"].state(clock()) == KeyState.AVAILABLE


async def test_local_changes_are_published_to_listeners_without_secrets():
    pool = make_pool([key("a")])
    published = []
    pool.on_change(published.append)
    lease = await pool.acquire()
    pool.release(lease, throttled(retry_after=2))
    assert [r.key_name for r in published] == ["a"]
    assert lease.key.secret() not in published[0].model_dump_json()
    await pool.close()


def test_share_divides_each_limit_among_live_workers():
    pool = make_pool([key("a", "acct", rps=10)], accounts={"acct": {"rps": 50, "rpm": 2400}})
    pool.set_share(0.5)
    assert pool.by_name["a"].requests[0].rate == pytest.approx(10 / 1.025 * 0.995 / 2)
    assert [p.rate for p in pool.accounts["acct"].requests] == pytest.approx(
        [50 / 1.025 * 0.995 / 2, 2400 / 60.025 * 0.995 / 2])


def test_health_check_reports_states_capacity_and_groups_by_name_only():
    clock = Clock()
    keys = [key(f"k{i}", "acct-a" if i < 5 else "acct-b", rps=10) for i in range(10)]
    pool = make_pool(keys, accounts={"acct-a": {"rps": 50, "rpm": 2400}, "acct-b": {"rps": 50, "rpm": 2400}}, clock=clock)
    pool.by_name["k0"].record = KeyRecord(key_name="k0", cooling_until=clock() + 5)
    health = pool.health_check()
    assert health["capacity_rps"] == 80.0
    assert health["states"] == {"AVAILABLE": 9, "IN_USE": 0, "COOLING": 1, "DISABLED": 0}
    assert health["strategy"] == "round_robin" and set(health["accounts"]) == {"acct-a", "acct-b"}
    text = repr(health) + repr(pool.keys) + repr(pool.config)
    assert all(k["api_key"] not in text for k in keys)


def test_keys_file_reads_the_seed_format_with_env_and_skips_unset_keys(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TR_TEST_KEY_1", "sk-from-env-1")
    monkeypatch.delenv("TR_TEST_KEY_2", raising=False)
    path = tmp_path / "api_keys.yaml"
    path.write_text(
        "strategy: least_loaded\nmax_retry_per_key: 2\ndefault_cooldown: 9\n"
        "accounts: {main: {rps: 50, rpm: 2400, tpm: 100000}}\n"
        "keys:\n"
        "  - {api_key: '${TR_TEST_KEY_1}', name: key-1, account: main, qps_limit: 5, rpm_limit: 100, priority: 1}\n"
        "  - {api_key: '${TR_TEST_KEY_2:-}', name: key-2, account: main, qps_limit: 5}\n")
    config = load_key_config(path)
    assert config.strategy == "least_loaded" and config.default_cooldown == 9
    assert [k.name for k in config.keys] == ["key-1"]
    assert config.keys[0].api_key.get_secret_value() == "sk-from-env-1"
    assert "sk-from-env-1" not in repr(config)
    path.write_text("keys:\n  - {api_key: sk-x, name: k, account: nowhere}\n")
    with pytest.raises(ConfigError, match="nowhere"):
        load_key_config(path)
    assert load_key_config(tmp_path / "missing.yaml").keys == []


async def test_pool_paces_ten_keys_in_two_accounts_without_a_single_429():
    keys = [key(f"k{i}", "acct-a" if i < 2 else "acct-b", rps=10) for i in range(4)]
    accounts = {"acct-a": {"rps": 12, "rpm": 600}, "acct-b": {"rps": 15}}
    async with fake_provider([{**k} for k in keys], accounts, latency_ms=30) as provider:
        from llm.client import ChatClient
        from streamapp.settings import LLMSettings

        pool = make_pool(keys, accounts=accounts)
        client = ChatClient(LLMSettings(base_url=provider.base_url))

        async def one():
            lease = await pool.acquire()
            try:
                await client.complete(lease.key.secret(), [{"role": "user", "content": "hi"}])
                pool.release(lease, None)
            except LLMError as exc:
                pool.release(lease, exc)

        await asyncio.gather(*(one() for _ in range(60)))
        await client.close()
        await pool.close()
        assert provider.counters.requests == 60
        assert provider.counters.rate_limited == 0
