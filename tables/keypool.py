"""Key-pool state shared by every worker: cooldowns, disabled keys, usage, live workers.

The state lives in one compacted topic (``llm.state_topic``, one partition) that is
its own changelog: ``key:<name>`` holds a key's latest :class:`KeyRecord` (cooling
until, disabled and why), ``worker:<id>`` a worker's heartbeat with its usage per key.
Every worker reads the whole topic with a group-less consumer and merges it into its
pool, so a 429 seen by one worker cools the key on all of them within a fetch
(~100 ms), and a restarted worker replays the topic before it takes a task.

Why not a Faust GlobalTable: the writers are the assessor's concurrent actors, which
must not write tables, and merging needs a rule (later cooldown wins, a disable
sticks), not last-writer-wins. The topic gives the same durability and replay.

Per-key pacing divides each limit among the live workers (heartbeats younger than
three intervals).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from llm.keyconfig import load_key_config
from llm.keypool import OPERATOR, KeyPool, KeyRecord
from streamapp import metrics
from streamapp.app import app, settings
from streamapp.kafka_client import aiokafka_kwargs
from streamapp.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX, WORKER_PREFIX = "key:", "worker:"


@dataclass
class SharedState:
    """What the state topic says, folded: latest record per key, heartbeat per worker."""

    records: dict[str, KeyRecord] = field(default_factory=dict)
    heartbeats: dict[str, dict] = field(default_factory=dict)

    def apply(self, key: bytes, value: Optional[bytes]) -> Optional[KeyRecord]:
        name = key.decode()
        if name.startswith(WORKER_PREFIX):
            if value is None:
                self.heartbeats.pop(name[len(WORKER_PREFIX):], None)
            else:
                beat = json.loads(value)
                self.heartbeats[beat["worker_id"]] = beat
            return None
        if name.startswith(KEY_PREFIX) and value is not None:
            record = KeyRecord.model_validate_json(value)
            self.records[record.key_name] = record
            return record
        return None

    def live_workers(self, now: float, interval: float) -> list[str]:
        return sorted(w for w, beat in self.heartbeats.items() if now - beat["at"] <= 3 * interval)


@functools.cache
def shared_pool() -> Optional[KeyPool]:
    """This worker's key pool, or None when no key is configured (heuristic mode)."""
    config = load_key_config(settings.llm.keys_file)
    if not config.keys:
        log.info("no LLM key configured in %s: the local heuristic assesses every group", settings.llm.keys_file)
        return None
    return KeyPool(config, safety=settings.llm.pacing_safety, jitter_s=settings.llm.pacing_jitter_s,
                   worker_id=settings.app.worker_id)


async def ensure_state_topic(config: Settings) -> None:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(config.kafka), client_id=f"{config.app.id}-keypool-admin")
    await admin.start()
    try:
        if config.llm.state_topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(config.llm.state_topic, 1, config.kafka.replication_factor,
                                                topic_configs={"cleanup.policy": "compact"})])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def read_state(config: Settings) -> SharedState:
    """The topic folded up to its current end (the CLI's view; a worker's first load)."""
    await ensure_state_topic(config)
    consumer = _consumer(config)
    await consumer.start()
    try:
        state = SharedState()
        await _catch_up(consumer, state, config.llm.state_topic)
        return state
    finally:
        await consumer.stop()


async def write_record(config: Settings, record: KeyRecord) -> None:
    await ensure_state_topic(config)
    producer = AIOKafkaProducer(**aiokafka_kwargs(config.kafka))
    await producer.start()
    try:
        await producer.send_and_wait(config.llm.state_topic, record.model_dump_json().encode(),
                                     key=f"{KEY_PREFIX}{record.key_name}".encode())
    finally:
        await producer.stop()


def _consumer(config: Settings) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(config.kafka), group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(config.llm.state_topic, 0)])
    return consumer


