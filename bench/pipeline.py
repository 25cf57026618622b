"""Pipeline benchmark: synthetic detection messages of realistic size (three groups
each, JPEG crops from a real photo, a preview image) through ONE worker (fan-out,
the instant heuristic assessor, aggregator), at increasing rates; and, in the same
run and on the same broker, a trivial Faust passthrough agent as the baseline.

    .venv/bin/python -m bench.pipeline [--quick] [--soak-minutes N]

The last line is

    groups_per_s=... passthrough_msgs_per_s=... ratio=... p95_added_ms=... rss_growth=...

groups_per_s: the highest offered rate (groups/s, 3 per frame) the worker sustained
for a whole step (60 s; 20 s with --quick) with the consumer group's lag not
growing and every frame's verdict arriving; passthrough_msgs_per_s: messages/s the
trivial agent copies when it has a backlog; ratio = groups_per_s /
passthrough_msgs_per_s; p95_added_ms: p95 of (verdict time - frame time - assessor
time) at 25 groups/s; rss_growth: worker RSS after 100,000 frames / after 10,000
(--quick: 5,000 / 1,000), both counted from the start of the memory soak, which offers
one constant rate (90 % of the highest sustained): a worker's working set follows its
rate and backlog, so marks counted from the first step would compare a slow early
step with the soak; when the soak hits its time cap (--soak-minutes) first, the RSS at
the cap stands in for the second figure and a line says so.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable, Optional

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.local_kafka import LocalKafka
from streamapp.kafka_inspect import consumer_lag, topic_partitions
from streamapp.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
CAMERAS = 100
GROUPS_PER_FRAME = 3
# The baseline's topics: as many partitions as detection-results, like the pipeline's.
PASSTHROUGH_PARTITIONS = 16


def _jpeg_b64(image, max_side: int, quality: int) -> str:
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


def message_template() -> bytes:
    """One detection message as the detector would send it (crops from ultralytics'
    bus.jpg), with placeholders for the fields that change per message."""
    import importlib.util

    import cv2

    # The package's folder, found without importing ultralytics (whose import writes its
    # settings file to the home directory).
    package = Path(importlib.util.find_spec("ultralytics").origin).parent
    photo = cv2.imread(str(package / "assets" / "bus.jpg"))
    objects, groups = [], []
    for g, (x, y) in enumerate([(20, 380), (300, 420), (560, 400)]):
        base = len(objects)
        members = [("person", 0, (x, y, x + 70, y + 260)), ("car", 2, (x + 60, y + 40, x + 230, y + 220)),
                   ("person", 0, (x + 160, y + 10, x + 230, y + 250))]
        for i, (name, cls, box) in enumerate(members):
            objects.append({"object_id": base + i, "class_id": cls, "class_name": name, "confidence": 0.8,
                            "bbox": list(box), "track_id": base + i})
        x1, y1, x2, y2 = x, y, x + 230, y + 260
        groups.append({
            "group_index": g, "object_ids": [base, base + 1, base + 2], "bbox": [x1, y1, x2, y2],
            "classes": ["car", "person"],
            "spatial_features": {"object_count": 3, "vehicle_count": 1, "pedestrian_count": 2, "density": 0.3,
                                 "avg_spacing": 0.6, "min_spacing": 0.2, "min_pedestrian_vehicle_distance": 0.3 + g / 5},
            "crop_jpeg_b64": _jpeg_b64(photo[max(0, y1 - 40):y2 + 40, max(0, x1 - 40):x2 + 40], 640, 80),
        })
    message = {
        "message_id": "@ID@", "camera_id": "@CAM@", "camera_name": "bench", "frame_index": 0,
        "timestamp": "@TS@", "image_width": photo.shape[1], "image_height": photo.shape[0],
        "detected_objects": objects, "traffic_groups": groups,
        "frame_preview_b64": _jpeg_b64(photo, 640, 70), "process_time_ms": 70.0,
    }
    return json.dumps(message).replace('"frame_index": 0', '"frame_index": @IX@').encode()


async def watch_rss(pid: int, verdicts: "Verdicts", marks: tuple[int, int], rss_at: dict, stop: asyncio.Event) -> None:
    """Worker RSS at the moment the verdict count passes each mark."""
    while not stop.is_set() and len(rss_at) < len(marks):
        for mark in marks:
            if mark not in rss_at and verdicts.count >= mark:
                rss_at[mark] = rss_mb(pid)
                print(f"worker RSS after {verdicts.count} verdicts: {rss_at[mark]:.0f} MB", flush=True)
        await asyncio.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Verdicts:
    """What the verdict reader saw: count, and added latency per verdict."""

    count: int = 0
    added_ms: list[float] = field(default_factory=list)
    recording: bool = False


async def read_verdicts(bootstrap: str, topic: str, verdicts: Verdicts, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, [topic])
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    verdicts.count += 1
                    if verdicts.recording:
                        v = json.loads(record.value)
                        frame = datetime.fromisoformat(v["frame_timestamp"])
                        done = datetime.fromisoformat(v["verdict_at"])
                        assessor = max((r.get("llm_metadata", {}).get("latency_ms", 0) for r in v.get("results", [])),
                                       default=0)
                        verdicts.added_ms.append((done - frame).total_seconds() * 1000 - assessor)
    finally:
        await consumer.stop()


class Offered:
    """Produces detection messages at a set rate (frames/s), paced in 20 ms slices."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, template: bytes) -> None:
        self.producer, self.topic, self.template = producer, topic, template
        self.sent = 0

    def _message(self, n: int) -> tuple[bytes, bytes]:
        camera = f"bench-cam-{n % CAMERAS:03d}"
        now = datetime.now(timezone.utc).isoformat()
        value = (self.template.replace(b"@ID@", str(uuid.uuid4()).encode()).replace(b"@CAM@", camera.encode())
                 .replace(b"@TS@", now.encode()).replace(b"@IX@", str(n).encode()))
        return camera.encode(), value

    async def run(self, frames_per_s: float, seconds: float) -> int:
        start, sent = time.monotonic(), 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(frames_per_s * elapsed) - sent
            for _ in range(due):
                key, value = self._message(self.sent)
                await self.producer.send(self.topic, value, key=key)
                self.sent += 1
                sent += 1
            await asyncio.sleep(0.02)
        return sent


