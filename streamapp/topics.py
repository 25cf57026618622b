"""Topic definitions: one place for names, partitions, retention and the message each carries."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Type

import faust
from pydantic import BaseModel

from streamapp import models
from streamapp.codecs import DeadLetteringTopic, ModelSchema
from streamapp.settings import KafkaSettings, Settings, TopicSpec

# Which message each topic carries; the DLQ carries envelopes.
TOPIC_MODELS: dict[str, Type[BaseModel]] = {
    "detection_results": models.DetectionResultMessage,
    "assessment_tasks": models.AssessmentTaskMessage,
    "risk_results": models.RiskAssessmentResultMessage,
    "frame_context": models.FrameContextMessage,
    "camera_verdicts": models.CameraVerdictMessage,
    "camera_status": models.CameraStatusMessage,
    "camera_control": models.CameraControlMessage,
    "dlq": models.DeadLetter,
}


def topic_config(spec: TopicSpec, kafka: KafkaSettings) -> dict[str, str]:
    """Broker-side configs for one topic (what `topics create` sets and `topics list` shows)."""
    config = {
        "retention.ms": str(spec.retention_ms),
        "cleanup.policy": "compact" if spec.compacted else "delete",
        "compression.type": "producer" if kafka.compression == "none" else kafka.compression,
    }
    return config


@dataclass
class Topics:
    detection_results: faust.TopicT
    assessment_tasks: faust.TopicT
    risk_results: faust.TopicT
    frame_context: faust.TopicT
    camera_verdicts: faust.TopicT
    camera_status: faust.TopicT
    camera_control: faust.TopicT
    dlq: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def declare(field: str, **extra: object) -> faust.TopicT:
        spec: TopicSpec = getattr(settings.topics, field)
        cls = DeadLetteringTopic if extra else faust.Topic
        return cls(
            app,
            topics=[spec.name],
            schema=ModelSchema(TOPIC_MODELS[field]),
            partitions=spec.partitions,
            retention=spec.retention_ms / 1000 if spec.retention_ms > 0 else None,
            compacting=spec.compacted,
            replicas=settings.kafka.replication_factor,
            config=topic_config(spec, settings.kafka),
            **extra,
        )

    dlq = declare("dlq")
    topics = {
        field: declare(field, dlq=dlq, worker_id=settings.app.worker_id) for field in TOPIC_MODELS if field != "dlq"
    }
    return Topics(dlq=dlq, **topics)
