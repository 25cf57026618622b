"""The assessor agent in real worker processes on Apache Kafka, against the fake
provider in its own process: shared cooldowns between workers, no task lost to a
SIGKILL, and no key string anywhere a key could leak."""
from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading
import time

import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from streamapp.kafka_inspect import consumer_lag
from streamapp.models import AssessmentTaskMessage, DeadLetter, RiskAssessmentResultMessage
from streamapp.settings import load_settings
from tests.llm_support import ProviderProcess, http_get, key, make_task
from tests.support import ROOT, consume, produce, start_worker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Quicker rejoin after a SIGKILL than Faust's 60 s default (Faust reads these variables).
FAST_GROUP = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}


def setup_llm(stack, tmp_path, keys: list[dict], provider_config: dict, **llm) -> tuple[ProviderProcess, dict]:
    """Provider process, keys file (secrets come from the environment), llm settings."""
    provider = ProviderProcess({"keys": keys, **provider_config}, tmp_path)
    keys_file = tmp_path / "api_keys.yaml"
    keys_file.write_text(yaml.safe_dump({
        "strategy": "round_robin", "default_cooldown": 2.0,
        "keys": [{"name": k["name"], "api_key": f"${{TR_TEST_{i}}}"} for i, k in enumerate(keys)]}))
    env = {f"TR_TEST_{i}": k["api_key"] for i, k in enumerate(keys)} | FAST_GROUP
    stack.extra["llm"] = {"keys_file": str(keys_file), "base_url": provider.base_url,
                          "state_topic": f"keypool-state-{stack.suffix}", "request_timeout_s": 10, **llm}
    return provider, env


def task_records(count: int, cameras: int = 16) -> list[tuple[bytes, bytes]]:
    tasks = [make_task(camera=f"cam-{i % cameras}", pedestrian_gap=0.3 + (i % 7) / 5) for i in range(count)]
    return [(f"{t.camera_id}:{i}".encode(), t.to_bytes()) for i, t in enumerate(tasks)]


def outcomes(stack, expect: int, timeout: float) -> tuple[list, list]:
    deadline = time.monotonic() + timeout
    while True:
        results = consume(stack.bootstrap, stack.topic("risk_results"), expect=expect, timeout=3)
        letters = [r for r in consume(stack.bootstrap, stack.topic("dlq"), expect=0, timeout=1)
                   if DeadLetter.model_validate_json(r.value).source_topic == stack.topic("assessment_tasks")]
        done = {RiskAssessmentResultMessage.model_validate_json(r.value).task_id for r in results} | {
            AssessmentTaskMessage.model_validate_json(base64.b64decode(DeadLetter.model_validate_json(r.value).value_b64)).task_id
            for r in letters}
        if len(done) >= expect or time.monotonic() > deadline:
            return results, letters
        time.sleep(1)


def uncommitted_tasks(config, settle_s: float) -> int:
    settings = load_settings(config)
    topic = settings.topics.assessment_tasks.name
    deadline = time.monotonic() + settle_s
    while True:
        lag = asyncio.run(consumer_lag(settings, settings.app.id, [topic])).get(topic, 0)
        if lag == 0 or time.monotonic() > deadline:
            return lag
        time.sleep(0.5)


