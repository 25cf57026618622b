"""The floor of bench/floor.py: the brief's topology with nothing in it. Per frame, one
detection message in, one task per group out and in again (each with its crop and
objects), one small result per task out and in, one verdict out; no validation, no
tables, no key pool, no metrics. Same Faust settings as our worker (bench/faust_app.py).
Run by the bench as ``python -m bench.skeleton worker -l info`` with BENCH_BROKER,
BENCH_DATA, BENCH_WEB_PORT and BENCH_TOPIC_PREFIX set.
"""
import json
import os
from datetime import datetime, timezone

from bench.faust_app import bench_app
from streamapp.settings import TopicsSettings

_topics = TopicsSettings()
PREFIX = os.environ.get("BENCH_TOPIC_PREFIX", "floor-")
app = bench_app("bench-floor")


def _topic(spec):
    return app.topic(PREFIX + spec.name, value_serializer="raw", partitions=spec.partitions)


detections = _topic(_topics.detection_results)
tasks = _topic(_topics.assessment_tasks)
results = _topic(_topics.risk_results)
verdicts = _topic(_topics.camera_verdicts)
# Frames waiting for results: memory only (the floor keeps no table).
open_frames: dict[str, list[dict]] = {}


@app.agent(detections)
async def fanout(stream):
    async for event in stream.events():
        frame = json.loads(event.value)
        objects = frame["detected_objects"]
        for group in frame["traffic_groups"]:
            task = {"origin_message_id": frame["message_id"], "camera_id": frame["camera_id"],
                    "frame_timestamp": frame["timestamp"], "groups": len(frame["traffic_groups"]),
                    "group": group, "objects": [objects[i] for i in group["object_ids"]]}
            await tasks.send(key=f"{frame['camera_id']}:{frame['frame_index']}".encode(), value=json.dumps(task).encode())


@app.agent(tasks)
async def assessor(stream):
    async for event in stream.events():
        task = json.loads(event.value)
        result = {key: task[key] for key in ("origin_message_id", "camera_id", "frame_timestamp", "groups")}
        result.update(group_index=task["group"]["group_index"], risk_level="low")
        await results.send(key=task["camera_id"].encode(), value=json.dumps(result).encode())


@app.agent(results)
async def aggregate(stream):
    async for event in stream.events():
        result = json.loads(event.value)
        got = open_frames.setdefault(result["origin_message_id"], [])
        got.append(result)
        if len(got) == result["groups"]:
            del open_frames[result["origin_message_id"]]
            verdict = {"camera_id": result["camera_id"], "frame_timestamp": result["frame_timestamp"],
                       "verdict_at": datetime.now(timezone.utc).isoformat(), "results": got}
            await verdicts.send(key=result["camera_id"].encode(), value=json.dumps(verdict).encode())


if __name__ == "__main__":
    app.main()
