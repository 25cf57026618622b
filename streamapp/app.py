"""The Faust app, defined once. Agents, tables, views and commands register on it and
are found by autodiscovery; the entry point is the app's own CLI (``trafficrisk``)."""
from __future__ import annotations

import sys
from typing import Any

import faust

from streamapp import runtime, table_store, transport
from streamapp.kafka_client import faust_credentials, producer_compression
from streamapp.topics import Topics, declare_topics

settings = runtime.settings()


def _broker_url() -> str:
    # The CLI resolves "embedded" to a real URL before importing us; a bare import
    # (tests, tooling) gets an address that is never dialled unless a worker starts.
    return settings.kafka.broker if settings.kafka.broker != "embedded" else "kafka://127.0.0.1:9092"


class TrafficRiskApp(faust.App):
    def __init__(self, *args: Any, shutdown_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s

    def _on_autodiscovery_error(self, name: str) -> None:
        # Faust only logs a module that fails to import; a worker without its agents
        # must not start quietly.
        raise RuntimeError(f"cannot import {name} during autodiscovery") from sys.exc_info()[1]

    def _new_transport(self) -> transport.Transport:
        return transport.Transport(self.conf.broker_consumer, self)

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        # Records fetched while recovery was still seeking reached the streams but were
        # never processed (Faust 0.15.3; a worker taking over a backlog left whole runs
        # of them unread until its next restart). Seeking again now that the streams
        # take records reads them again; any already done are done twice (at-least-once).
        self.consumer.seek_again_soon()


app = TrafficRiskApp(
    settings.app.id,
    broker=_broker_url(),
    broker_credentials=faust_credentials(settings.kafka) if settings.kafka.broker != "embedded" else None,
    autodiscover=["agents", "tables", "web", "streamapp"],
    origin="streamapp",
    store=table_store.faust_store_url(settings.app.store),
    datadir=str(settings.app.data_dir),
    processing_guarantee=settings.app.processing_guarantee,
    stream_processing_timeout=settings.app.stream_processing_timeout_s,
    topic_replication_factor=settings.kafka.replication_factor,
    topic_partitions=settings.topics.detection_results.partitions,
    producer_compression_type=producer_compression(settings.kafka),
    producer_acks=-1,
    producer_linger_ms=settings.kafka.producer_linger_ms,
    producer_max_batch_size=settings.kafka.producer_batch_bytes,
    web_host=settings.web.host,
    web_bind=settings.web.host,
    web_port=settings.web.port,
    table_cleanup_interval=5.0,
    # No standby table replicas: with them, a worker that took over a SIGKILLed peer's
    # partitions (standby -> active) stopped receiving some of their records in about
    # half of our runs (Faust 0.15.3); our tables are small and recover from the changelog.
    table_standby_replicas=0,
    key_serializer="raw",
    value_serializer="raw",
    Worker="streamapp.worker:Worker",
    shutdown_timeout_s=settings.app.shutdown_timeout_s,
)

topics: Topics = declare_topics(app, settings)
