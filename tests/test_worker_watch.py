"""DataLoader workers watched by their heartbeat: a busy worker is never declared hung however long its
item takes, a silent one is stopped, and a stopped or dead worker is reported in one line naming its video."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from i3d_lightning import heartbeat
from i3d_lightning.commands import extract_features
from i3d_lightning.data.clip_dataset import VideoClipDataset
from i3d_lightning.errors import WorkerFailedError
from i3d_lightning.flow import tvl1
from i3d_lightning.runtime import worker_watch
from i3d_lightning.runtime.worker_watch import WorkerWatch
from i3d_lightning.video import decoding
from tests.conftest import run_main
from tests.encodings import encode, index_of
from tests.tiny_datasets import FRAMES, _video


class _Videos(Dataset):
    """Three items; item 1 does ``behaviour`` first: ``busy`` (3 s, beating), ``silent`` (60 s, no beat)
    or ``dies`` (SIGKILL)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    def __len__(self) -> int:
        return 3

    def video_of(self, index: int) -> str:
        return f"videos/{'abc'[index]}.mp4"

    def __getitem__(self, index: int) -> int:
        if index == 1 and self.behaviour == "busy":
            for _ in range(30):
                time.sleep(0.1)
                heartbeat.beat()
        elif index == 1 and self.behaviour == "silent":
            time.sleep(60)
        elif index == 1 and self.behaviour == "dies":
            os.kill(os.getpid(), signal.SIGKILL)
        return index


def _fetch_all(behaviour: str, stuck_after: float = 1.0) -> list[int]:
    watch = WorkerWatch(_Videos(behaviour), 2, stuck_after=stuck_after)
    loader = DataLoader(watch.items, batch_size=None, num_workers=2, worker_init_fn=watch.worker_init_fn)
    with watch.watching():
        return list(loader)


def test_a_worker_that_beats_is_never_declared_hung():
    # 3 s of work on one item against a 1 s limit: the beats keep it alive (a fixed timeout would not).
    assert _fetch_all("busy") == [0, 1, 2]


def test_a_silent_worker_is_stopped_and_its_video_named():
    started = time.monotonic()
    with pytest.raises(WorkerFailedError, match=r"^videos/b\.mp4: the DataLoader worker reading it made no "
                                                r"progress for \d+ s and was stopped"):
        _fetch_all("silent")
    assert time.monotonic() - started < 30  # not the item's 60 s


def test_a_dead_worker_is_reported_with_its_video():
    with pytest.raises(WorkerFailedError, match=r"^videos/b\.mp4: the DataLoader worker reading it died "
                                                r"\((killed by signal Killed|exited unexpectedly): out of memory"):
        _fetch_all("dies", stuck_after=30.0)  # a death is told at once; not mistaken for silence on a busy machine


def test_decoding_and_flow_beat_as_they_go(tmp_path, monkeypatch):
    # The places that take long say so as they go: every decoded frame (PyAV) or decord batch, every
    # pyramid level of TV-L1.
    beats = []
    monkeypatch.setattr(decoding, "beat", lambda: beats.append("decode"))
    monkeypatch.setattr(tvl1, "beat", lambda: beats.append("flow"))
    _video(tmp_path / "a.mp4", 0)
    list(decoding._decoded_from_start(str(tmp_path / "a.mp4")))
    assert beats.count("decode") == FRAMES
    monkeypatch.setattr(decoding, "SEEK_BATCH", 5)
    frames = decoding._read_seeking(tmp_path / "a.mp4", np.arange(FRAMES)[::-1], None)
    assert beats.count("decode") == FRAMES + -(-FRAMES // 5)  # a beat per decord batch of 5
    monkeypatch.setattr(decoding, "SEEK_BATCH", 256)
    np.testing.assert_array_equal(frames, decoding._read_seeking(tmp_path / "a.mp4", np.arange(FRAMES)[::-1], None))
    # Read in requests of 5, an AVI's frames are still the sequential decode's: by decord's seek (MPEG-4
    # without B-frames), and decoding on from the start (UCF101's XviD family, B-frames), a beat per frame.
    wanted = np.arange(23)[::-1]
    monkeypatch.setattr(decoding, "SEEK_BATCH", 5)
    for encoding, access, beats_per_read in (("avi_mpeg4", "seek", 5), ("avi_mpeg4_bframes", "sequential", 23)):
        path = encode(tmp_path / f"{encoding}.avi", 23, encoding)
        assert decoding.access_mode(path) == access
        before = beats.count("decode")
        assert [index_of(frame) for frame in decoding.read_frames(path, wanted)] == wanted.tolist()
        assert beats.count("decode") - before == beats_per_read, encoding
    images = torch.rand(2, 64, 64) * 255
    tvl1.tvl1_flow(images[:1], images[1:], tvl1.TVL1Parameters(scales=3, warps=1, outer_iterations=1,
                                                                inner_iterations=2))
    assert beats.count("flow") == 3


def test_a_stuck_video_ends_feature_extraction_in_one_line(tmp_path, weights_cache, checkpoints_dir, capsys,
                                                           monkeypatch):
    for name in ("a", "b"):
        _video(tmp_path / "videos" / f"{name}.mp4", ord(name))
    original = VideoClipDataset.item

    def stuck_on_b(self, index, frames=None):
        if self.records[index].video_id == "b":
            time.sleep(120)  # no frame decoded, no beat
        return original(self, index, frames)

    monkeypatch.setattr(VideoClipDataset, "item", stuck_on_b)
    monkeypatch.setattr(worker_watch, "STUCK_AFTER_S", 2.0)
    started = time.monotonic()
    status, _, stderr = run_main(extract_features.main, [
        str(tmp_path / "videos"), str(tmp_path / "out"), "--weights-rgb", "rgb_scratch", "--mirror",
        str(checkpoints_dir), "--short-side", "193", "--crop", "193", "--window", "9", "--workers", "1"], capsys)
    assert status == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'videos' / 'b.mp4'}: the DataLoader worker reading it made no progress "
                      f"for {errors[0].split('for ')[1].split(' s')[0]} s and was stopped (a decoder stuck on a "
                      f"damaged file? i3d-check-videos finds such files)"], stderr[-2000:]
    assert "Traceback" not in stderr
    assert time.monotonic() - started < 100
