#!/usr/bin/env bash
# Create trafficrisk's topics (idempotent) on the broker of the configuration, for
# those who expect a setup script. Partitions, retention and compaction come from the
# `topics` section of the settings; the replication factor is clamped to the broker count.
#   KAFKA_BROKER=kafka://host:9092 scripts/setup_kafka.sh [--config path.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python
[ -x .venv/bin/python ] && PY=.venv/bin/python
exec "$PY" -m streamapp "$@" topics create
