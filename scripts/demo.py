"""`make demo`: the whole pipeline on one machine, from one command.

Fetches the YOLO weights and sample footage into the cache, starts the embedded
(memory-only) broker unless `kafka.broker` names a real one, one worker and the
detector on the sample footage as child processes, prints the dashboard URL, and on
Ctrl-C (or SIGTERM) stops every child. The assessor is the local heuristic unless
the keys file has usable LLM keys.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from detector.assets import AssetMissing, cache_dir, fetch_all
from llm.keyconfig import load_key_config
from streamapp.embedded_broker import EmbeddedBroker, free_port
from streamapp.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def say(text: str) -> None:
    try:
        print(f"[demo] {text}", flush=True)
    except OSError:
        pass  # stdout gone (a pipe closed by Ctrl-C): stopping the children matters more


def _die_with_parent() -> None:
    # Children must not outlive a demo that is killed outright (SIGKILL skips its
    # cleanup); without the demo nobody waits for a graceful stop, so SIGKILL.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """A `trafficrisk ...` child process in its own session (so a terminal's Ctrl-C
    reaches only the demo, which then stops the children in order), logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamapp", *args], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop within {timeout:.0f}s: killing it")
            self.proc.kill()
            self.proc.wait()


class Interrupted(Exception):
    pass


def _interrupt(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def wait_until(check, what: str, timeout: float, children: list[Child]) -> None:
    """Poll `check()` until true; fail early, with the log tail, if a child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited ({child.proc.returncode}) while waiting for {what}; "
                                   f"last lines of {child.log_path}:\n{_tail(child.output())}")
        time.sleep(0.5)
    raise RuntimeError(f"no {what} within {timeout:.0f}s")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", default="config/cameras.yaml", help="detector camera list")
    parser.add_argument("--port", type=int, default=None, help="dashboard port (default: web.port, 6066)")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and table state (default: .cache/demo)")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    children: list[Child] = []
    broker: EmbeddedBroker | None = None
    # Emptied at each start; the logs stay for a look after Ctrl-C.
    workdir = args.workdir or cache_dir() / "demo"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        try:
            settings = load_settings()
            keys = load_key_config(settings.llm.keys_file).keys
        except ConfigError as exc:
            say(f"configuration error: {exc}")
            return 2
        port = args.port or settings.web.port
        if args.port is None and not _port_free(settings.web.host, port):
            port = free_port()
            say(f"port {settings.web.port} is busy: the dashboard uses {port} instead")
        say(f"assessor: {settings.llm.model} with {len(keys)} keys" if keys else
            f"assessor: the local heuristic (no usable key in {settings.llm.keys_file})")

        say("fetching YOLO weights and sample footage into the cache (first run only)…")
        for name, path in fetch_all().items():
            say(f"  {name}: {path}")

        env = _child_env(workdir, port)
        if settings.kafka.broker == "embedded":
            broker = EmbeddedBroker().start()
            env["TRAFFICRISK_KAFKA__BROKER"] = broker.url
            say(f"embedded broker (memory only) on {broker.url}")
        else:
            say(f"Kafka at {settings.kafka.broker}")
        say(f"logs in {workdir}")

        worker = Child("worker", ["worker", "-l", "info"], env, workdir)
        children.append(worker)
        say("starting the worker…")
        base = f"http://{settings.web.host}:{port}"
        wait_until(lambda: "Ready" in worker.output() and http_ok(f"{base}/api/health/health_check"),
                   "ready worker", args.startup_timeout, children)

        detector = Child("detector", ["detect", "--cameras", args.cameras], env, workdir)
        children.append(detector)
        say(f"starting the detector on {args.cameras} (YOLO on CPU)…")
        wait_until(lambda: _verdict_seen(base, settings), "first verdict", args.startup_timeout, children)

        say(f"dashboard: {base}/   (Ctrl-C stops everything)")
        while all(child.alive() for child in children):
            time.sleep(1)
        dead = next(child for child in children if not child.alive())
        say(f"{dead.name} exited ({dead.proc.returncode}); last lines of {dead.log_path}:\n{_tail(dead.output())}")
        return 1
    except Interrupted as exc:
        say(f"{exc}: stopping…")
        return 0
    except (AssetMissing, RuntimeError) as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir / "data", ignore_errors=True)
        say("stopped")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def _child_env(workdir: Path, port: int) -> dict:
    env = dict(os.environ)
    env.update({
        # Fresh table state: the embedded broker forgets everything on restart.
        "TRAFFICRISK_APP__DATA_DIR": str(workdir / "data"),
        "TRAFFICRISK_WEB__PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _verdict_seen(base: str, settings: Settings) -> bool:
    """True once the worker holds a verdict for some camera: frames went all the way through."""
    headers = {"Authorization": f"Bearer {settings.web.auth_token.get_secret_value()}"} if settings.web.auth_token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{base}/cameras", headers=headers), timeout=2) as response:
            body = json.load(response)
    except (OSError, ValueError):
        return False
    return any(camera.get("latest_verdict") for camera in body.get("cameras", []))


if __name__ == "__main__":
    sys.exit(main())
