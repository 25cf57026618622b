"""Key-pool benchmark: how much of the provider's quota do we turn into answers?

10 keys in 2 accounts on the local fake provider (each account 50 requests/s and
2,400 requests/min, each key 10 requests/s, latency 300 ms +- 60 ms), 5,000 tasks
(1,000 with --quick) through our pool, client and parser; then the same workload
through LiteLLM's Router configured with the same keys and its documented per-
deployment ``rpm`` limit. The last line is

    utilization=... rate_limited=... lost=... litellm_utilization=... litellm_rate_limited=... litellm_lost=...

utilization = successful calls per second over the run / 80 (the sum over accounts of
min(RPS, RPM/60)); rate_limited = share of the provider's answers that were 429s
(counted by the provider); lost = tasks with neither a result nor a failure record.

    .venv/bin/python -m bench.keypool [--quick] [--tasks N] [--concurrency N] [--skip-litellm]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from uuid import uuid4

import aiohttp
import yaml

from llm.assess import Assessor
from llm.client import ChatClient
from llm.keyconfig import KeyPoolConfig
from llm.keypool import KeyPool
from llm.parser import parse_assessment
from llm.prompt import build_messages
from streamapp.models import AssessmentTaskMessage, DetectedObject, SpatialFeatures, TrafficGroup
from streamapp.settings import LLMSettings

ACCOUNTS = {"acct-a": {"rps": 50, "rpm": 2400}, "acct-b": {"rps": 50, "rpm": 2400}}
KEY_RPS = 10
CEILING = sum(min(a["rps"], a["rpm"] / 60) for a in ACCOUNTS.values())  # 80 calls/s
LATENCY_MS, JITTER_MS = 300, 60


def make_keys() -> list[dict]:
    return [{"name": f"bench-key-{i:02d}", "api_key": f"sk-bench-{secrets.token_hex(12)}",
             "account": "acct-a" if i < 5 else "acct-b"} for i in range(10)]


def make_task(i: int) -> AssessmentTaskMessage:
    objects = [
        DetectedObject(object_id=0, class_id=0, class_name="person", confidence=0.9, bbox=(100, 100, 130, 190)),
        DetectedObject(object_id=1, class_id=2, class_name="car", confidence=0.8, bbox=(140, 120, 260, 200)),
    ]
    features = SpatialFeatures(object_count=2, vehicle_count=1, pedestrian_count=1, density=0.5, avg_spacing=1.2,
                               min_spacing=1.2, min_pedestrian_vehicle_distance=0.5 + (i % 10) / 10)
    group = TrafficGroup(group_index=i % 4, object_ids=[0, 1], bbox=(100, 100, 260, 200), classes=["person", "car"],
                         spatial_features=features, crop_jpeg_b64=base64.b64encode(os.urandom(1500)).decode())
    return AssessmentTaskMessage(origin_message_id=uuid4(), camera_id=f"cam-{i % 20}",
                                 frame_timestamp=datetime.now(timezone.utc), image_width=640, image_height=480,
                                 group=group, objects=objects, priority=1 + i % 3)


class Provider:
    """The fake provider in its own process, so its work does not skew our timing."""

    def __init__(self, keys: list[dict], workdir: Path) -> None:
        config = {"latency_ms": LATENCY_MS, "jitter_ms": JITTER_MS, "accounts": ACCOUNTS,
                  "keys": [{**k, "rps": KEY_RPS} for k in keys]}
        path = workdir / "provider.yaml"
        path.write_text(yaml.safe_dump(config))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fake_provider", "--config", str(path),
                                      "--port", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.proc.stdout.readline()  # "fake provider on ..." once it listens
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    async def admin(self, method: str, path: str) -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, f"http://127.0.0.1:{self.port}{path}") as response:
                return await response.json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def run_workload(tasks: list, concurrency: int, call) -> tuple[int, int, float]:
    """Feed tasks to `concurrency` runners; returns (succeeded, failed, seconds)."""
    queue: asyncio.Queue = asyncio.Queue()
    for task in tasks:
        queue.put_nowait(task)
    counts = {"ok": 0, "failed": 0}
    last_done = [0.0]

    async def runner() -> None:
        while not queue.empty():
            task = queue.get_nowait()
            ok = await call(task)
            counts["ok" if ok else "failed"] += 1
            last_done[0] = time.monotonic()

    started = time.monotonic()
    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return counts["ok"], counts["failed"], last_done[0] - started


async def ours(provider: Provider, keys: list[dict], tasks: list, concurrency: int) -> dict:
    settings = LLMSettings(base_url=provider.base_url, request_timeout_s=10, max_attempts=8)
    config = KeyPoolConfig.model_validate({
        "strategy": "round_robin", "default_cooldown": 1.0, "accounts": ACCOUNTS,
        "keys": [{"name": k["name"], "api_key": k["api_key"], "account": k["account"], "qps_limit": KEY_RPS}
                 for k in keys]})
    pool = KeyPool(config, safety=settings.pacing_safety, jitter_s=settings.pacing_jitter_s, worker_id="bench")
    client = ChatClient(settings)
    assessor = Assessor(settings, pool, client)

    async def call(task) -> bool:
        outcome = await assessor.assess(task)
        return outcome.result is not None

    try:
        return await measure(provider, tasks, concurrency, call)
    finally:
        await pool.close()
        await client.close()


async def litellm_router(provider: Provider, keys: list[dict], tasks: list, concurrency: int, strategy: str) -> dict:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from litellm import Router

    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    # Per deployment (key), LiteLLM's documented `rpm`: the key's share of its
    # account, min(10 rps * 60, 2,400 / 5) = 480; LiteLLM has no notion of accounts.
    per_key_rpm = min(KEY_RPS * 60, ACCOUNTS["acct-a"]["rpm"] // 5)
    router = Router(
        model_list=[{"model_name": "qwen-vl-plus",
                     "litellm_params": {"model": "openai/qwen-vl-plus", "api_base": provider.base_url,
                                        "api_key": k["api_key"], "rpm": per_key_rpm, "timeout": 10}}
                    for k in keys],
        routing_strategy=strategy, num_retries=7, retry_after=0, enable_pre_call_checks=False,
    )

    async def call(task) -> bool:
        try:
            response = await router.acompletion(model="qwen-vl-plus", messages=build_messages(task),
                                                max_tokens=300, temperature=0.1)
            parse_assessment(response.choices[0].message.content, [o.object_id for o in task.objects])
            return True
        except Exception:  # noqa: BLE001 - a failure record, like our DLQ entry
            return False

    return await measure(provider, tasks, concurrency, call)


async def loop_stalls(stalls: list, tick: float = 0.01) -> None:
    """Record how late this process's event loop wakes (a busy machine starves it)."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(tick)
        late = loop.time() - before - tick
        if late > 0.02:
            stalls.append(late)


