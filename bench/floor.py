"""The floor under bench/pipeline.py's throughput: the same synthetic detection messages
through bench/skeleton.py, the brief's topology (one task per group, one result per
task, one verdict per frame) with no logic, tables or validation, stepped up through
the same rates with the same criteria; and, in the same run, the passthrough baseline.

    .venv/bin/python -m bench.floor [--quick]

The last line is

    floor_groups_per_s=... passthrough_msgs_per_s=... floor_ratio=...

No worker that keeps the brief's records per frame can beat floor_groups_per_s on the
same machine and broker: it is what Faust's cost per record alone allows.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.local_kafka import LocalKafka
from bench.pipeline import (
    Offered, Verdicts, baseline, free_port, highest_sustained, message_template, read_verdicts,
    start_faust_worker,
)
from streamapp.kafka_inspect import consumer_lag
from streamapp.settings import load_settings

PREFIX = "floor-"


async def floor_lag(settings, topics: list[str]) -> int:
    return sum((await consumer_lag(settings, "bench-floor", topics)).values())


async def main_async(args: argparse.Namespace) -> None:
    step_s = 20.0 if args.quick else 60.0
    workdir = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    kafka = LocalKafka().start()
    skeleton: Optional[subprocess.Popen] = None
    stop = asyncio.Event()
    reader: Optional[asyncio.Future] = None
    try:
        passthrough = await baseline(kafka, workdir, args.quick)

        config = workdir / "trafficrisk.yaml"
        config.write_text(yaml.safe_dump({
            "app": {"data_dir": str(workdir / "data")},
            "kafka": {"broker": f"kafka://{kafka.bootstrap}", "replication_factor": 1},
        }))
        settings = load_settings(config, environ={})
        specs = [settings.topics.detection_results, settings.topics.assessment_tasks,
                 settings.topics.risk_results, settings.topics.camera_verdicts]
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(PREFIX + spec.name, spec.partitions, 1) for spec in specs])
        await admin.close()
        await asyncio.sleep(2)  # leaders elected before the first produce
        env = dict(os.environ, BENCH_BROKER=f"kafka://{kafka.bootstrap}", BENCH_DATA=str(workdir / "floor-data"),
                   BENCH_WEB_PORT=str(free_port()), BENCH_TOPIC_PREFIX=PREFIX)
        skeleton = start_faust_worker("bench.skeleton", env, workdir / "skeleton.log")

        verdicts = Verdicts()
        reader = asyncio.ensure_future(read_verdicts(kafka.bootstrap, PREFIX + specs[-1].name, verdicts, stop))
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", compression_type="snappy",
                                    linger_ms=5, max_request_size=2 * 1024 * 1024)
        await producer.start()
        offered = Offered(producer, PREFIX + specs[0].name, message_template())
        lag = functools.partial(floor_lag, settings, [PREFIX + spec.name for spec in specs[:3]])
        best = await highest_sustained(lag, offered, verdicts, step_s)
        await producer.stop()
        print(f"floor_groups_per_s={best:.0f} passthrough_msgs_per_s={passthrough:.0f} "
              f"floor_ratio={best / passthrough:.2f}", flush=True)
    finally:
        stop.set()
        if reader is not None:
            await asyncio.gather(reader, return_exceptions=True)
        if skeleton is not None:
            skeleton.terminate()
            skeleton.wait(30)
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="the brief's topology with nothing in it, against the passthrough")
    parser.add_argument("--quick", action="store_true", help="20 s steps (about 5 minutes)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
