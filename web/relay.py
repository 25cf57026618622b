"""WebSocket relay: ``/ws`` on every worker, carrying every camera's verdicts and status.

Each worker reads ALL partitions of camera-verdicts and camera-status with its own
group-less consumer (no offsets committed, no rebalances), so a browser connected to
any worker sees every camera, whichever worker made the verdict. While a browser is
connected it also reads detection-results for the frames' preview images, which it
joins to the verdicts (web/previews.py); with nobody watching those partitions are
paused. Each browser has a
bounded queue: when it falls behind, its oldest messages are dropped and counted,
and neither the pipeline nor the other browsers wait for it. A verdict re-emitted
after a worker crash (same camera and frame) is relayed once.

Browser commands (start_stream, stop_stream, check_camera) become CameraControlMessages
on camera-control, for the detector runner, which answers with camera-status.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import OrderedDict, deque
from typing import Optional
from uuid import UUID

from aiohttp import WSCloseCode, WSMsgType, web
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import Request, View
from mode import Service
from pydantic import ValidationError

from streamapp import metrics
from streamapp.app import app, settings, topics
from streamapp.kafka_client import aiokafka_kwargs
from streamapp.kafka_inspect import topic_partitions
from streamapp.models import CameraStatusMessage, CameraVerdictMessage
from streamapp.settings import RelaySettings
from web import frontend
from web.auth import authorized
from web.previews import PreviewJoin, Ready

log = logging.getLogger(__name__)


class ClientQueue:
    """Messages waiting for one browser, oldest dropped first when full."""

    def __init__(self, size: int) -> None:
        self.items: deque[str] = deque(maxlen=size)
        self.ready = asyncio.Event()
        self.dropped = 0

    def put(self, text: str) -> None:
        if len(self.items) == self.items.maxlen:
            self.dropped += 1
            metrics.WS_DROPPED.inc()
        self.items.append(text)
        self.ready.set()

    async def get(self) -> str:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        return self.items.popleft()


class Hub:
    """Who is connected, what each is owed, and the latest state of every camera."""

    def __init__(self, config: RelaySettings, worker_id: str) -> None:
        self.config = config
        self.worker_id = worker_id
        self.clients: dict[str, ClientQueue] = {}
        self.latest: dict[str, CameraVerdictMessage] = {}
        self.statuses: dict[str, CameraStatusMessage] = {}
        self._relayed: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._ids = itertools.count(1)
        self.dropped_total = 0
        self.previews: PreviewJoin[CameraVerdictMessage] = PreviewJoin(config.preview_buffer, config.preview_wait_s)

    def connect(self) -> tuple[str, ClientQueue]:
        client_id = f"{self.worker_id}-{next(self._ids)}"
        queue = self.clients[client_id] = ClientQueue(self.config.client_queue_size)
        metrics.WS_CLIENTS.set(len(self.clients))
        return client_id, queue

    def disconnect(self, client_id: str) -> None:
        queue = self.clients.pop(client_id, None)
        if queue is not None:
            self.dropped_total += queue.dropped
        if not self.clients:
            self.previews.clear()
        metrics.WS_CLIENTS.set(len(self.clients))

    def broadcast(self, message: dict) -> None:
        if not self.clients:
            return
        text = json.dumps(message)
        metrics.WS_SENT.labels(type=message["type"]).inc(len(self.clients))
        for queue in self.clients.values():
            queue.put(text)

    def first_time(self, verdict: CameraVerdictMessage) -> bool:
        key = (verdict.camera_id, str(verdict.origin_message_id))
        if key in self._relayed:
            return False
        self._relayed[key] = None
        if len(self._relayed) > self.config.dedupe_capacity:
            self._relayed.popitem(last=False)
        return True

    def on_verdict(self, verdict: CameraVerdictMessage, live: bool = True, now: Optional[float] = None) -> None:
        if not self.first_time(verdict):
            metrics.RELAY_DUPLICATES.inc()
            return
        current = self.latest.get(verdict.camera_id)
        if current is None or verdict.frame_timestamp >= current.frame_timestamp:
            self.latest[verdict.camera_id] = verdict
        if live and self.clients:
            self._send(self.previews.verdict(
                str(verdict.origin_message_id), verdict, time.monotonic() if now is None else now))

    def on_preview(self, frame_id: str, preview_b64: str) -> None:
        if self.clients:
            self._send(self.previews.preview(frame_id, preview_b64))

    def expire(self, now: Optional[float] = None) -> None:
        """Send the verdicts that waited for their preview long enough."""
        self._send(self.previews.expire(time.monotonic() if now is None else now))

    def _send(self, ready: Ready) -> None:
        for verdict, preview in ready:
            if preview is None:
                metrics.RELAY_WITHOUT_PREVIEW.inc()
            self.broadcast(frontend.detection_result(verdict, preview))

    def on_status(self, status: CameraStatusMessage) -> None:
        self.statuses[status.camera_id] = status
        self.broadcast(frontend.camera_status(status))
        if status.status == 0:
            self.broadcast(frontend.stream_stopped(status))

    def snapshot(self) -> list[dict]:
        """What a browser gets on connect besides the ack: every camera's status."""
        return [frontend.camera_status(s) for s in self.statuses.values()]


