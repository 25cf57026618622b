"""The quota-aware key pool.

Keys belong to accounts (quota groups). A call needs a key whose own limits and whose
account's limits all conform now (see :mod:`llm.pacing`); callers queue by task
priority and a single dispatcher hands out leases in order, so the pool paces calls
exactly instead of letting them race. 429s cool the key, or every key of the account
when the provider says the account is throttled, for Retry-After seconds; 401/403
disable the key; repeated server errors cool it. When nothing is usable callers wait
(backpressure); only when every key is disabled does ``acquire`` fail.

State shared with other workers travels as :class:`KeyRecord` (names, never
secrets): ``on_change`` listeners publish local changes and ``apply_record`` merges
remote ones (cooldowns take the later end; disabling is sticky until re-enabled).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Optional

from pydantic import BaseModel

from llm.errors import ErrorClass, LLMError, NoUsableKey
from llm.keyconfig import KeyPoolConfig, KeySpec
from llm.pacing import Limit, Pacer

log = logging.getLogger(__name__)


# Records written by `trafficrisk keys enable|disable` carry this as updated_by.
OPERATOR = "operator"


class KeyState(str, Enum):
    AVAILABLE = "AVAILABLE"
    IN_USE = "IN_USE"
    COOLING = "COOLING"
    DISABLED = "DISABLED"


class KeyRecord(BaseModel):
    """A key's shared state: what every worker must agree on."""

    key_name: str
    account: Optional[str] = None
    cooling_until: float = 0.0  # epoch seconds
    cool_reason: str = ""
    disabled: bool = False
    disabled_reason: str = ""
    updated_by: str = ""
    updated_at: float = 0.0


@dataclass
class Usage:
    calls: int = 0
    ok: int = 0
    failed: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms_total: float = 0.0

    def add(self, ok: bool, rate_limited: bool, tokens: tuple[int, int], latency_ms: float) -> None:
        self.calls += 1
        self.ok += ok
        self.failed += not ok
        self.rate_limited += rate_limited
        self.prompt_tokens += tokens[0]
        self.completion_tokens += tokens[1]
        self.latency_ms_total += latency_ms

    def as_dict(self) -> dict:
        return {
            "calls": self.calls, "ok": self.ok, "failed": self.failed, "rate_limited": self.rate_limited,
            "success_rate": round(self.ok / self.calls, 4) if self.calls else None,
            "avg_latency_ms": round(self.latency_ms_total / self.calls, 1) if self.calls else None,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
        }


def _pacers(rps: Optional[float], rpm: Optional[float], tpm: Optional[float], pacing: dict) -> tuple[list[Pacer], Optional[Pacer]]:
    """Request pacers (per second, per minute) and the token pacer of one quota scope."""
    requests = [Pacer(Limit(count, window), **pacing) for count, window in ((rps, 1.0), (rpm, 60.0)) if count]
    return requests, Pacer(Limit(tpm, 60.0), **pacing) if tpm else None


class Account:
    def __init__(self, name: str, rps: Optional[float], rpm: Optional[float], tpm: Optional[float],
                 pacing: dict) -> None:
        self.name = name
        self.requests, self.tokens = _pacers(rps, rpm, tpm, pacing)
        self.usage = Usage()
        self.recent: deque = deque()  # (time, tokens) of calls in the last minute

    def pacers(self) -> list[Pacer]:
        return self.requests + ([self.tokens] if self.tokens else [])

    def ceiling(self) -> Optional[float]:
        """Requests per second this account can sustain, or None when unlimited."""
        rates = [p.limit.count / p.limit.window_s for p in self.requests]
        return min(rates) if rates else None