def test_a_429_seen_by_one_worker_stops_the_other_using_that_key_within_a_second(stack, tmp_path):
    keys = [key("k1"), key("k2")]
    provider, env = setup_llm(stack, tmp_path, keys, {"latency_ms": 80, "jitter_ms": 20}, concurrency=4)
    workers = []
    stop = threading.Event()
    try:
        for name in ("a", "b"):
            config = stack.write_config(f"{name}.yaml", app={"data_dir": str(tmp_path / f"data-{name}")})
            workers.append(start_worker(config, tmp_path / f"worker-{name}.log", env))

        def feed() -> None:
            while not stop.is_set():
                produce(stack.bootstrap, stack.topic("assessment_tasks"), task_records(8))
                time.sleep(0.25)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()

        def k1_agents(entries) -> set:
            return {e["agent"] for e in entries if e["key"] == "k1" and e["status"] == 200}

        deadline = time.monotonic() + 60
        while len(k1_agents(provider.admin("/admin/requests"))) < 2:
            assert time.monotonic() < deadline, "both workers should be calling with k1"
            time.sleep(0.5)
        provider.admin("/admin/faults", {"kind": "429", "key": "k1", "retry_after": 60, "count": 1})
        deadline = time.monotonic() + 20
        while not [e for e in provider.admin("/admin/requests") if e["status"] == 429]:
            assert time.monotonic() < deadline, "the 429 was never answered"
            time.sleep(0.2)
        time.sleep(4)
        stop.set()
        feeder.join(10)
        log = provider.admin("/admin/requests")
        throttled = next(e for e in log if e["status"] == 429)
        worker_a = throttled["agent"]
        worker_b = next(agent for agent in k1_agents(log) if agent != worker_a)
        assert [e for e in log if e["agent"] == worker_b and e["key"] == "k1" and e["t"] < throttled["t"]]
        late = [e for e in log if e["key"] == "k1" and e["t"] > throttled["t"] + 1.0]
        assert late == [], f"k1 still used more than 1 s after the 429 by {sorted({e['agent'] for e in late})}"
        after = [e for e in log if e["t"] > throttled["t"] + 1.0]
        assert {e["agent"] for e in after if e["key"] == "k2"} == {worker_a, worker_b}, "both kept working on k2"
        for name in ("a", "b"):  # each worker paces at half of every limit
            port = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())["web"]["port"]
            view = json.loads(http_get(f"http://127.0.0.1:{port}/keys"))
            assert view["worker_share"] == 0.5 and len(view["live_workers"]) == 2
            assert {k["name"]: k["state"] for k in view["keys"]}["k1"] == "COOLING"
    finally:
        stop.set()
        for worker in workers:
            worker.stop()
        provider.stop()


def test_sigkill_with_200_tasks_in_flight_loses_none(stack, tmp_path):
    keys = [key("k1"), key("k2"), key("k3")]
    # 5 % of task bodies get a 400 every time, so those tasks end in the DLQ every time.
    provider, env = setup_llm(stack, tmp_path, keys, {"latency_ms": 900, "jitter_ms": 600, "sticky_faults": True,
                                                      "faults": {"bad_request": 0.05}}, concurrency=100)
    records = task_records(200)
    sent = {AssessmentTaskMessage.model_validate_json(v).task_id for _, v in records}
    config = stack.write_config()
    worker = start_worker(config, tmp_path / "first.log", env)
    try:
        produce(stack.bootstrap, stack.topic("assessment_tasks"), records)
        deadline = time.monotonic() + 60
        while provider.admin("/admin/stats")["requests"] < 120:
            assert time.monotonic() < deadline, "the worker never got going"
            time.sleep(0.1)
    finally:
        worker.kill()
        worker.stop()
    before = len(consume(stack.bootstrap, stack.topic("risk_results"), expect=200, timeout=2))
    assert before < 150, "the kill must land while most tasks are in flight"

    worker = start_worker(config, tmp_path / "second.log", env)
    try:
        results, letters = outcomes(stack, expect=200, timeout=120)
        # Every task is done, so the commits must reach the end of the topic.
        assert uncommitted_tasks(config, settle_s=20) == 0
    finally:
        worker.stop()
        provider.stop()
    done = [RiskAssessmentResultMessage.model_validate_json(r.value) for r in results]
    dead = [DeadLetter.model_validate_json(r.value) for r in letters]
    dead_ids = {AssessmentTaskMessage.model_validate_json(base64.b64decode(d.value_b64)).task_id for d in dead}
    result_ids = {r.task_id for r in done}
    assert result_ids | dead_ids == sent, f"lost: {len(sent - result_ids - dead_ids)}"
    assert not result_ids & dead_ids, "a task ended both as a result and as a dead letter"
    assert all(d.reason == "bad_request" and d.attempts == 1 and "HTTP 400" in d.error for d in dead)
    assert 0 < len(dead_ids) < 30
    assert all(r.llm_metadata.assessor == "llm" and r.llm_metadata.key_name in {"k1", "k2", "k3"} for r in done)


