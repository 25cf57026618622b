"""`trafficrisk detect`: the detector runner as a command of the app's CLI.

Detector code (torch, ultralytics, OpenCV) is imported inside the command only, so
worker processes that discover this module stay light.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Optional

import click
from faust.cli import option

from streamapp.app import app, settings


@app.command(
    option("--cameras", "cameras_file", type=click.Path(dir_okay=False), default="config/cameras.yaml",
           show_default=True, help="YAML file with a `cameras:` list (id, name, url, interval_s, loop)."),
    option("--playback", type=click.Choice(["realtime", "fast"]), default="realtime", show_default=True,
           help="Video files: play at their own frame rate like a live camera (realtime), or as fast "
                "as the detector takes frames, never dropping one (fast). Streams are always live."),
    option("--max-frames", type=click.IntRange(min=1), default=None,
           help="Stop each camera after this many sampled frames; exit 0 when all cameras are done."),
    option("--interval", type=click.FloatRange(min=0, min_open=True), default=None,
           help="Sample interval in seconds for every camera (default: the camera's interval_s, "
                "else detector.sample_interval_s = 1.8)."),
    option("--loop/--no-loop", "loop_files", default=None,
           help="Video files: start over at the end (default: each camera's `loop`, true)."),
    option("--shard", type=click.IntRange(min=0), default=0, show_default=True,
           help="With --shards N: run only cameras i with i % N == shard, to split a list over runners."),
    option("--shards", type=click.IntRange(min=1), default=1, show_default=True,
           help="Number of runner processes that split the camera list."),
)
async def detect(self, cameras_file: str, playback: str, max_frames: Optional[int], interval: Optional[float],
                 loop_files: Optional[bool], shard: int, shards: int) -> None:
    """Run the detector: capture cameras, YOLO, track, group, crop, produce to Kafka.

    Sends one detection-results message per sampled frame and a camera-status message
    on every camera change; listens on camera-control for browsers' start/stop/check
    commands. SIGTERM (or Ctrl-C) stops capture, drains, flushes and exits 0.
    """
    from detector.assets import AssetMissing
    from detector.capture import Playback
    from detector.runner import DetectorRunner, RunOptions, load_cameras, split_cameras
    from streamapp.settings import ConfigError

    if shard >= shards:
        raise click.UsageError("--shard must be below --shards")
    try:
        cameras = split_cameras(load_cameras(Path(cameras_file)), shard, shards)
        runner = DetectorRunner(settings, cameras, RunOptions(
            playback=Playback(playback), max_frames=max_frames, interval_s=interval, loop=loop_files,
        ))
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, runner.stop)
        self.say(f"detector: {len(cameras)} cameras from {cameras_file}")
        await runner.run()
    except (ConfigError, AssetMissing) as exc:
        print(f"trafficrisk detect: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    delivered = runner.producer.delivered[settings.topics.detection_results.name] if runner.producer else runner.produced
    self.say(f"detector stopped: {runner.produced} detection messages produced, {delivered} delivered, "
             f"{runner.queue.dropped} frames dropped")
