"""The asset cache: where it is, and that a fetched asset is reused."""
from __future__ import annotations

from pathlib import Path

from detector.assets import ASSETS, asset_path, cache_dir
from streamapp.settings import load_settings


def test_cache_folder_comes_from_trafficrisk_cache_and_is_not_a_setting(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TRAFFICRISK_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    assert ASSETS["vtest.avi"].path == tmp_path / "footage" / "vtest.avi"
    load_settings(environ={"TRAFFICRISK_CACHE": str(tmp_path)})  # no "unknown setting" error


def test_a_cached_asset_is_not_fetched_again():
    path = asset_path("bikes.mp4")
    before = path.stat().st_mtime_ns
    assert asset_path("bikes.mp4") == path and path.stat().st_mtime_ns == before
    assert path.stat().st_size > 100_000
