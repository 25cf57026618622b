"""A local OpenAI-compatible chat-completions server that behaves like DashScope under
load, for tests and benchmarks: ``python -m bench.fake_provider --config FILE --port N``.

It enforces per-key and per-account requests/s, requests/min and tokens/min over
sliding windows (429 with Retry-After and DashScope's throttling texts), rejects
bursts on an account ("Request rate increased too quickly"), answers after a configurable latency
with plausible assessment JSON, and injects faults on request: 5xx, timeouts,
malformed or truncated bodies, 401, 400. Faults are drawn per request, or, with
``sticky_faults``, from a hash of the request body so retries of one task meet the
same fault. Admin endpoints: ``GET /admin/stats``, ``GET /admin/requests``,
``POST /admin/faults`` (one-shot faults), ``POST /admin/reset``.

Config (YAML or JSON)::

    latency_ms: 300
    jitter_ms: 50
    accounts: {acct-a: {rps: 50, rpm: 2400, tpm: null}}
    keys: [{name: k01, api_key: sk-..., account: acct-a, rps: 10, rpm: null}]
    faults: {server_error: 0.01, timeout: 0, malformed: 0, truncated: 0, unauthorized: 0, bad_request: 0}
    sticky_faults: false
    hang_s: 60            # how long a "timeout" fault holds the request
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from aiohttp import web

FAULTS = ("server_error", "timeout", "malformed", "truncated", "unauthorized", "bad_request")
VEHICLES = {"car", "truck", "bus", "motorcycle", "bicycle"}


class Window:
    """Accepted requests (and their tokens) over the last ``span`` seconds."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.events: deque = deque()
        self.total = 0

    def _trim(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - self.span:
            self.total -= self.events.popleft()[1]

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self.events)

    def tokens(self, now: float) -> int:
        self._trim(now)
        return self.total

    def retry_after(self, now: float) -> float:
        return max(0.0, self.events[0][0] + self.span - now) if self.events else 0.0

    def add(self, now: float, tokens: int) -> None:
        self.events.append((now, tokens))
        self.total += tokens


@dataclass
class Quota:
    rps: Optional[float] = None
    rpm: Optional[float] = None
    tpm: Optional[float] = None
    # DashScope's "request rate increased too quickly" guards an account's (model's)
    # traffic, so only account quotas check bursts: twice the even rate within 100 ms.
    checks_bursts: bool = False
    second: Window = field(default_factory=lambda: Window(1.0))
    minute: Window = field(default_factory=lambda: Window(60.0))
    burst: Window = field(default_factory=lambda: Window(0.1))

    def violation(self, now: float, tokens: int) -> Optional[tuple[str, float]]:
        """Which limit one more request would break, and when to retry."""
        if self.checks_bursts and self.rps and self.burst.count(now) >= max(2, math.ceil(self.rps * 0.2)):
            return "burst", self.burst.retry_after(now)
        if self.rps and self.second.count(now) >= self.rps:
            return "rps", self.second.retry_after(now)
        if self.rpm and self.minute.count(now) >= self.rpm:
            return "rpm", self.minute.retry_after(now)
        if self.tpm and self.minute.tokens(now) + tokens > self.tpm:
            return "tpm", self.minute.retry_after(now)
        return None

    def admit(self, now: float, tokens: int) -> None:
        for window in (self.second, self.minute, self.burst):
            window.add(now, tokens)


@dataclass
class Counters:
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    by_status: dict = field(default_factory=dict)

    def add(self, status: int) -> None:
        self.requests += 1
        self.ok += status == 200
        self.rate_limited += status == 429
        self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1


def _error(status: int, code: str, message: str, retry_after: Optional[float] = None) -> web.Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    body = {"error": {"message": message, "type": code, "param": None, "code": code},
            "request_id": str(uuid.uuid4())}
    return web.json_response(body, status=status, headers=headers)


THROTTLE_TEXT = {
    "burst": ("limit_burst_rate", "Request rate increased too quickly. To ensure system stability, please adjust "
                                  "your client logic to scale requests more smoothly over time."),
    "account": ("Throttling.AllocationQuota", "Allocated quota exceeded, please increase your quota limit."),
    "key": ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
}


def plausible_answer(body: dict, rng: random.Random) -> dict:
    """An assessment a vision model might give for the context in the request."""
    text = " ".join(part.get("text", "") for msg in body.get("messages", []) if isinstance(msg.get("content"), list)
                    for part in msg["content"] if isinstance(part, dict))
    classes = re.findall(r'"class":"([a-z ]+)"', text)
    ids = [int(i) for i in re.findall(r'"id":(\d+)', text)]
    people, vehicles = classes.count("person"), sum(c in VEHICLES for c in classes)
    distance = re.search(r'"min_pedestrian_vehicle_distance":([\d.]+)', text)
    if people and vehicles and distance and float(distance.group(1)) < 0.8:
        level, types, desc = "high", ["vehicle_pedestrian_conflict"], "A pedestrian is very close to a moving vehicle."
    elif people and vehicles:
        level, types, desc = "medium", ["vehicle_pedestrian_conflict"], "Pedestrians share the road with vehicles nearby."
    elif vehicles >= 2:
        level, types, desc = rng.choice([("low", ["tailgating"], "Two vehicles follow each other closely."),
                                         ("none", [], "Vehicles keep a normal distance.")])
    else:
        level, types, desc = "none", [], "No interaction between road users."
    return {"risk_level": level, "risk_types": types, "description": desc,
            "confidence": round(rng.uniform(0.6, 0.95), 2), "involved_object_ids": ids[:2] if types else []}


