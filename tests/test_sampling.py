"""Clip sampling: pure functions of frame counts."""

from __future__ import annotations

import numpy as np
import pytest

from i3d_lightning.video.sampling import (
    crop_boxes,
    random_clip,
    random_crop_box,
    resample_indices,
    short_side_size,
    uniform_clips,
    whole_video,
)


def test_resample_30_to_25_fps_drops_every_sixth_frame():
    indices = resample_indices(60, 30.0, 25.0)
    assert len(indices) == 50
    assert indices[:7].tolist() == [0, 1, 2, 3, 4, 6, 7]
    assert resample_indices(10, 25.0, 25.0).tolist() == list(range(10))
    assert resample_indices(10, 12.5, 25.0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]
    assert resample_indices(10, 0.0, 25.0).tolist() == list(range(10))  # unknown rate: keep frames


def test_random_clip_is_strided_and_inside_the_video():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        clip = random_clip(100, 16, 2, rng)
        assert len(clip) == 16 and np.all(np.diff(clip) == 2) and clip[0] >= 0 and clip[-1] < 100
        starts.add(int(clip[0]))
    assert min(starts) == 0 and max(starts) == 100 - 31  # every start is possible, the last included


def test_short_video_is_looped():
    clip = random_clip(5, 12, 1, np.random.default_rng(0))
    assert clip.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


def test_uniform_clips_cover_the_video():
    clips = uniform_clips(100, 10, 1, 3)
    assert clips[:, 0].tolist() == [0, 45, 90] and clips[-1, -1] == 99
    assert uniform_clips(100, 10, 1, 1)[:, 0].tolist() == [0]
    assert uniform_clips(6, 8, 1, 2).tolist() == [[0, 1, 2, 3, 4, 5, 0, 1]] * 2


def test_whole_video_loops_to_the_minimum_and_cuts_at_the_maximum():
    assert whole_video(20, 9).tolist() == list(range(20))
    assert whole_video(4, 9).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert len(whole_video(500, 9, max_len=250)) == 250


def test_crop_boxes():
    assert crop_boxes(256, 341, 224, 1) == [(16, 58)]
    assert crop_boxes(256, 341, 224, 3) == [(16, 0), (16, 58), (16, 117)]   # along the width
    assert crop_boxes(341, 256, 224, 3) == [(0, 16), (58, 16), (117, 16)]   # along the height
    with pytest.raises(ValueError, match="1 or 3"):
        crop_boxes(256, 256, 224, 2)
    rng = np.random.default_rng(0)
    boxes = {random_crop_box(256, 300, 224, rng) for _ in range(500)}
    assert all(0 <= top <= 32 and 0 <= left <= 76 for top, left in boxes) and len(boxes) > 100


def test_short_side_size_keeps_aspect_ratio():
    assert short_side_size(320, 240, 256) == (341, 256)
    assert short_side_size(240, 320, 256) == (256, 341)
    assert short_side_size(1920, 1080, 256) == (455, 256)
