"""The operations files against the real thing: the compose file parses with Docker
Compose, and every metric that Prometheus scrapes or a Grafana panel charts is one
that running trafficrisk processes really export."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamapp.settings import Settings
from tests.support import ROOT

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "trafficrisk.json"
_METRIC = re.compile(r"\btrafficrisk_[a-z0-9_]+")


def compose_cli() -> list[str] | None:
    if shutil.which("docker") is None:
        return None
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return ["docker", "compose"] if probe.returncode == 0 else None


def panel_queries(dashboard: dict) -> dict[str, list[str]]:
    return {panel["title"]: [t["expr"] for t in panel.get("targets", [])] for panel in dashboard["panels"]}


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in _METRIC.findall(expr)}


def exported_sample_names(exposition: str) -> set[str]:
    """Sample names as Prometheus stores them (`_total`, `_bucket`, `_count`, ...)."""
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}


def test_compose_file_parses_with_docker_compose_config():
    cli = compose_cli()
    if cli is None:
        pytest.skip("docker CLI with the compose plugin not installed (see docs/operations.md)")
    result = subprocess.run([*cli, "-f", str(COMPOSE), "config", "--format", "json"],
                            capture_output=True, text=True, cwd=DOCKER)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {"kafka", "topics", "worker", "detector", "prometheus", "grafana"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("zookeeper" in name for name in services)
    assert services["topics"]["command"] == ["topics", "create"]
    # Scalable: the worker publishes its web port on a host port Docker picks per replica.
    assert all(not port.get("published") for port in services["worker"]["ports"])
    assert services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_every_dashboard_panel_queries_trafficrisk_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    queries = panel_queries(dashboard)
    assert queries, "the dashboard has no panels"
    for title, exprs in queries.items():
        assert exprs and metric_names(exprs), f"panel {title!r} queries no trafficrisk metric"


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus():
    provisioning = DOCKER / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    provider = yaml.safe_load((provisioning / "dashboards" / "trafficrisk.yml").read_text())["providers"][0]
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    dashboard = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {source["uid"]}


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def test_prometheus_scrapes_the_worker_web_port_and_metrics_path():
    jobs = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    worker = next(job for job in jobs if job["job_name"] == "trafficrisk-worker")
    assert worker["metrics_path"] == "/metrics"
    assert worker["dns_sd_configs"][0]["port"] == Settings().web.port