def _read_all(bootstrap: str, topics: list[str]) -> bytes:
    async def run() -> bytes:
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        chunks = []
        try:
            for _ in range(10):
                for part in (await consumer.getmany(timeout_ms=500)).values():
                    chunks += [(m.key or b"") + b" " + (m.value or b"") for m in part]
        finally:
            await consumer.stop()
        return b"\n".join(chunks)

    return asyncio.run(run())


def test_no_key_string_appears_in_logs_views_tables_dlq_or_metrics(stack, tmp_path):
    good, wrong = key("k-good"), key("k-wrong")
    provider, env = setup_llm(stack, tmp_path, [good, wrong], {"latency_ms": 30, "sticky_faults": True,
                                                                "faults": {"bad_request": 0.2}}, concurrency=8)
    provider.stop()  # the provider must not know k-wrong: 401, disabled, logged by name
    provider = ProviderProcess({"keys": [good], "latency_ms": 30, "sticky_faults": True,
                                "faults": {"bad_request": 0.2}}, tmp_path)
    stack.extra["llm"]["base_url"] = provider.base_url
    config = stack.write_config()
    port = yaml.safe_load(config.read_text())["web"]["port"]
    worker = start_worker(config, tmp_path / "worker.log", env)
    try:
        produce(stack.bootstrap, stack.topic("assessment_tasks"), task_records(30))
        results, letters = outcomes(stack, expect=30, timeout=60)
        assert letters, "some tasks should have been dead-lettered"
        time.sleep(2)  # a heartbeat with usage lands on the state topic
        base = f"http://127.0.0.1:{port}"
        views = {path: http_get(base + path) for path in ("/stats", "/keys", "/metrics")}
        assert 'key="k-good"' in views["/metrics"] and "k-wrong" in views["/keys"]
        cli = subprocess.run([sys.executable, "-m", "streamapp", "keys"], cwd=ROOT, capture_output=True, text=True,
                             env={**env, "TRAFFICRISK_CONFIG": str(config), "PATH": "/usr/bin:/bin"}, timeout=60)
        assert "k-wrong" in cli.stdout and "DISABLED" in cli.stdout, cli.stdout + cli.stderr
    finally:
        worker.stop()
        provider.stop()
    log = worker.output()
    assert "key k-wrong DISABLED" in log
    changelogs = [t for t in _list_topics(stack.bootstrap) if t.startswith(f"trafficrisk-test-{stack.suffix}")]
    stored = _read_all(stack.bootstrap, [stack.topic("dlq"), stack.topic("risk_results"),
                                         f"keypool-state-{stack.suffix}", *changelogs])
    letters_decoded = b"".join(base64.b64decode(DeadLetter.model_validate_json(r.value).value_b64) for r in letters)
    haystacks = {"worker log": log, "cli": cli.stdout + cli.stderr, **views,
                 "topics": stored.decode(errors="replace"), "dlq payloads": letters_decoded.decode(errors="replace")}
    for secret in (good["api_key"], wrong["api_key"]):
        for where, text in haystacks.items():
            assert secret not in text and secret[:12] not in text, f"a key leaked into {where}"
    assert json.loads(views["/keys"])["total_keys"] == 2


def test_keys_command_disables_and_enables_a_key_for_every_worker(stack, tmp_path):
    keys_file = tmp_path / "api_keys.yaml"
    keys_file.write_text(yaml.safe_dump({"keys": [{"name": "k1", "api_key": "sk-test-cli-0123456789abcdef"}]}))
    config = stack.write_config(llm={"keys_file": str(keys_file), "state_topic": f"keypool-state-{stack.suffix}"})

    def keys(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "streamapp", "keys", *args], cwd=ROOT, capture_output=True,
                              text=True, env={"TRAFFICRISK_CONFIG": str(config), "PATH": "/usr/bin:/bin"}, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "disabled on every worker" in keys("disable", "k1")
    assert "DISABLED" in keys()
    keys("enable", "k1")
    row = next(line for line in keys().splitlines() if line.startswith("k1 "))
    assert "AVAILABLE" in row and "sk-test" not in row


def _list_topics(bootstrap: str) -> list[str]:

    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    return asyncio.run(run())