class FakeProvider:
    def __init__(self, config: dict, seed: int = 7) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.latency_s = config.get("latency_ms", 300) / 1000
        self.jitter_s = config.get("jitter_ms", 0) / 1000
        self.hang_s = float(config.get("hang_s", 60))
        self.faults = {k: float(v) for k, v in (config.get("faults") or {}).items() if k in FAULTS}
        self.sticky = bool(config.get("sticky_faults", False))
        self.reset()

    def reset(self) -> None:
        cfg = self.config
        self.accounts = {name: Quota(a.get("rps"), a.get("rpm"), a.get("tpm"), checks_bursts=True)
                         for name, a in (cfg.get("accounts") or {}).items()}
        self.keys = {k["api_key"]: k for k in cfg.get("keys", [])}
        self.key_quota = {k["name"]: Quota(k.get("rps"), k.get("rpm"), k.get("tpm")) for k in cfg.get("keys", [])}
        self.counters = Counters()
        self.by_key: dict[str, Counters] = {}
        self.log: list[dict] = []
        self.one_shot: list[dict] = []
        self.throttled: dict[str, int] = {}  # which limit each 429 enforced
        self.started = time.time()

    # ---- the API -----------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        now, arrived = time.monotonic(), time.time()
        auth = request.headers.get("Authorization", "")
        key = self.keys.get(auth[7:] if auth.startswith("Bearer ") else "")
        raw = await request.read()
        name = key["name"] if key else None
        response = await self._answer(key, raw, now)
        status = response.status
        self.counters.add(status)
        self.by_key.setdefault(name or "<unknown>", Counters()).add(status)
        self.log.append({"t": arrived, "key": name, "status": status,
                         "agent": request.headers.get("User-Agent", "")})
        return response

    async def _answer(self, key: Optional[dict], raw: bytes, now: float) -> web.StreamResponse:
        if key is None:
            return _error(401, "invalid_api_key", "Invalid API-key provided.")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_request_error", "Request body is not valid JSON.")
        tokens = len(raw) // 4 + int(body.get("max_tokens") or 0)
        fault = self._fault(key["name"], raw)
        if fault and fault.get("kind") == "429":
            return _error(429, *THROTTLE_TEXT["key"], retry_after=fault.get("retry_after", 1))
        if fault and fault["kind"] == "unauthorized":
            return _error(401, "invalid_api_key", "Invalid API-key provided.")
        account = self.accounts.get(key.get("account"))
        for scope, quota in (("key", self.key_quota[key["name"]]), ("account", account)):
            broken = quota.violation(now, tokens) if quota else None
            if broken:
                kind, retry = broken
                self.throttled[f"{scope}_{kind}"] = self.throttled.get(f"{scope}_{kind}", 0) + 1
                return _error(429, *THROTTLE_TEXT["burst" if kind == "burst" else scope], retry_after=retry)
        for quota in (self.key_quota[key["name"]], account):
            if quota:
                quota.admit(now, tokens)
        delay = max(0.0, self.latency_s + self.rng.uniform(-self.jitter_s, self.jitter_s))
        if fault and fault["kind"] == "timeout":
            delay = self.hang_s
        await asyncio.sleep(delay)
        if fault and fault["kind"] == "server_error":
            return _error(500, "InternalError", "An internal error has occurred, please try again later.")
        if fault and fault["kind"] == "bad_request":
            return _error(400, "InvalidParameter", "The image could not be decoded.")
        answer = json.dumps(plausible_answer(body, self.rng))
        if self.rng.random() < 0.3:
            answer = f"```json\n{answer}\n```"
        payload = json.dumps({
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "qwen-vl-plus"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(answer) // 4,
                      "total_tokens": len(raw) // 4 + len(answer) // 4},
        })
        if fault and fault["kind"] == "malformed":
            payload = payload.replace('"choices"', "choices", 1)
        if fault and fault["kind"] == "truncated":
            payload = payload[: len(payload) // 2]
        return web.Response(text=payload, content_type="application/json")

    def _fault(self, key_name: str, raw: bytes) -> Optional[dict]:
        for shot in self.one_shot:
            if shot.get("key") in (None, key_name) and shot["count"] > 0:
                shot["count"] -= 1
                return shot
        if not self.faults:
            return None
        draw = (int(hashlib.sha256(raw).hexdigest()[:8], 16) / 0xFFFFFFFF) if self.sticky else self.rng.random()
        for kind, rate in self.faults.items():
            if draw < rate:
                return {"kind": kind}
            draw -= rate
        return None

    # ---- admin -------------------------------------------------------------------

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({
            "requests": self.counters.requests, "ok": self.counters.ok, "rate_limited": self.counters.rate_limited,
            "by_status": self.counters.by_status, "throttled_by": self.throttled, "uptime_s": round(time.time() - self.started, 3),
            "by_key": {name: vars(c) for name, c in self.by_key.items()},
        })

    async def requests(self, request: web.Request) -> web.Response:
        since = float(request.query.get("since", 0))
        return web.json_response([entry for entry in self.log if entry["t"] >= since])

    async def add_faults(self, request: web.Request) -> web.Response:
        shot = await request.json()
        shot.setdefault("count", 1)
        self.one_shot.append(shot)
        return web.json_response({"queued": shot})

    async def reset_view(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    def application(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/compatible-mode/v1/chat/completions", self.chat)
        app.router.add_get("/admin/stats", self.stats)
        app.router.add_get("/admin/requests", self.requests)
        app.router.add_post("/admin/faults", self.add_faults)
        app.router.add_post("/admin/reset", self.reset_view)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "web.AppRunner":
        runner = web.AppRunner(self.application(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="YAML or JSON provider config")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())

    async def serve() -> None:
        provider = FakeProvider(config)
        await provider.start(args.host, args.port)
        print(f"fake provider on http://{args.host}:{provider.port}/v1 with {len(provider.keys)} key(s)", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
