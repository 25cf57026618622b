"""Health views: the original front end's check, and a richer one for operators."""
from __future__ import annotations

import asyncio

from faust.web import Request, Response, View

from streamapp.app import app, settings


async def broker_reachable(timeout: float = 2.0) -> bool:
    """Whether the producer holds (or can open) a connection to at least one broker."""
    try:
        # Faust offers no public handle on its aiokafka client; this one is stable.
        client = app.producer._ensure_producer().client
        for broker in client.cluster.brokers():
            if await asyncio.wait_for(client.ready(broker.nodeId), timeout):
                return True
    except Exception:  # noqa: BLE001 - any failure here just means "not reachable"
        return False
    return False


async def worker_health() -> dict:
    """What this worker knows of itself: broker connection, partitions, agents."""
    assignment = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()) if app.consumer else []
    broker_ok = await broker_reachable()
    agents = {agent.name.rsplit(".", 1)[-1]: agent.state for agent in app.agents.values()}
    healthy = broker_ok and all(state == "running" for state in agents.values())
    return {
        "status": "UP" if healthy else "DEGRADED",
        "service": "trafficrisk",
        "worker_id": settings.app.worker_id,
        "broker": {"url": settings.kafka.broker, "reachable": broker_ok},
        "assigned_partitions": assignment,
        "agents": agents,
        "rebalancing": app.rebalancing,
    }


@app.page("/api/health/health_check")
class FrontEndHealthCheck(View):
    """The existing front end polls this; it must keep its shape."""

    async def get(self, request: Request) -> Response:
        health = await worker_health()
        return self.json({"code": 200, "msg": "OK", "data": {
            "status": "UP", "service": "trafficrisk", "worker_id": health["worker_id"],
            "broker_reachable": health["broker"]["reachable"],
        }})


@app.page("/health")
class Health(View):
    async def get(self, request: Request) -> Response:
        health = await worker_health()
        return self.json(health, status=200 if health["status"] == "UP" else 503)
