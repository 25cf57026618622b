"""`DetectionKafkaProducer`: the detector's side of Kafka (the seed's producer adapter).

Detection results and camera statuses are sent keyed by camera id (UTF-8), with
acks=all, idempotence where the broker supports it, compression, and retries of
failed deliveries; `stop()` waits for everything in flight.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Optional, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownError, UnsupportedVersionError

from streamapp import metrics
from streamapp.kafka_client import aiokafka_kwargs, producer_compression
from streamapp.models import CameraStatusMessage, DetectionResultMessage, Message
from streamapp.settings import Settings

log = logging.getLogger(__name__)

DELIVERY_ATTEMPTS = 5
MAX_REQUEST_BYTES = 1_048_576
# Room for several ~100 KB detection messages per partition batch: aiokafka's default
# (16 KB) gives each its own batch and waits for it to drain before the next one
# (measured: 0.7 -> 0.5 ms of event-loop CPU per message). Larger messages still go
# alone, up to MAX_REQUEST_BYTES.
MAX_BATCH_BYTES = 524_288


class DetectionKafkaProducer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.detection_topic = settings.topics.detection_results.name
        self.status_topic = settings.topics.camera_status.name
        self._producer: Optional[AIOKafkaProducer] = None
        self._pending: set[asyncio.Task] = set()
        self.delivered: Counter[str] = Counter()  # by topic
        self.failed = 0
        self.idempotent = False

    def _create(self, idempotent: bool) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **aiokafka_kwargs(self.settings.kafka),
            acks="all",
            enable_idempotence=idempotent,
            compression_type=producer_compression(self.settings.kafka),
            linger_ms=10,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=30_000,
            retry_backoff_ms=200,
        )

    async def start(self) -> None:
        self._producer = self._create(idempotent=True)
        try:
            await self._producer.start()
            self.idempotent = True
        # The embedded demo broker answers InitProducerId with UnknownError.
        except (UnsupportedVersionError, UnknownError):
            await self._producer.stop()
            log.warning("broker does not support idempotent producers; sending without idempotence")
            self._producer = self._create(idempotent=False)
            await self._producer.start()

    def send_from_thread(self, loop: asyncio.AbstractEventLoop, messages: Sequence[DetectionResultMessage]) -> None:
        """Detection results from a detector thread: encoded there, so the event loop
        only moves bytes, and handed to the loop with one wake-up per batch."""
        encoded = [(m.camera_id, m.to_bytes()) for m in messages]
        loop.call_soon_threadsafe(self._send_detection_results, encoded)

    def _send_detection_results(self, encoded: list[tuple[str, bytes]]) -> None:
        for camera_id, value in encoded:
            self._send_value(self.detection_topic, camera_id, value)

    def send_status(self, message: CameraStatusMessage) -> asyncio.Task:
        return self.send(self.status_topic, message.camera_id, message)

    def send(self, topic: str, key: str, message: Message) -> asyncio.Task:
        return self._send_value(topic, key, message.to_bytes())

    def _send_value(self, topic: str, key: str, value: bytes) -> asyncio.Task:
        task = asyncio.ensure_future(self._deliver(topic, key.encode(), value))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _deliver(self, topic: str, key: bytes, value: bytes) -> bool:
        assert self._producer is not None, "start() first"
        delay = 0.5
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                await (await self._producer.send(topic, value, key=key))
            except KafkaError as exc:
                log.warning("delivery to %s failed (attempt %d/%d): %r", topic, attempt, DELIVERY_ATTEMPTS, exc)
                if attempt == DELIVERY_ATTEMPTS:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.delivered[topic] += 1
            metrics.DETECTOR_SENT.labels(topic, "ok").inc()
            return True
        self.failed += 1
        metrics.DETECTOR_SENT.labels(topic, "failed").inc()
        log.error("gave up delivering a %d-byte message to %s", len(value), topic)
        return False

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        await self.flush()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
