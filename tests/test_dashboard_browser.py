"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a
worker fed by the detector running YOLO on the sample footage (real frames, real
Kafka, the local heuristic assessor, which rates some groups of both clips high)."""
from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT, Process, Stack, start_worker

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
        {"id": "junction", "name": "Road junction", "url": "asset:vtest.avi"},
        {"id": "street", "name": "Street", "url": "asset:bikes.mp4"},
    ]}))
    return path


def test_dashboard_shows_annotated_footage_and_high_risk_alerts_and_survives_a_worker_restart(
        stack: Stack, tmp_path: Path, browser):
    # No keys file: the heuristic assesses, deterministically, without network.
    config = stack.write_config(llm={"keys_file": str(tmp_path / "no-keys.yaml")})
    port = yaml.safe_load(config.read_text())["web"]["port"]
    worker = start_worker(config, tmp_path / "worker.log")
    detector = Process(["detect", "--cameras", str(write_cameras(tmp_path / "cameras.yaml")), "--interval", "1"],
                       config, tmp_path / "detector.log")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector('#ws-state[data-state="open"]', timeout=15_000)
        assert page.is_hidden("#ws-banner")

        page.wait_for_selector('.camera[data-annotated="true"]', timeout=120_000)
        page.wait_for_selector('.alert[data-risk-level="high"]', timeout=120_000)
        page.wait_for_selector('#cameras[data-count="2"]', timeout=60_000)
        assert page.locator(".camera").count() == 2
        assert sorted(page.eval_on_selector_all(".camera", "cards => cards.map(c => c.dataset.cameraId)")) == \
            ["junction", "street"]

        alert = page.locator('.alert[data-risk-level="high"]').first
        assert alert.locator(".risk").evaluate("e => getComputedStyle(e).color") == HIGH_RISK_RGB
        assert alert.evaluate("e => getComputedStyle(e).borderLeftColor") == HIGH_RISK_RGB
        assert alert.locator(".assessor").inner_text() == "heuristic"
        assert alert.locator(".description").inner_text().strip()
        # Boxes were drawn over a real frame: the canvas holds more than one colour.
        assert page.eval_on_selector('.camera[data-annotated="true"] canvas', """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length && seen.size < 50; i += 4 * 97) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
            return seen.size; }""") >= 50
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dashboard.png"))
        page.screenshot(path=str(tmp_path / "dashboard.png"))

        # The worker dies: the banner says so; a new worker on the port: it clears.
        worker.kill(signal.SIGKILL)
        page.wait_for_selector("#ws-banner", state="visible", timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "dashboard-disconnected.png"))
        worker = start_worker(config, tmp_path / "worker-2.log")
        page.wait_for_selector("#ws-banner", state="hidden", timeout=30_000)
        page.wait_for_function("document.querySelector('#ws-state').dataset.state === 'open'", timeout=5_000)
    finally:
        page.close()
        detector.stop()
        worker.stop()
