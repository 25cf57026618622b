"""The baseline of bench/pipeline.py: a trivial Faust agent that copies each message of
one topic to another, with the same Faust settings as our worker (raw bytes, acks=all,
snappy, its producer batching). Run by the bench as
``python -m bench.passthrough worker -l warning`` with BENCH_BROKER, BENCH_SOURCE, BENCH_SINK, BENCH_DATA and BENCH_WEB_PORT set.
"""
import os

import faust

from streamapp.settings import KafkaSettings

_kafka = KafkaSettings()
app = faust.App(
    "bench-passthrough",
    broker=os.environ.get("BENCH_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    datadir=os.environ.get("BENCH_DATA", "bench-passthrough-data"),
    producer_acks=-1,
    producer_compression_type="snappy",
    producer_linger_ms=_kafka.producer_linger_ms,
    producer_max_batch_size=_kafka.producer_batch_bytes,
    topic_replication_factor=1,
    key_serializer="raw",
    value_serializer="raw",
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6067")),
)
source = app.topic(os.environ.get("BENCH_SOURCE", "bench-source"), value_serializer="raw")
sink = app.topic(os.environ.get("BENCH_SINK", "bench-sink"), value_serializer="raw")


@app.agent(source)
async def passthrough(stream):
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value)


if __name__ == "__main__":
    app.main()
