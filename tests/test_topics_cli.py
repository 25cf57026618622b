"""`trafficrisk topics create|list` against Apache Kafka."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamapp.topic_admin import clamp_replication
from tests.support import ROOT

pytestmark = pytest.mark.kafka


def run(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamapp", "--config", str(config), "topics", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_topics_create_is_idempotent_and_clamps_replication(stack):
    config = stack.write_config(kafka={"replication_factor": 3})
    first = run(config, "create")
    assert first.returncode == 0, first.stderr
    assert "warning: replication factor 3 > 1 broker(s); using 1" in first.stdout
    assert "8 created, 0 already existed" in first.stdout

    second = run(config, "create")
    assert second.returncode == 0, second.stderr
    assert "0 created, 8 already existed; nothing changed" in second.stdout
    assert "created " not in second.stdout.replace("0 created", "")

    listed = [json.loads(line) for line in run(config, "list").stdout.splitlines() if line.startswith("{")]
    by_name = {row["topic"]: row for row in listed}
    assert by_name[stack.topic("dlq")]["partitions"] == 4
    assert by_name[stack.topic("camera_verdicts")]["config"]["cleanup.policy"] == "compact"
    assert by_name[stack.topic("detection_results")]["config"]["retention.ms"] == "3600000"


def test_replication_is_kept_when_enough_brokers():
    assert clamp_replication(3, 5) == (3, [])
    assert clamp_replication(3, 2)[0] == 2