class PoolKey:
    def __init__(self, spec: KeySpec, index: int, account: Account, pacing: dict) -> None:
        self.spec = spec
        self.name = spec.name
        self.index = index
        self.account = account
        self.requests, self.tokens = _pacers(spec.qps_limit, spec.rpm_limit, spec.tpm_limit, pacing)
        self.in_flight = 0
        self.last_pick = -1
        self.consecutive_failures = 0
        self.record = KeyRecord(key_name=spec.name, account=spec.account)
        self.usage = Usage()
        self.last_error: Optional[str] = None

    def secret(self) -> str:
        return self.spec.api_key.get_secret_value()

    def pacers(self) -> list[Pacer]:
        return self.requests + ([self.tokens] if self.tokens else []) + self.account.pacers()

    def state(self, now: float) -> KeyState:
        if self.record.disabled:
            return KeyState.DISABLED
        if self.record.cooling_until > now:
            return KeyState.COOLING
        return KeyState.IN_USE if self.in_flight else KeyState.AVAILABLE

    def ready_at(self, now: float) -> float:
        return max([now, self.record.cooling_until] + [p.ready_at(now) for p in self.pacers()])

    def ceiling(self) -> Optional[float]:
        rates = [p.limit.count / p.limit.window_s for p in self.requests]
        return min(rates) if rates else None

    def __repr__(self) -> str:  # never the secret
        return f"PoolKey({self.name!r})"


@dataclass
class Lease:
    key: PoolKey
    tokens: int
    started: float
    released: bool = False

    @property
    def key_name(self) -> str:
        return self.key.name


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    tokens: int = field(compare=False)
    future: asyncio.Future = field(compare=False)


