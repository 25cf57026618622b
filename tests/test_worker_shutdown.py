"""A worker whose broker has died still stops on SIGTERM: at the latest after
`app.shutdown_timeout_s` it exits with status 1 and says why, instead of waiting for a
broker that is gone. Its clients' repeated connection errors are logged once, not
several times a second."""
from __future__ import annotations

import signal
import subprocess
import time

import pytest

from bench.local_kafka import KafkaUnavailable, LocalKafka
from tests.support import Stack, start_worker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def own_kafka():
    """A broker of this test's own, to kill (the session's broker serves the other tests)."""
    try:
        kafka = LocalKafka().start()
    except KafkaUnavailable as exc:
        pytest.skip(f"Kafka integration tests skipped: {exc}")
    yield kafka
    kafka.stop()


def test_sigterm_stops_a_worker_whose_broker_died_within_the_shutdown_timeout(own_kafka, tmp_path):
    stack = Stack(bootstrap=own_kafka.bootstrap, workdir=tmp_path)
    config = stack.write_config(app={"shutdown_timeout_s": 5})
    worker = start_worker(config, tmp_path / "worker.log")
    try:
        own_kafka.process.kill()
        own_kafka.process.wait(30)
        time.sleep(3)  # the worker notices: its fetches and heartbeats fail
        sent = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = worker.proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker ignored SIGTERM for 30 s:\n{worker.output()[-3000:]}")
        took = time.monotonic() - sent
    finally:
        worker.stop()
    output = worker.output()
    # Whether Faust's own shutdown waits for the broker depends on what it still had to
    # commit or flush (without the deadline it once ignored SIGTERM for over 30 s; other
    # runs stopped at once): either it stops cleanly, or the deadline stops it and says so.
    assert code in (0, 1), output[-3000:]
    assert (code == 1) == ("did not stop within 5 s" in output), output[-3000:]
    assert took < 5 + 10, f"exited {took:.0f} s after SIGTERM"
    # Without the filter: 188 of these in 8 s.
    refused = [line for line in output.splitlines() if "Unable connect to node with id 1" in line]
    assert len(refused) <= 3, refused


def test_sigterm_with_the_broker_up_is_a_clean_stop(stack, tmp_path):
    worker = start_worker(stack.write_config(app={"shutdown_timeout_s": 60}), tmp_path / "worker.log")
    try:
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(60)
    finally:
        worker.stop()
    assert code == 0, worker.output()[-3000:]
    assert "did not stop within" not in worker.output()
