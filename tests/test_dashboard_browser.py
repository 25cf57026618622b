"""`make demo` and its dashboard in a real browser: Debian's Chromium driven by
Playwright, against the demo's worker fed by its detector running YOLO on the sample
footage (real frames, the test's Apache Kafka, the local heuristic assessor, which
rates some groups of both clips high)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT, Stack, free_port, start_worker

CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
HIGH_RISK_RGB = "rgb(220, 38, 38)"  # --risk-high in web/static/style.css
SCREENSHOTS = ROOT / "test-output"

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def write_cameras(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"cameras": [
        {"id": "junction", "name": "Road junction", "url": "asset:vtest.avi", "interval_s": 1.0},
        {"id": "street", "name": "Street", "url": "asset:bikes.mp4", "interval_s": 1.0},
    ]}))
    return path


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"demo exited ({proc.returncode}):\n{log.read_text()[-4000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} within {timeout}s:\n{log.read_text()[-4000:]}")


def test_demo_dashboard_shows_annotated_footage_and_high_risk_alerts_then_stops_every_child(
        stack: Stack, tmp_path: Path, browser):
    # No keys file: the heuristic assesses, deterministically, without network.
    config = stack.write_config(llm={"keys_file": str(tmp_path / "no-keys.yaml")})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAFFICRISK_")}
    env.update(TRAFFICRISK_CONFIG=str(config), PYTHONUNBUFFERED="1")
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "scripts.demo", "--cameras", str(write_cameras(tmp_path / "cameras.yaml")),
             "--port", str(port), "--workdir", str(tmp_path / "demo")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    worker = None
    try:
        wait_for_line(log, "dashboard: ", demo, timeout=180)
        children = children_of(demo.pid)
        assert len(children) == 2, "the demo runs a worker and a detector"

        base = f"http://127.0.0.1:{port}"
        page.goto(f"{base}/")
        # Only the packaged files are served, with their types; nothing else of the disk.
        assert page.request.get(f"{base}/static/app.js").headers["content-type"].startswith("text/javascript")
        assert page.request.get(f"{base}/static/dashboard.py").status == 404
        assert page.request.get(f"{base}/static/..%2Fdashboard.py").status == 404
        page.wait_for_selector('#ws-state[data-state="open"]', timeout=15_000)
        assert page.is_hidden("#ws-banner")
        page.wait_for_selector('.camera[data-annotated="true"]', timeout=60_000)
        page.wait_for_selector('.alert[data-risk-level="high"]', timeout=90_000)
        page.wait_for_selector('#cameras[data-count="2"]', timeout=30_000)
        assert page.locator(".camera").count() == 2
        assert sorted(page.eval_on_selector_all(".camera", "cards => cards.map(c => c.dataset.cameraId)")) == \
            ["junction", "street"]

        alert = page.locator('.alert[data-risk-level="high"]').first
        assert alert.locator(".risk").evaluate("e => getComputedStyle(e).color") == HIGH_RISK_RGB
        assert alert.evaluate("e => getComputedStyle(e).borderLeftColor") == HIGH_RISK_RGB
        assert alert.locator(".assessor").inner_text() == "heuristic"
        assert alert.locator(".description").inner_text().strip()
        # Boxes were drawn over a real frame: the canvas holds many colours.
        assert page.eval_on_selector('.camera[data-annotated="true"] canvas', """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length && seen.size < 50; i += 4 * 97) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
            return seen.size; }""") >= 50
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dashboard.png"))
        page.screenshot(path=str(tmp_path / "dashboard.png"))

        # Ctrl-C: every child stops, and the page says the feed is gone.
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, log.read_text()[-4000:]
        assert not [pid for pid in children if alive(pid)]
        page.wait_for_selector("#ws-banner", state="visible", timeout=15_000)
        page.screenshot(path=str(SCREENSHOTS / "dashboard-disconnected.png"))

        # A worker on that port again: the page reconnects by itself.
        worker = start_worker(config, tmp_path / "worker.log", env={"TRAFFICRISK_WEB__PORT": str(port)})
        page.wait_for_selector("#ws-banner", state="hidden", timeout=30_000)
        assert page.get_attribute("#ws-state", "data-state") == "open"
    finally:
        page.close()
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            demo.wait(60)
        if worker is not None:
            worker.stop()