class KeyPool:
    def __init__(self, config: KeyPoolConfig, *, safety: float = 0.995, jitter_s: float = 0.025,
                 worker_id: str = "", clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.strategy = config.strategy
        self.worker_id = worker_id
        self.clock = clock
        self.share = 1.0
        pacing = {"safety": safety, "jitter_s": jitter_s}
        self.accounts: dict[str, Account] = {
            name: Account(name, a.rps, a.rpm, a.tpm, pacing) for name, a in config.accounts.items()
        }
        self.keys: list[PoolKey] = []
        for index, spec in enumerate(config.keys):
            # A key without an account is its own quota group.
            account = self.accounts[spec.account] if spec.account else Account(f"key:{spec.name}", None, None, None, pacing)
            self.keys.append(PoolKey(spec, index, account, pacing))
        self.by_name = {k.name: k for k in self.keys}
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._picks = itertools.count()
        self._changed: Optional[asyncio.Event] = None
        self._dispatcher: Optional[asyncio.Task] = None
        self._listeners: list[Callable[[KeyRecord], None]] = []

    # ---- acquiring -------------------------------------------------------------

    async def acquire(self, priority: int = 2, tokens: int = 0) -> Lease:
        """Wait for a key whose limits allow one more call now. Lower priority numbers
        go first. Raises NoUsableKey when every key is disabled."""
        if self.all_disabled():
            raise NoUsableKey(f"none of the {len(self.keys)} key(s) is enabled")
        self._start()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, _Waiter(priority, next(self._seq), tokens, future))
        self._changed.set()
        try:
            return await future
        except asyncio.CancelledError:
            # Handed a lease in the same instant we were cancelled: give it back.
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result(), None)
            raise

    def _start(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._changed = asyncio.Event()
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            while self._waiters and self._waiters[0].future.done():
                heapq.heappop(self._waiters)  # its caller gave up
            if not self._waiters:
                await self._changed.wait()
                continue
            now = self.clock()
            if self.all_disabled():
                for waiter in self._waiters:
                    if not waiter.future.done():
                        waiter.future.set_exception(NoUsableKey("every key is disabled"))
                self._waiters.clear()
                continue
            key, ready_at = self._choose(now)
            if key is not None:
                waiter = heapq.heappop(self._waiters)
                waiter.future.set_result(self._lease(key, waiter.tokens, now))
                continue
            handle = loop.call_later(max(0.0, ready_at - now), self._changed.set)
            await self._changed.wait()
            handle.cancel()

    def _choose(self, now: float) -> tuple[Optional[PoolKey], float]:
        """The key to use now by the strategy, or None and when to look again."""
        ready, earliest = [], float("inf")
        for key in self.keys:
            if key.record.disabled:
                continue
            at = key.ready_at(now)
            if at <= now:
                ready.append(key)
            earliest = min(earliest, at)
        if not ready:
            return None, earliest
        if self.strategy == "least_loaded":
            return min(ready, key=lambda k: (k.in_flight, k.usage.calls, k.index)), now
        if self.strategy == "priority":
            best = min(k.spec.priority for k in ready)
            ready = [k for k in ready if k.spec.priority == best]
        # Round robin as "the ready key used least recently": when an account's pace
        # frees a call, all its keys are ready and take turns, so they share its rate
        # evenly instead of one key running at its own limit while the others idle.
        key = min(ready, key=lambda k: (k.last_pick, k.index))
        key.last_pick = next(self._picks)
        return key, now

    def _lease(self, key: PoolKey, tokens: int, now: float) -> Lease:
        for pacer in key.requests + key.account.requests:
            pacer.take(now)
        for pacer in (key.tokens, key.account.tokens):
            if pacer is not None:
                pacer.take(now, tokens)
        key.in_flight += 1
        return Lease(key=key, tokens=tokens, started=now)

    # ---- releasing -------------------------------------------------------------

    def release(self, lease: Lease, error: Optional[LLMError], *, prompt_tokens: int = 0,
                completion_tokens: int = 0) -> None:
        """Record how a call went. ``error`` is None on success."""
        if lease.released:
            return
        lease.released = True
        key, now = lease.key, self.clock()
        key.in_flight -= 1
        used = prompt_tokens + completion_tokens
        if used and lease.tokens:
            for pacer in (key.tokens, key.account.tokens):
                if pacer is not None:
                    pacer.adjust(used - lease.tokens)
        throttled = error is not None and error.error_class in (ErrorClass.rate_limited, ErrorClass.account_throttled)
        latency_ms = (now - lease.started) * 1000
        for usage in (key.usage, key.account.usage):
            usage.add(error is None, throttled, (prompt_tokens, completion_tokens), latency_ms)
        key.account.recent.append((now, used or lease.tokens))
        while key.account.recent and key.account.recent[0][0] < now - 60:
            key.account.recent.popleft()
        if error is None:
            key.consecutive_failures = 0
        else:
            key.last_error = error.error_class.value
            self._on_error(key, error, now)
        if self._changed is not None:
            self._changed.set()

    def _on_error(self, key: PoolKey, error: LLMError, now: float) -> None:
        cls = error.error_class
        if cls in (ErrorClass.rate_limited, ErrorClass.account_throttled):
            delay = error.retry_after if error.retry_after is not None else self.config.default_cooldown
            keys = [k for k in self.keys if k.account is key.account] if cls == ErrorClass.account_throttled else [key]
            for k in keys:
                self._cool(k, now + delay, f"{cls.value} (HTTP 429)", now)
        elif cls == ErrorClass.auth:
            self._disable(key, f"HTTP {error.status}: provider rejected the key", now)
        elif cls in (ErrorClass.server_error, ErrorClass.timeout):
            key.consecutive_failures += 1
            if key.consecutive_failures >= self.config.max_retry_per_key:
                key.consecutive_failures = 0
                self._cool(key, now + self.config.default_cooldown,
                           f"{self.config.max_retry_per_key} consecutive {cls.value} errors", now)

    def _cool(self, key: PoolKey, until: float, reason: str, now: float) -> None:
        if until <= key.record.cooling_until:
            return
        log.info("key %s cooling for %.1fs: %s", key.name, until - now, reason)
        key.record = key.record.model_copy(update={
            "cooling_until": until, "cool_reason": reason, "updated_by": self.worker_id, "updated_at": now})
        self._publish(key)

    def _disable(self, key: PoolKey, reason: str, now: float) -> None:
        if key.record.disabled:
            return
        log.error("key %s DISABLED: %s; fix or replace it, then run `trafficrisk keys enable %s`",
                  key.name, reason, key.name)
        key.record = key.record.model_copy(update={
            "disabled": True, "disabled_reason": reason, "updated_by": self.worker_id, "updated_at": now})
        self._publish(key)

    def _publish(self, key: PoolKey) -> None:
        for listener in self._listeners:
            listener(key.record)

    # ---- sharing -----------------------------------------------------------------

    def on_change(self, listener: Callable[[KeyRecord], None]) -> None:
        self._listeners.append(listener)

    def apply_record(self, record: KeyRecord) -> None:
        """Merge another worker's view of a key. Cooldowns take the later end and a
        disable sticks; only an operator's record (``trafficrisk keys enable``) clears one."""
        key = self.by_name.get(record.key_name)
        if key is None:
            return
        current = key.record
        if record.updated_by == OPERATOR:
            if record.updated_at >= current.updated_at:
                key.record = record
        else:
            later = record.cooling_until > current.cooling_until
            key.record = current.model_copy(update={
                "cooling_until": record.cooling_until if later else current.cooling_until,
                "cool_reason": record.cool_reason if later else current.cool_reason,
                "disabled": current.disabled or record.disabled,
                "disabled_reason": current.disabled_reason or record.disabled_reason,
                "updated_at": max(current.updated_at, record.updated_at),
            })
        if self._changed is not None:
            self._changed.set()

    def set_share(self, share: float) -> None:
        """Use ``share`` of every limit (1 / number of live workers)."""
        if abs(share - self.share) < 1e-9:
            return
        self.share = share
        for account in self.accounts.values():
            for pacer in account.pacers():
                pacer.set_share(share)
        for key in self.keys:
            for pacer in key.requests + ([key.tokens] if key.tokens else []):
                pacer.set_share(share)
        if self._changed is not None:
            self._changed.set()

    # ---- looking ---------------------------------------------------------------

    def all_disabled(self) -> bool:
        return all(k.record.disabled for k in self.keys)

    def capacity(self) -> float:
        """Calls per second the pool can sustain across all workers (the sum over quota
        groups of the smaller of the group's limit and its enabled keys' limits)."""
        total = 0.0
        groups: dict[int, list[PoolKey]] = {}
        for key in self.keys:
            if not key.record.disabled:
                groups.setdefault(id(key.account), []).append(key)
        for keys in groups.values():
            key_rates = [k.ceiling() for k in keys]
            key_sum = float("inf") if None in key_rates else sum(key_rates)
            account = keys[0].account.ceiling()
            total += min(key_sum, account if account is not None else float("inf"))
        return total

    def health_check(self) -> dict:
        """The seed's health check and statistics, by key name only."""
        now = self.clock()
        states = {s.value: 0 for s in KeyState}
        rows = []
        total = Usage()
        for key in self.keys:
            state = key.state(now)
            states[state.value] += 1
            for f in ("calls", "ok", "failed", "rate_limited", "prompt_tokens", "completion_tokens", "latency_ms_total"):
                setattr(total, f, getattr(total, f) + getattr(key.usage, f))
            rows.append({
                "name": key.name, "account": key.spec.account, "state": state.value, "priority": key.spec.priority,
                "in_flight": key.in_flight,
                "cooling_for_s": round(max(0.0, key.record.cooling_until - now), 1),
                "reason": key.record.disabled_reason if key.record.disabled else (
                    key.record.cool_reason if state == KeyState.COOLING else ""),
                "last_error": key.last_error, **key.usage.as_dict(),
            })
        accounts = {}
        for account in {id(k.account): k.account for k in self.keys}.values():
            recent = [(t, n) for t, n in account.recent if t >= now - 60]
            accounts[account.name] = {
                "calls_last_minute": len(recent), "tokens_last_minute": sum(n for _, n in recent),
                "ceiling_rps": account.ceiling(), **account.usage.as_dict(),
            }
        capacity = self.capacity()
        return {
            "status": "UP" if states["AVAILABLE"] + states["IN_USE"] > 0 else (
                "DEGRADED" if states["COOLING"] else "DOWN"),
            "strategy": self.strategy,
            "total_keys": len(self.keys),
            "states": states,
            "capacity_rps": round(capacity, 3) if capacity != float("inf") else None,
            "worker_share": round(self.share, 4),
            "waiting": sum(1 for w in self._waiters if not w.future.done()),
            **total.as_dict(),
            "accounts": accounts,
            "keys": rows,
        }
