"""Operator views: /stats, /cameras, /cameras/{camera_id}, /metrics.

Camera views answer from the relay's hub, which reads every partition of
camera-verdicts and camera-status, so any worker answers for every camera. Lag and
DLQ size are read from the cluster (all workers' partitions), not from this worker.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamapp import metrics
from streamapp.app import app, settings
from streamapp.kafka_inspect import consumer_lag, topic_sizes
from web.auth import authorized
from web.health import worker_health
from web.relay import hub

log = logging.getLogger(__name__)
_CLUSTER_TIMEOUT_S = 10.0


def key_pool_summary() -> Optional[dict]:
    """The assessor's key pool (key names only), when this worker runs one."""
    try:
        from agents.assessor import pool_summary
    except ImportError:
        return None
    return pool_summary()


def source_topics() -> list[str]:
    """The topics this app's agents consume."""
    return sorted({name for agent in app.agents.values() for name in getattr(agent.channel, "topics", ())})


async def cluster_figures() -> dict:
    """Consumer lag per topic and DLQ size; also published as gauges."""
    lag, sizes = await asyncio.wait_for(
        asyncio.gather(consumer_lag(settings, app.conf.id, source_topics()),
                       topic_sizes(settings, [settings.topics.dlq.name])),
        _CLUSTER_TIMEOUT_S,
    )
    for topic, value in lag.items():
        metrics.CONSUMER_LAG.labels(topic=topic).set(value)
    dlq = sizes.get(settings.topics.dlq.name, 0)
    metrics.DLQ_SIZE.set(dlq)
    return {"consumer_lag": lag, "dlq_messages": dlq}


class GuardedView(View):
    async def dispatch(self, request: Request) -> Response:
        if not authorized(request, settings.web):
            return self.error(401, "missing or wrong bearer token")
        return await super().dispatch(request)


@app.page("/stats")
class Stats(GuardedView):
    async def get(self, request: Request) -> Response:
        health = await worker_health()
        try:
            cluster = await cluster_figures()
        except Exception as exc:  # noqa: BLE001 - the view still reports what it knows
            log.warning("stats: cannot read the cluster: %r", exc)
            cluster = {"consumer_lag": None, "dlq_messages": None, "cluster_error": type(exc).__name__}
        return self.json({
            "worker_id": settings.app.worker_id,
            "status": health["status"],
            "agents": health["agents"],
            "assigned_partitions": health["assigned_partitions"],
            **cluster,
            "key_pool": key_pool_summary(),
            "relay": {"clients": len(hub.clients), "cameras": len(hub.latest),
                      "dropped_messages": hub.dropped_total + sum(q.dropped for q in hub.clients.values())},
        })


def camera_row(camera_id: str) -> dict:
    status = hub.statuses.get(camera_id)
    verdict = hub.latest.get(camera_id)
    return {
        "camera_id": camera_id,
        "status": status.model_dump(mode="json") if status else None,
        "latest_verdict": verdict.model_dump(mode="json", exclude_none=True) if verdict else None,
    }


@app.page("/cameras")
class Cameras(GuardedView):
    async def get(self, request: Request) -> Response:
        cameras = sorted(set(hub.latest) | set(hub.statuses))
        return self.json({"cameras": [_summary(camera_row(c)) for c in cameras]})


def _summary(row: dict) -> dict:
    verdict = row["latest_verdict"]
    return {
        "camera_id": row["camera_id"],
        "status": row["status"],
        "latest_verdict": None if verdict is None else {
            k: verdict.get(k) for k in ("origin_message_id", "frame_index", "frame_timestamp", "max_risk_level",
                                        "has_dangerous_driving", "complete", "missing_groups", "verdict_at")
        },
    }


@app.page("/cameras/{camera_id}")
class Camera(GuardedView):
    async def get(self, request: Request, camera_id: str) -> Response:
        if camera_id not in hub.latest and camera_id not in hub.statuses:
            return self.error(404, f"no verdict or status for camera {camera_id!r}")
        return self.json(camera_row(camera_id))


@app.page("/metrics")
class Metrics(GuardedView):
    async def get(self, request: Request) -> Response:
        try:
            await cluster_figures()
        except Exception as exc:  # noqa: BLE001 - scrape the rest anyway
            log.warning("metrics: cannot read the cluster: %r", exc)
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

