"""The operations files against the real thing: the compose file parses with Docker
Compose, and every metric that Prometheus scrapes or a Grafana panel charts is one
that running trafficrisk processes really export."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamapp.settings import Settings
from tests.factories import three_group_frame
from tests.support import ROOT, Process, Stack, free_port, produce, start_worker

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "trafficrisk.json"
_METRIC = re.compile(r"\btrafficrisk_[a-z0-9_]+")
_SELECTOR = re.compile(r"\b(trafficrisk_[a-z0-9_]+)\{([^}]*)\}")
_EQUALS = re.compile(r'(\w+)="([^"]*)"')


def compose_cli() -> list[str] | None:
    if shutil.which("docker") is None:
        return None
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return ["docker", "compose"] if probe.returncode == 0 else None


def panel_queries(dashboard: dict) -> dict[str, list[str]]:
    return {panel["title"]: [t["expr"] for t in panel.get("targets", [])] for panel in dashboard["panels"]}


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in _METRIC.findall(expr)}


def label_matchers(exprs: list[str]) -> set[tuple[str, str, str]]:
    """(metric, label, value) of every `metric{label="value"}` equality matcher."""
    return {(name, label, value) for expr in exprs for name, body in _SELECTOR.findall(expr)
            for label, value in _EQUALS.findall(body)}


def exported_samples(exposition: str) -> set[tuple[str, str, str]]:
    """(sample name, label, value) of every sample, and (name, "", "") for each name;
    names as Prometheus stores them (`_total`, `_bucket`, `_count`, ...)."""
    out = set()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            out.add((sample.name, "", ""))
            out.update((sample.name, label, value) for label, value in sample.labels.items())
    return out


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


def _post_json(url: str, body: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


async def _first_detection_result(ws_url: str, send, timeout: float = 60.0) -> dict:
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await asyncio.get_running_loop().run_in_executor(None, send)
        async with asyncio.timeout(timeout):
            async for message in ws:
                body = json.loads(message.data)
                if body["type"] == "detection_result":
                    return body
    return {}


def _wait_for_samples(urls: list[str], wanted: set[tuple], timeout: float = 60.0) -> set[tuple]:
    deadline = time.monotonic() + timeout
    exported: set[tuple] = set()
    while time.monotonic() < deadline:
        try:
            exported = set().union(*(exported_samples(scrape(url)) for url in urls))
        except OSError:  # a process still starting (the detector loads its model first)
            exported = set()
        if wanted <= exported:
            break
        time.sleep(1)
    return exported


def scrape_jobs() -> dict[str, dict]:
    return {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}


def test_prometheus_scrapes_the_ports_the_compose_file_opens():
    jobs = scrape_jobs()
    assert set(jobs) == {"trafficrisk-worker", "trafficrisk-detector"}
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    detector_port = int(compose["detector"]["environment"]["TRAFFICRISK_DETECTOR__METRICS_PORT"])
    for job, (service, port) in {"trafficrisk-worker": ("worker", Settings().web.port),
                                 "trafficrisk-detector": ("detector", detector_port)}.items():
        assert jobs[job]["dns_sd_configs"] == [{"names": [service], "type": "A", "port": port}]


@pytest.mark.kafka
def test_every_scraped_and_charted_metric_is_exported_by_running_processes(stack: Stack, tmp_path: Path):
    """A worker with one LLM key (served by the local fake provider, one 429 injected)
    and a detector on the sample footage, each scraped where Prometheus scrapes it;
    frames and one undecodable message go through while a browser is connected, so
    every labelled series the dashboard charts exists."""
    provider_port, detector_port = free_port(), free_port()
    (tmp_path / "provider.yaml").write_text(yaml.safe_dump(
        {"latency_ms": 20, "keys": [{"name": "ops-key-1", "api_key": "sk-ops-test-1"}]}))
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump({"keys": [{"name": "ops-key-1", "api_key": "sk-ops-test-1"}]}))
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(
        {"cameras": [{"id": "ops-junction", "url": "asset:vtest.avi", "interval_s": 1.0}]}))
    provider = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_provider", "--config", str(tmp_path / "provider.yaml"),
         "--port", str(provider_port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = stack.write_config(llm={"keys_file": str(tmp_path / "keys.yaml"),
                                     "base_url": f"http://127.0.0.1:{provider_port}/v1"},
                                detector={"metrics_port": detector_port})
    port = yaml.safe_load(config.read_text())["web"]["port"]
    jobs = scrape_jobs()
    endpoints = [f"http://127.0.0.1:{port}{jobs['trafficrisk-worker']['metrics_path']}",
                 f"http://127.0.0.1:{detector_port}{jobs['trafficrisk-detector']['metrics_path']}"]
    worker = detector = None
    try:
        detector = Process(["detect", "--cameras", str(tmp_path / "cameras.yaml")], config, tmp_path / "detector.log")
        worker = start_worker(config, tmp_path / "worker.log")
        _post_json(f"http://127.0.0.1:{provider_port}/admin/faults", {"kind": "429", "retry_after": 1, "count": 1})
        now = datetime.now(timezone.utc)
        frames = [three_group_frame("ops-cam", at=now, frame_index=i) for i in range(3)]
        records = [(f.camera_id.encode(), f.to_bytes()) for f in frames] + [(b"ops-cam", b"not json")]
        # A browser is connected while the frames go through, as in production.
        assert asyncio.run(_first_detection_result(
            f"http://127.0.0.1:{port}/ws", lambda: produce(stack.bootstrap, stack.topic("detection_results"), records)))

        # Every metric name, and every label value a panel selects on, must exist.
        queries = panel_queries(json.loads(DASHBOARD.read_text())).values()
        wanted = {(name, "", "") for exprs in queries for name in metric_names(exprs)}
        wanted |= {matcher for exprs in queries for matcher in label_matchers(exprs)}
        exported = _wait_for_samples(endpoints, wanted)
        missing = sorted(wanted - exported)
        assert not missing, f"charted in Grafana but exported by no scraped process: {missing}"
    finally:
        for process in (detector, worker):
            if process is not None:
                process.stop()
        provider.terminate()
        provider.wait(10)
