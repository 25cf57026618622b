"""Helpers for tests that run real processes against a real broker."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """One isolated deployment on the shared test broker: its own app id, topic names,
    data folder and config file, so tests never see each other's messages."""

    bootstrap: str
    workdir: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    partitions: int = 4
    extra: dict = field(default_factory=dict)

    def topic(self, field_name: str) -> str:
        return f"{field_name.replace('_', '-')}-{self.suffix}"

    def config(self) -> dict:
        fields = ["detection_results", "assessment_tasks", "risk_results", "frame_context",
                  "camera_verdicts", "camera_status", "camera_control", "dlq"]
        config = {
            "app": {"id": f"trafficrisk-test-{self.suffix}", "store": "rocksdb://",
                    "data_dir": str(self.workdir / "data")},
            "kafka": {"broker": f"kafka://{self.bootstrap}", "replication_factor": 1},
            "topics": {f: {"name": self.topic(f), "partitions": self.partitions,
                           "retention_ms": 3_600_000, "compacted": f in ("camera_verdicts", "camera_status")}
                       for f in fields},
            "web": {"host": "127.0.0.1", "port": free_port()},
        }
        for section, values in self.extra.items():
            config.setdefault(section, {}).update(values)
        return config

    def write_config(self, name: str = "trafficrisk.yaml", **overrides: dict) -> Path:
        config = self.config()
        for section, values in overrides.items():
            config.setdefault(section, {}).update(values)
        path = self.workdir / name
        path.write_text(yaml.safe_dump(config))
        return path


class Process:
    """A `trafficrisk ...` child process with its output in a log file."""

    def __init__(self, args: list[str], config: Path, log: Path, env: Optional[dict] = None) -> None:
        self.log_path = log
        self.log = open(log, "wb")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRAFFICRISK_")}
        full_env.update(env or {})
        full_env["TRAFFICRISK_CONFIG"] = str(config)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamapp", *args], cwd=ROOT, env=full_env,
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited ({self.proc.returncode}) before {text!r}:\n{self.output()[-4000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output()[-4000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_worker(config: Path, log: Path, env: Optional[dict] = None, timeout: float = 90.0) -> Process:
    worker = Process(["worker", "-l", "info"], config, log, env)
    worker.wait_for("Ready", timeout)
    return worker


def produce(bootstrap: str, topic: str, records: list[tuple[Optional[bytes], bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(run())


def consume(bootstrap: str, topic: str, *, expect: int, timeout: float = 60.0, settle: float = 0.0) -> list:
    """Read a topic from the beginning until `expect` records arrived (then `settle`
    seconds more, to catch extras) or the timeout passed."""

    async def run() -> list:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None, isolation_level="read_committed",
        )
        await consumer.start()
        records: list = []
        try:
            deadline = time.monotonic() + timeout
            settle_until = None
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
                if len(records) >= expect and settle_until is None:
                    settle_until = time.monotonic() + settle
                if settle_until is not None and time.monotonic() >= settle_until:
                    break
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())
