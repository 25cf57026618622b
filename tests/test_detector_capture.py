"""Capture threads and the camera list: sampling, statuses, reconnect backoff, sharding."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from detector.assets import asset_path
from detector.capture import CameraConfig, CameraReader, Frame, Playback
from detector.runner import load_cameras, split_cameras
from streamapp.settings import ConfigError


def test_file_reader_samples_at_the_interval_in_fast_playback():
    frames: list[Frame] = []
    statuses: list[tuple[int, str]] = []
    camera = CameraConfig(id="junction", url="asset:vtest.avi", loop=False)
    reader = CameraReader(camera, 1.8, frames.append, lambda _id, s, m, _l: statuses.append((s, m)),
                          playback=Playback.fast, max_frames=4)
    reader.start()
    reader.join(30)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.t for f in frames] == pytest.approx([0.0, 1.8, 3.6, 5.4])  # 18 frames apart at 10 fps
    assert statuses == [(1, "online"), (0, "finished")]


def test_unreadable_file_is_an_offline_status_not_an_exception(tmp_path: Path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"not a video at all" * 100)
    statuses: list[tuple[int, str]] = []
    reader = CameraReader(CameraConfig(id="broken", url=str(bad)), 1.8, lambda f: None,
                          lambda _id, s, m, _l: statuses.append((s, m)), reconnect_initial_s=0.05)
    reader.start()
    reader.join(0.5)
    reader.stop()
    reader.join(5)
    assert not reader.is_alive()
    assert statuses[0][0] in (0, 2) and "broken.avi" in statuses[0][1]
    assert statuses[-1] == (0, "stopped")


def test_missing_file_is_retried_with_backoff_and_picked_up_when_it_appears(tmp_path: Path):
    video = tmp_path / "late.avi"
    statuses: list[tuple[int, str]] = []
    frames: list[Frame] = []
    reader = CameraReader(CameraConfig(id="late", url=str(video)), 1.8, frames.append,
                          lambda _id, s, m, _l: statuses.append((s, m)),
                          reconnect_initial_s=0.05, reconnect_max_s=0.2, max_frames=1)
    reader.start()
    time.sleep(1.0)
    assert [m.rsplit("retrying in ", 1)[1] for _, m in statuses] == ["0.05 s", "0.1 s", "0.2 s"]  # capped
    shutil.copy(asset_path("vtest.avi"), video)
    reader.join(10)
    assert statuses[-2:] == [(1, "online"), (0, "finished")]
    assert len(frames) == 1


def test_camera_list_is_validated_with_clear_errors(tmp_path: Path):
    path = tmp_path / "cameras.yaml"
    path.write_text("cameras:\n  - {id: a, url: asset:vtest.avi, interval_s: 1.0}\n  - {id: b, url: rtsp://h/s}\n")
    assert [(c.id, c.interval_s, c.loop) for c in load_cameras(path)] == [("a", 1.0, True), ("b", None, True)]
    path.write_text("cameras:\n  - {id: a, uri: x}\n")
    with pytest.raises(ConfigError, match=r"cameras.0.url: Field required"):
        load_cameras(path)
    path.write_text("cameras:\n  - {id: a, url: x}\n  - {id: a, url: y}\n")
    with pytest.raises(ConfigError, match="unique"):
        load_cameras(path)


def test_shards_split_a_camera_list_without_overlap():
    cameras = [CameraConfig(id=f"cam{i}", url="0") for i in range(7)]
    shards = [split_cameras(cameras, k, 3) for k in range(3)]
    assert sorted(c.id for shard in shards for c in shard) == sorted(c.id for c in cameras)
    assert [len(s) for s in shards] == [3, 2, 2]


def test_realtime_playback_never_samples_faster_than_the_interval():
    frames: list[Frame] = []
    camera = CameraConfig(id="junction", url="asset:vtest.avi")
    reader = CameraReader(camera, 0.3, frames.append, lambda *_: None, playback=Playback.realtime, max_frames=4)
    reader.start()
    reader.join(30)
    taken = [f.taken for f in frames]
    assert len(taken) == 4
    assert all(b - a >= 0.29 for a, b in zip(taken, taken[1:]))  # 3 frames at 10 fps, at the video's pace
    assert all(b.t - a.t >= 0.3 - 1e-9 for a, b in zip(frames, frames[1:]))  # media time: 3 frames or more
