"""Session fixtures: one Apache Kafka for the whole run (or KAFKA_BOOTSTRAP), and an
isolated stack (topics, app id, config) per test."""
from __future__ import annotations

import os

import pytest

# The in-process app (agent unit tests) keeps its tables in memory and never dials a broker.
os.environ.setdefault("TRAFFICRISK_APP__STORE", "memory://")

from bench.local_kafka import KafkaUnavailable, LocalKafka
from tests.support import Stack


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    try:
        kafka = LocalKafka().start()
    except KafkaUnavailable as exc:
        pytest.skip(f"Kafka integration tests skipped: {exc}")
    print(f"\nApache Kafka for tests at {kafka.bootstrap}")
    yield kafka.bootstrap
    kafka.stop()


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path) -> Stack:
    return Stack(bootstrap=kafka_bootstrap, workdir=tmp_path)