async def _catch_up(consumer: AIOKafkaConsumer, state: SharedState, topic: str) -> list[KeyRecord]:
    tp = TopicPartition(topic, 0)
    await consumer.seek_to_beginning(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    records = []
    while await consumer.position(tp) < end:
        for messages in (await consumer.getmany(tp, timeout_ms=500)).values():
            for message in messages:
                record = state.apply(message.key, message.value)
                if record is not None:
                    records.append(record)
    return records


class KeyStateSync:
    """Publishes this worker's key changes and heartbeats; merges everyone else's."""

    def __init__(self, config: Settings, pool: KeyPool) -> None:
        self.config = config
        self.pool = pool
        self.state = SharedState()
        self.ready = asyncio.Event()
        self._outbox: asyncio.Queue = asyncio.Queue()
        pool.on_change(self._outbox.put_nowait)

    async def run(self) -> None:
        llm = self.config.llm
        await ensure_state_topic(self.config)
        producer = AIOKafkaProducer(**aiokafka_kwargs(self.config.kafka), linger_ms=0)
        consumer = _consumer(self.config)
        await producer.start()
        await consumer.start()
        try:
            for record in await _catch_up(consumer, self.state, llm.state_topic):
                self.pool.apply_record(record)
            await self._heartbeat(producer)
            self.ready.set()
            log.info("key pool state loaded: %d key record(s), workers %s", len(self.state.records),
                     self.state.live_workers(time.time(), llm.heartbeat_interval_s))
            await asyncio.gather(self._publish(producer), self._follow(consumer), self._beat(producer))
        finally:
            try:
                await producer.send_and_wait(llm.state_topic, None, key=self._worker_key())
            except Exception:  # noqa: BLE001 - leaving anyway; peers age our heartbeat out
                pass
            await consumer.stop()
            await producer.stop()

    def _worker_key(self) -> bytes:
        return f"{WORKER_PREFIX}{self.config.app.worker_id}".encode()

    async def _publish(self, producer: AIOKafkaProducer) -> None:
        while True:
            record: KeyRecord = await self._outbox.get()
            await producer.send(self.config.llm.state_topic, record.model_dump_json().encode(),
                                key=f"{KEY_PREFIX}{record.key_name}".encode())

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for message in messages:
                    record = self.state.apply(message.key, message.value)
                    if record is not None and record.updated_by != self.config.app.worker_id:
                        self.pool.apply_record(record)
            self._reshare()

    async def _beat(self, producer: AIOKafkaProducer) -> None:
        while True:
            await asyncio.sleep(self.config.llm.heartbeat_interval_s)
            await self._heartbeat(producer)

    async def _heartbeat(self, producer: AIOKafkaProducer) -> None:
        health = self.pool.health_check()
        beat = {"worker_id": self.config.app.worker_id, "at": time.time(),
                "usage": {row["name"]: {k: row[k] for k in ("calls", "ok", "failed", "rate_limited")}
                          for row in health["keys"]}}
        self.state.heartbeats[beat["worker_id"]] = beat
        for state, count in health["states"].items():
            metrics.KEY_STATES.labels(state=state).set(count)
        await producer.send(self.config.llm.state_topic, json.dumps(beat).encode(), key=self._worker_key())
        self._reshare()

    def _reshare(self) -> None:
        live = self.state.live_workers(time.time(), self.config.llm.heartbeat_interval_s)
        self.pool.set_share(1.0 / max(1, len(live)))


@functools.cache
def state_sync() -> Optional[KeyStateSync]:
    pool = shared_pool()
    return KeyStateSync(settings, pool) if pool is not None else None


async def wait_until_loaded(timeout: float = 60.0) -> None:
    """Hold the assessor until the shared state is replayed (no-op in heuristic mode)."""
    sync = state_sync()
    if sync is not None:
        try:
            await asyncio.wait_for(sync.ready.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("key pool state not loaded after %.0fs; assessing with this worker's view only", timeout)


def shared_pool_view() -> dict:
    """The pool as this worker sees it, by key name only."""
    pool = shared_pool()
    if pool is None:
        return {"mode": "heuristic", "keys_file": str(settings.llm.keys_file), "total_keys": 0}
    summary = {"mode": "llm", "model": settings.llm.model, "base_url": settings.llm.base_url, **pool.health_check()}
    sync = state_sync()
    if sync is not None:
        summary["live_workers"] = sync.state.live_workers(time.time(), settings.llm.heartbeat_interval_s)
    return summary


@app.task
async def keypool_state_sync() -> None:
    sync = state_sync()
    while sync is not None:
        try:
            await sync.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Kafka trouble: keep pacing locally, reconnect
            log.warning("key pool state sync failed (%r); retrying in 2 s", exc)
            await asyncio.sleep(2)


def operator_record(name: str, *, disable: bool, reason: str = "") -> KeyRecord:
    """What `trafficrisk keys enable|disable NAME` writes: the operator's word wins."""
    return KeyRecord(key_name=name, disabled=disable, disabled_reason=reason if disable else "",
                     updated_by=OPERATOR, updated_at=time.time())
