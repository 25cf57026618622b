"""Camera commands from browsers (topic `camera-control`): start_stream, stop_stream,
check_camera. Each is answered with a CameraStatusMessage on `camera-status`.

Runners share one consumer group, so each command reaches exactly one of them (the
topic is keyed by camera id). Commands are live: a runner that starts reads only new ones.
An undecodable command goes to the DLQ with the reason.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from detector.capture import OFFLINE, CameraConfig, probe
from streamapp.codecs import dead_letter
from streamapp.kafka_client import aiokafka_kwargs
from streamapp.models import CameraControlMessage, CameraStatusMessage

if TYPE_CHECKING:
    from detector.runner import DetectorRunner

log = logging.getLogger(__name__)


class CameraControl:
    def __init__(self, settings, runner: "DetectorRunner") -> None:
        self.settings = settings
        self.runner = runner
        self.topic = settings.topics.camera_control.name
        # Set once partitions are assigned: commands sent from then on are seen.
        self.ready = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(self.settings.kafka),
            group_id=f"{self.settings.app.id}-detector", auto_offset_reset="latest", enable_auto_commit=True,
        )
        await consumer.start()
        consumer.subscribe([self.topic])
        ready = asyncio.ensure_future(self._mark_ready(consumer))
        try:
            async for record in consumer:
                try:
                    command = CameraControlMessage.model_validate_json(record.value)
                except ValidationError as exc:
                    log.warning("bad camera command at %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
                    envelope = dead_letter(
                        topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
                        value=record.value, exc=exc, reason="invalid camera command",
                        worker_id=self.settings.app.worker_id,
                    )
                    self.runner.producer.send(self.settings.topics.dlq.name, record.topic, envelope)
                    continue
                try:
                    await self.handle(command)
                except Exception:  # noqa: BLE001 - one failed command must not end the control loop
                    log.exception("camera command %s for %s failed", command.action, command.camera_id)
        finally:
            ready.cancel()
            await consumer.stop()

    async def _mark_ready(self, consumer: AIOKafkaConsumer) -> None:
        # "latest" is resolved per partition after assignment; only then is a command
        # sent now sure to be read.
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        for partition in consumer.assignment():
            await consumer.position(partition)
        self.ready.set()

    async def handle(self, command: CameraControlMessage) -> None:
        log.info("camera command %s for %s", command.action, command.camera_id)
        if command.action == "start_stream":
            if not command.url:
                self._answer(command.camera_id, OFFLINE, "start_stream needs a url")
                return
            # The reader reports online/offline itself once it tried the source.
            self.runner.add_camera(CameraConfig(id=command.camera_id, name=command.camera_name, url=command.url))
        elif command.action == "stop_stream":
            # A running reader reports "stopped" itself as it ends.
            if not self.runner.remove_camera(command.camera_id):
                self._answer(command.camera_id, OFFLINE, "not running")
        else:
            if not command.url:
                self._answer(command.camera_id, OFFLINE, "check_camera needs a url")
                return
            status, message, latency = await asyncio.get_running_loop().run_in_executor(None, probe, command.url)
            self._answer(command.camera_id, status, message, latency)

    def _answer(self, camera_id: str, status: int, message: str, latency_ms=None) -> None:
        self.runner.publish_status(CameraStatusMessage(camera_id=camera_id, status=status, message=message,
                                                       latency_ms=latency_ms))