@dataclass
class Step:
    groups_per_s: float
    sustained: bool
    verdicts_per_s: float
    lag_start: int
    lag_end: int


def source_topics(settings) -> list[str]:
    t = settings.topics
    return [t.detection_results.name, t.assessment_tasks.name, t.frame_context.name, t.risk_results.name,
            f"{settings.app.id}-aggregator-ticks"]


async def total_lag(settings) -> int:
    return sum((await consumer_lag(settings, settings.app.id, source_topics(settings))).values())


Lag = Callable[[], Awaitable[int]]


async def run_step(lag: Lag, offered: Offered, verdicts: Verdicts, groups_per_s: float, seconds: float) -> Step:
    """Offer one rate for a while; sustained or not, by the verdicts and the group's lag."""
    frames_per_s = groups_per_s / GROUPS_PER_FRAME
    # Warm up a little at the new rate, then measure.
    await offered.run(frames_per_s, min(5.0, seconds / 4))
    lag_start, count_start, t0 = await lag(), verdicts.count, time.monotonic()
    await offered.run(frames_per_s, seconds)
    elapsed = time.monotonic() - t0
    lag_end = await lag()
    rate = (verdicts.count - count_start) / elapsed
    # Sustained: verdicts keep up with frames (5 % slack for batching at the edges) and the
    # lag did not grow by more than ~2 s worth of messages over the step.
    keeps_up = rate >= 0.95 * frames_per_s
    lag_ok = lag_end - lag_start <= max(500, 2 * frames_per_s * (1 + 2 * GROUPS_PER_FRAME))
    step = Step(groups_per_s, keeps_up and lag_ok, rate * GROUPS_PER_FRAME, lag_start, lag_end)
    print(f"step: offered {groups_per_s:.0f} groups/s -> {step.verdicts_per_s:.0f} groups/s in verdicts, "
          f"lag {lag_start} -> {lag_end}: {'sustained' if step.sustained else 'NOT sustained'}", flush=True)
    return step


