"""Creating and listing topics on a cluster (the `topics` commands and worker start-up)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streamapp.kafka_client import aiokafka_kwargs
from streamapp.settings import Settings
from streamapp.topics import topic_config

log = logging.getLogger(__name__)


@dataclass
class TopicReport:
    brokers: int
    replication_factor: int
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = list(self.warnings)
        out += [f"created {name}" for name in self.created]
        out += [f"exists  {name}" for name in self.existing]
        out.append(
            f"{len(self.created)} created, {len(self.existing)} already existed"
            + ("; nothing changed" if not self.created else "")
        )
        return out


def clamp_replication(wanted: int, brokers: int) -> tuple[int, list[str]]:
    if wanted <= brokers:
        return wanted, []
    return brokers, [f"warning: replication factor {wanted} > {brokers} broker(s); using {brokers}"]


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings.kafka), client_id=f"{settings.app.id}-admin")
    await admin.start()
    return admin


async def ensure_topics(settings: Settings) -> TopicReport:
    """Create the topics that are missing; idempotent. Returns what it found and did."""
    admin = await _admin(settings)
    try:
        cluster = await admin.describe_cluster()
        brokers = len(cluster["brokers"])
        rf, warnings = clamp_replication(settings.kafka.replication_factor, brokers)
        existing = set(await admin.list_topics())
        report = TopicReport(brokers=brokers, replication_factor=rf, warnings=warnings)
        missing = []
        for spec in settings.topics.all():
            if spec.name in existing:
                report.existing.append(spec.name)
            else:
                missing.append(NewTopic(spec.name, spec.partitions, rf, topic_configs=topic_config(spec, settings.kafka)))
                report.created.append(spec.name)
        if missing:
            await admin.create_topics(missing)
        return report
    finally:
        await admin.close()


async def describe_topics(settings: Settings) -> list[dict]:
    """Our topics as they exist on the cluster: partitions, replication and configs."""
    admin = await _admin(settings)
    try:
        names = [spec.name for spec in settings.topics.all()]
        present = set(await admin.list_topics())
        wanted = [n for n in names if n in present]
        described = {t["topic"]: t for t in await admin.describe_topics(wanted)} if wanted else {}
        configs = {}
        if wanted:
            responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted])
            for response in responses:
                for resource in response.resources:
                    _, _, _, name, entries = resource[:5]
                    configs[name] = {e[0]: e[1] for e in entries if e[0] in ("retention.ms", "cleanup.policy", "compression.type")}
        rows = []
        for name in names:
            if name not in described:
                rows.append({"topic": name, "exists": False})
                continue
            parts = described[name]["partitions"]
            rows.append({
                "topic": name, "exists": True, "partitions": len(parts),
                "replication_factor": len(parts[0]["replicas"]) if parts else 0,
                "config": configs.get(name, {}),
            })
        return rows
    finally:
        await admin.close()
