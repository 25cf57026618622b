"""The Faust app of the bench's own small workers (bench/passthrough.py, bench/skeleton.py):
the same Faust settings as our worker (raw bytes, acks=all, snappy, its producer
batching), broker, data folder and web port from BENCH_BROKER, BENCH_DATA and
BENCH_WEB_PORT."""
import os

import faust

from streamapp.settings import KafkaSettings


def bench_app(app_id: str) -> faust.App:
    kafka = KafkaSettings()
    return faust.App(
        app_id,
        broker=os.environ.get("BENCH_BROKER", "kafka://127.0.0.1:9092"),
        store="memory://",
        datadir=os.environ.get("BENCH_DATA", f"{app_id}-data"),
        producer_acks=-1,
        producer_compression_type="snappy",
        producer_linger_ms=kafka.producer_linger_ms,
        producer_max_batch_size=kafka.producer_batch_bytes,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        web_port=int(os.environ.get("BENCH_WEB_PORT", "6067")),
    )