async def drain(lag: Lag, seconds: float = 60) -> None:
    """Let the worker catch up between steps."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and await lag() > 50:
        await asyncio.sleep(1)


# Steps of about a fifth: with 200 then 300, a worker that topped out at 273 read as 200.
RATES = [50, 75, 100, 125, 150, 200, 250, 300, 350, 400, 450, 550, 650, 800, 1000, 1200, 1500, 1800]


async def highest_sustained(lag: Lag, offered: Offered, verdicts: Verdicts, seconds: float) -> float:
    """Step up through RATES until one is not sustained; the last one that was."""
    best = 0.0
    for rate in RATES:
        step = await run_step(lag, offered, verdicts, rate, seconds)
        if not step.sustained:
            break
        best = rate
        await drain(lag, 20)
    await drain(lag, 120)
    return best


async def passthrough_rate(kafka: LocalKafka, workdir: Path, messages: int) -> float:
    """Preload a backlog of small messages, start the trivial agent, time the copies."""
    source, sink = "bench-passthrough-source", "bench-passthrough-sink"
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", compression_type="snappy", linger_ms=5)
    await producer.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(name, PASSTHROUGH_PARTITIONS, 1) for name in (source, sink)])
    await admin.close()
    await asyncio.sleep(2)  # leaders elected before the first produce
    payload = json.dumps({"camera_id": "bench-cam-000", "value": "x" * 150}).encode()
    for n in range(messages):
        await producer.send(source, payload, key=f"k{n % CAMERAS}".encode())
    await producer.flush()
    await producer.stop()
    env = dict(os.environ, BENCH_BROKER=f"kafka://{kafka.bootstrap}", BENCH_SOURCE=source, BENCH_SINK=sink,
               BENCH_DATA=str(workdir / "passthrough-data"), BENCH_WEB_PORT=str(free_port()))
    log = open(workdir / "passthrough.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "bench.passthrough", "worker", "-l", "warn"], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    consumer = AIOKafkaConsumer(sink, bootstrap_servers=kafka.bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        seen, first_at, last_at = 0, None, None
        deadline = time.monotonic() + 600
        while seen < messages and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"passthrough worker exited; see {workdir / 'passthrough.log'}")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                seen += len(records)
                now = time.monotonic()
                # Time from the first 5 % to the last: leaves out start-up and rebalance.
                if first_at is None and seen >= messages * 0.05:
                    first_at, first_seen = now, seen
                last_at = now
        if first_at is None or last_at is None or last_at <= first_at:
            raise RuntimeError(f"passthrough copied {seen} of {messages}; see {workdir / 'passthrough.log'}")
        return (seen - first_seen) / (last_at - first_at)
    finally:
        await consumer.stop()
        proc.terminate()
        proc.wait(30)


async def baseline(kafka: LocalKafka, workdir: Path, quick: bool) -> float:
    """The passthrough's rate on this run's broker, printed."""
    print(f"broker {kafka.bootstrap}, work folder {workdir}", flush=True)
    passthrough = await passthrough_rate(kafka, workdir, 20_000 if quick else 60_000)
    print(f"passthrough: {passthrough:.0f} msgs/s", flush=True)
    return passthrough


def start_faust_worker(module: str, env: dict, log_path: Path) -> subprocess.Popen:
    """``python -m module worker``, returned once it logs that it is ready."""
    proc = subprocess.Popen([sys.executable, "-m", module, "worker", "-l", "info"], cwd=ROOT, env=env,
                            stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while b"Ready" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{module} worker did not start; see {log_path}")
        time.sleep(0.5)
    return proc


def start_worker(config: Path, workdir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAFFICRISK_")}
    env["TRAFFICRISK_CONFIG"] = str(config)
    return start_faust_worker("streamapp", env, workdir / "worker.log")


async def main_async(args: argparse.Namespace) -> None:
    step_s = 20.0 if args.quick else 60.0
    rss_marks = (1_000, 5_000) if args.quick else (10_000, 100_000)
    soak_cap_s = 180.0 if args.quick else args.soak_minutes * 60
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    kafka = LocalKafka().start()
    worker: Optional[subprocess.Popen] = None
    stop = asyncio.Event()
    tasks: list[asyncio.Future] = []
    try:
        passthrough = await baseline(kafka, workdir, args.quick)

        config = workdir / "trafficrisk.yaml"
        config.write_text(yaml.safe_dump({
            "app": {"id": "bench-pipeline", "data_dir": str(workdir / "data")},
            "kafka": {"broker": f"kafka://{kafka.bootstrap}", "replication_factor": 1},
            "web": {"port": free_port()},
            # Every frame's three groups are assessed: no per-camera cooldown.
            "fanout": {"cooldown_s": 0},
            "llm": {"keys_file": str(workdir / "no-keys.yaml"), "state_topic": "bench-keypool-state"},
        }))
        settings = load_settings(config, environ={})
        # On a brand-new cluster Faust can join the group before the changelog topics it just
        # created show up in its metadata (its agents then fail with PartitionsMismatch); a
        # first start creates every topic, the second finds them all.
        first = start_worker(config, workdir)
        first.terminate()
        first.wait(60)
        worker = start_worker(config, workdir)
        verdicts = Verdicts()
        rss_at: dict[int, float] = {}
        tasks.append(asyncio.ensure_future(read_verdicts(kafka.bootstrap, settings.topics.camera_verdicts.name, verdicts, stop)))
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", compression_type="snappy",
                                    linger_ms=5, max_request_size=2 * 1024 * 1024)
        await producer.start()
        template = message_template()
        print(f"detection message: {len(template)} bytes (3 groups with crops, preview)", flush=True)
        offered = Offered(producer, settings.topics.detection_results.name, template)

        lag = functools.partial(total_lag, settings)
        verdicts.recording = True
        await run_step(lag, offered, verdicts, 25, step_s)
        verdicts.recording = False
        added = sorted(verdicts.added_ms)
        p95_added = added[int(0.95 * (len(added) - 1))] if added else None
        if not added:
            raise RuntimeError(f"no verdicts at 25 groups/s; see {workdir / 'worker.log'}")
        print(f"at 25 groups/s: {len(added)} verdicts, added latency p50 {statistics.median(added):.0f} ms, "
              f"p95 {p95_added:.0f} ms", flush=True)

        best = await highest_sustained(lag, offered, verdicts, step_s)

        # Memory: feed at a rate the worker sustains until it has made rss_marks[1] verdicts,
        # or until the soak's time cap; then the last RSS stands in for the second mark.
        soak_frames_per_s = max(best, 25) * 0.9 / GROUPS_PER_FRAME
        soak_end = time.monotonic() + soak_cap_s
        first, second = (verdicts.count + mark for mark in rss_marks)
        print(f"soak: {soak_frames_per_s:.0f} frames/s from verdict {verdicts.count}", flush=True)
        tasks.append(asyncio.ensure_future(watch_rss(worker.pid, verdicts, (first, second), rss_at, stop)))
        while len(rss_at) < 2 and time.monotonic() < soak_end:
            await offered.run(soak_frames_per_s, 5)
        if first not in rss_at:
            raise RuntimeError(f"only {verdicts.count} verdicts within the soak; no RSS at {first}")
        last = rss_at.get(second)
        if last is None:
            last = rss_mb(worker.pid)
            print(f"soak cap reached: RSS after {verdicts.count} verdicts (not {second}): {last:.0f} MB; "
                  f"rss_growth below compares it with the RSS after {first}", flush=True)
        rss_growth = last / rss_at[first]
        await producer.stop()
        print(f"groups_per_s={best:.0f} passthrough_msgs_per_s={passthrough:.0f} ratio={best / passthrough:.2f} "
              f"p95_added_ms={p95_added:.0f} rss_growth={rss_growth:.2f}", flush=True)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="throughput, added latency and memory of one worker")
    parser.add_argument("--quick", action="store_true", help="20 s steps, RSS at 1,000 and 5,000 frames (a few minutes)")
    parser.add_argument("--soak-minutes", type=float, default=35.0,
                        help="cap on the memory soak of a full run (default 35): RSS after 100,000 frames needs "
                             "100,000 / (frames/s the worker sustains) seconds")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