hub = Hub(settings.relay, settings.app.worker_id)
# Open browser sockets, closed when the worker stops: an open socket would otherwise
# hold the web server's shutdown for its full grace period.
sockets: set[web.WebSocketResponse] = set()


@app.service
class VerdictFeed(Service):
    """Reads every partition of camera-verdicts and camera-status into the hub, and of
    detection-results, for the previews, while a browser is connected."""

    consumer: Optional[AIOKafkaConsumer] = None

    async def on_start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(settings.kafka), group_id=None, enable_auto_commit=False,
            # Under exactly_once only committed verdicts count; harmless otherwise.
            isolation_level="read_committed", client_id=f"{settings.app.id}-relay-{settings.app.worker_id}",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self.consumer.start()
        self.verdicts_topic = settings.topics.camera_verdicts.name
        self.status_topic = settings.topics.camera_status.name
        self.frames_topic = settings.topics.detection_results.name
        verdict_tps = await topic_partitions(self.consumer, [self.verdicts_topic])
        status_tps = await topic_partitions(self.consumer, [self.status_topic])
        self.frame_tps = await topic_partitions(self.consumer, [self.frames_topic])
        self.consumer.assign(verdict_tps + status_tps + self.frame_tps)
        self.consumer.pause(*self.frame_tps)
        # Status is compacted and small: all of it. Verdicts: only a short tail, for
        # /cameras; browsers get live verdicts from here on.
        if status_tps:
            await self.consumer.seek_to_beginning(*status_tps)
        ends = await self.consumer.end_offsets(verdict_tps) if verdict_tps else {}
        starts = await self.consumer.beginning_offsets(verdict_tps) if verdict_tps else {}
        self.live_from = dict(ends)
        for tp in verdict_tps:
            self.consumer.seek(tp, max(starts[tp], ends[tp] - settings.relay.seed_per_partition))
        log.info("relay reading %d verdict and %d status partitions", len(verdict_tps), len(status_tps))

    async def on_stop(self) -> None:
        for socket in list(sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"worker stopping")
        if self.consumer is not None:
            await self.consumer.stop()

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            await self._follow_frames()
            batches = await self.consumer.getmany(timeout_ms=100, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    self._dispatch(tp, record)
            hub.expire()

    async def _follow_frames(self) -> None:
        """Previews only matter while someone watches: read frames from now on, or stop."""
        following = not self.consumer.paused() & set(self.frame_tps)
        if hub.clients and not following:
            await self.consumer.seek_to_end(*self.frame_tps)
            self.consumer.resume(*self.frame_tps)
        elif not hub.clients and following:
            self.consumer.pause(*self.frame_tps)

    def _dispatch(self, tp: TopicPartition, record) -> None:
        if record.value is None:
            return
        if tp.topic == self.frames_topic:
            self._preview(record.value)
            return
        try:
            if tp.topic == self.verdicts_topic:
                hub.on_verdict(CameraVerdictMessage.model_validate_json(record.value),
                               live=record.offset >= self.live_from.get(tp, 0))
            else:
                hub.on_status(CameraStatusMessage.model_validate_json(record.value))
        except ValidationError as exc:
            # Both topics are written by our own processes; a bad record is a bug to see, not to relay.
            log.warning("relay skips %s[%s]@%s: %s", tp.topic, tp.partition, record.offset, exc.errors()[:1])

    @staticmethod
    def _preview(value: bytes) -> None:
        # Only two fields are needed: no model validation of the whole frame here (the
        # fan-out validates it, and dead-letters a bad one, which then has no verdict).
        try:
            frame = json.loads(value)
            frame_id, preview = str(UUID(frame["message_id"])), frame.get("frame_preview_b64")
        except (ValueError, TypeError, KeyError, AttributeError):
            return
        if isinstance(preview, str):
            hub.on_preview(frame_id, preview)


@app.page("/ws")
class WebSocketRelay(View):
    async def get(self, request: Request) -> web.StreamResponse:
        if not authorized(request, settings.web):
            return self.error(401, "missing or wrong bearer token")
        socket = web.WebSocketResponse(heartbeat=30)
        await socket.prepare(request)
        sockets.add(socket)
        client_id, queue = hub.connect()
        queue.put(json.dumps(frontend.connection_ack(client_id, settings.app.worker_id)))
        for message in hub.snapshot():
            queue.put(json.dumps(message))
        writer = asyncio.ensure_future(self._write(socket, queue))
        try:
            async for incoming in socket:
                if incoming.type != WSMsgType.TEXT:
                    continue
                await self._command(incoming.data, queue)
        finally:
            writer.cancel()
            sockets.discard(socket)
            hub.disconnect(client_id)
        return socket

    async def _write(self, socket: web.WebSocketResponse, queue: ClientQueue) -> None:
        while not socket.closed:
            text = await queue.get()
            try:
                await socket.send_str(text)
            except ConnectionError:
                return

    async def _command(self, text: str, queue: ClientQueue) -> None:
        try:
            command = frontend.parse_command(text)
        except frontend.CommandError as exc:
            queue.put(json.dumps(frontend.error(str(exc), exc.camera_id)))
            return
        if command.kind == "ping":
            queue.put(json.dumps(frontend.pong()))
            return
        control = command.control
        await topics.camera_control.send(key=control.camera_id, value=control)
        queue.put(json.dumps(frontend.command_ack(control)))
