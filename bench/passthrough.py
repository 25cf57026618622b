"""The baseline of bench/pipeline.py: a trivial Faust agent that copies each message of
one topic to another, with the same Faust settings as our worker (bench/faust_app.py).
Run by the bench as ``python -m bench.passthrough worker -l warning`` with BENCH_BROKER,
BENCH_SOURCE, BENCH_SINK, BENCH_DATA and BENCH_WEB_PORT set.
"""
import os

from bench.faust_app import bench_app

app = bench_app("bench-passthrough")
source = app.topic(os.environ.get("BENCH_SOURCE", "bench-source"), value_serializer="raw")
sink = app.topic(os.environ.get("BENCH_SINK", "bench-sink"), value_serializer="raw")


@app.agent(source)
async def passthrough(stream):
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value)


if __name__ == "__main__":
    app.main()
