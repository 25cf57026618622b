"""`trafficrisk`: the Faust app's own CLI, with settings loaded (and checked) first.

Order matters: settings are loaded once, an embedded broker is started if configured,
topics are ensured for the processes that need them, and only then is the app
imported, so every Faust command (worker, agents, tables, send) and ours see one
resolved configuration.
"""
from __future__ import annotations

import asyncio
import os
import sys

from streamapp import malloc, runtime
from streamapp.settings import CONFIG_ENV, ConfigError, load_settings

# Processes that may start the embedded broker (an inspection command would only get a
# new, empty one), and those that create our topics first.
_EMBEDDED_COMMANDS = {"worker", "detect"}
_INSPECTION_COMMANDS = {"send", "topics", "table", "dlq", "keys"}
_ENSURE_TOPICS = {"worker", "detect"}


def _take_config_option(argv: list[str]) -> list[str]:
    """Accept `--config PATH` anywhere; Faust's own parser never sees it."""
    out = []
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            os.environ[CONFIG_ENV] = next(it, "")
        elif arg.startswith("--config="):
            os.environ[CONFIG_ENV] = arg.split("=", 1)[1]
        else:
            out.append(arg)
    return out


def _command(argv: list[str]) -> str:
    return next((a for a in argv[1:] if not a.startswith("-")), "")


def main() -> None:
    sys.argv = _take_config_option(sys.argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"trafficrisk: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    command = _command(sys.argv)
    if "--help" in sys.argv or "-h" in sys.argv[1:]:
        command = ""  # help needs no broker
    if command == "worker" and settings.app.malloc_mmap_threshold_kb:
        # Before any thread starts (the topic check below runs one for name lookups).
        malloc.fix_mmap_threshold(settings.app.malloc_mmap_threshold_kb)
    if command in _INSPECTION_COMMANDS and settings.kafka.broker == "embedded":
        print("trafficrisk: kafka.broker is 'embedded', which lives inside the running worker or demo; "
              "set TRAFFICRISK_KAFKA__BROKER=kafka://127.0.0.1:PORT (the demo prints it)", file=sys.stderr)
        sys.exit(2)
    if command in _EMBEDDED_COMMANDS and settings.kafka.broker == "embedded":
        from streamapp.embedded_broker import EmbeddedBroker

        settings.kafka.broker = EmbeddedBroker().start().url
        os.environ["TRAFFICRISK_KAFKA__BROKER"] = settings.kafka.broker
    if command in _ENSURE_TOPICS:
        from streamapp.topic_admin import ensure_topics

        try:
            report = asyncio.run(ensure_topics(settings))
        except Exception as exc:  # noqa: BLE001 - start-up must say why, briefly
            print(f"trafficrisk: cannot reach Kafka at {settings.kafka.broker}: {exc!r}", file=sys.stderr)
            sys.exit(3)
        for line in report.warnings:
            print(f"trafficrisk: {line}", file=sys.stderr)
        settings.kafka.replication_factor = report.replication_factor
    runtime.use(settings)
    from streamapp.app import app

    app.main()