async def measure(provider: Provider, tasks: list, concurrency: int, call) -> dict:
    await provider.admin("POST", "/admin/reset")
    stalls: list = []
    monitor = asyncio.ensure_future(loop_stalls(stalls))
    ok, failed, seconds = await run_workload(tasks, concurrency, call)
    monitor.cancel()
    stats = await provider.admin("GET", "/admin/stats")
    return {
        "utilization": ok / seconds / CEILING, "rate_limited": stats["rate_limited"] / max(1, stats["requests"]),
        "lost": len(tasks) - ok - failed, "ok": ok, "failed": failed, "seconds": round(seconds, 2),
        "requests": stats["requests"], "by_status": stats["by_status"], "throttled_by": stats["throttled_by"],
        # Event-loop wake-ups later than 20 ms, and their sum: the machine's share of any shortfall.
        "loop_stalls": len(stalls), "loop_stalled_s": round(sum(stalls), 2),
        "load_avg_1m": os.getloadavg()[0],
    }


async def main_async(args: argparse.Namespace) -> None:
    keys = make_keys()
    tasks = [make_task(i) for i in range(args.tasks)]
    with tempfile.TemporaryDirectory() as tmp:
        provider = Provider(keys, Path(tmp))
        try:
            mine = await ours(provider, keys, tasks, args.concurrency)
            print(f"ours:    {json.dumps(mine)}", flush=True)
            if args.skip_litellm:
                theirs = {"utilization": float("nan"), "rate_limited": float("nan"), "lost": -1}
            else:
                theirs = await litellm_router(provider, keys, tasks, args.concurrency, args.litellm_strategy)
                print(f"litellm: {json.dumps(theirs)}", flush=True)
        finally:
            provider.stop()
    print(f"utilization={mine['utilization']:.4f} rate_limited={mine['rate_limited']:.4f} lost={mine['lost']} "
          f"litellm_utilization={theirs['utilization']:.4f} litellm_rate_limited={theirs['rate_limited']:.4f} "
          f"litellm_lost={theirs['lost']}")


def main() -> None:
    parser = argparse.ArgumentParser(description="key pool vs LiteLLM Router on the local fake provider")
    parser.add_argument("--quick", action="store_true", help="1,000 tasks instead of 5,000")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--litellm-strategy", default="simple-shuffle",
                        help="LiteLLM routing strategy: simple-shuffle (its recommended default, weighted by rpm) or usage-based-routing-v2")
    args = parser.parse_args()
    args.tasks = args.tasks or (1000 if args.quick else 5000)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
