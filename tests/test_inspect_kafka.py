"""`trafficrisk table` and `trafficrisk dlq list|replay` against a real worker's topics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from streamapp.models import DeadLetter
from tests.relay_support import frame_context, group_result, record
from tests.support import ROOT, Stack, consume, produce, start_worker

pytestmark = pytest.mark.kafka


def trafficrisk(config, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAFFICRISK_")}
    env["TRAFFICRISK_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "streamapp", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("inspect")
    stack = Stack(bootstrap=kafka_bootstrap, workdir=workdir)
    config = stack.write_config()
    proc = start_worker(config, workdir / "worker.log")
    try:
        yield stack, config
    finally:
        proc.stop()


def test_table_prints_rows_as_json_and_one_row_by_key(worker):
    stack, config = worker
    ctx = frame_context("tbl-1", 3, assessed=1)
    produce(stack.bootstrap, stack.topic("frame_context"), [record(ctx)])
    produce(stack.bootstrap, stack.topic("risk_results"), [record(group_result(ctx, 0, "high"))])
    consume(stack.bootstrap, stack.topic("camera_verdicts"), expect=1, timeout=60)

    one = trafficrisk(config, "table", "latest-verdicts", "tbl-1")
    assert one.returncode == 0, one.stderr
    [row] = [json.loads(line) for line in one.stdout.splitlines()]
    assert row["key"] == "tbl-1"
    assert row["value"]["origin_message_id"] == str(ctx.origin_message_id)
    assert row["value"]["max_risk_level"] == "high" and row["value"]["frame_index"] == 3

    # The frame is settled (ledger written, row deleted) at the timer's next look once
    # its verdict is on Kafka.
    deadline = time.monotonic() + 30
    while True:
        ledger = trafficrisk(config, "table", "aggregator-cameras")
        rows = {r["key"]: r["value"] for r in map(json.loads, ledger.stdout.splitlines())}
        if "tbl-1" in rows or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rows["tbl-1"] == {"finished": [str(ctx.origin_message_id)]}
    # The finished frame left the frames table (its tombstone folds the row away).
    frames = trafficrisk(config, "table", "aggregator-frames")
    assert frames.returncode == 0 and str(ctx.origin_message_id) not in frames.stdout

    missing = trafficrisk(config, "table", "latest-verdicts", "no-such-camera")
    assert missing.returncode == 1 and "no row 'no-such-camera'" in missing.stderr
    unknown = trafficrisk(config, "table", "no-such-table")
    assert unknown.returncode != 0 and "latest-verdicts" in unknown.stderr


def test_dlq_lists_by_reason_and_replays_the_original_bytes_to_their_topic(worker):
    stack, config = worker
    bad_context = b'{"camera_id": "dlq-1", "frame_index": -1}'
    bad_result = b"not json at all"
    produce(stack.bootstrap, stack.topic("frame_context"), [(b"dlq-1", bad_context)])
    produce(stack.bootstrap, stack.topic("risk_results"), [(b"dlq-1", bad_result)])
    consume(stack.bootstrap, stack.topic("dlq"), expect=2, timeout=60)

    listed = trafficrisk(config, "dlq", "list", "--reason", "invalid_message")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    assert {r["source_topic"] for r in rows} == {stack.topic("frame_context"), stack.topic("risk_results")}
    assert all("value_b64" not in r and r["reason"] == "invalid_message" for r in rows)
    assert {r["value_bytes"] for r in rows} == {len(bad_context), len(bad_result)}
    assert "2 dead letter(s)" in listed.stdout
    other = trafficrisk(config, "dlq", "list", "--reason", "deadline_exceeded")
    assert "0 dead letter(s)" in other.stdout

    replay = trafficrisk(config, "dlq", "replay", "--reason", "invalid_message")
    assert replay.returncode == 0, replay.stderr
    assert "2 dead letter(s) replayed" in replay.stdout
    again = consume(stack.bootstrap, stack.topic("frame_context"), expect=3, timeout=30)
    assert [r.value for r in again if r.key == b"dlq-1"] == [bad_context, bad_context]
    # Still invalid, so each comes back to the DLQ once more, with the same bytes.
    letters = [DeadLetter.model_validate_json(r.value)
               for r in consume(stack.bootstrap, stack.topic("dlq"), expect=4, timeout=60)]
    assert sorted(letter.value_b64 for letter in letters).count(letters[0].value_b64) == 2
    assert len(letters) == 4
