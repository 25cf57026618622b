#!/usr/bin/env bash
# Install the Docker Compose v2 CLI plugin (`docker compose`) where only the docker CLI
# is present and no Docker package repository is reachable: build it from its Go module
# (Debian 12 ships only the old Python docker-compose 1.x). Needs Go >= 1.21; takes about
# two minutes on 2 cores (cold caches). Used by .ci/run so the compose file check runs everywhere.
set -euo pipefail
VERSION=${COMPOSE_VERSION:-v2.29.7}
PLUGINS=${DOCKER_CLI_PLUGINS:-/usr/local/lib/docker/cli-plugins}
if docker compose version >/dev/null 2>&1; then
  docker compose version
  exit 0
fi
command -v go >/dev/null || { echo "install_compose_plugin: Go is not installed" >&2; exit 1; }
GOBIN=$(mktemp -d)
GOBIN="$GOBIN" GOFLAGS=-mod=mod go install "github.com/docker/compose/v2/cmd@$VERSION"
mkdir -p "$PLUGINS"
install -m 0755 "$GOBIN/cmd" "$PLUGINS/docker-compose"
rm -rf "$GOBIN"
docker compose version
