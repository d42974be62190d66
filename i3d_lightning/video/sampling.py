"""Which frames to decode: pure functions of frame counts and rates, no I/O."""

from __future__ import annotations

import math

import numpy as np


def resample_indices(num_frames: int, source_fps: float, target_fps: float | None) -> np.ndarray:
    """Indices into a ``source_fps`` video that play it back at ``target_fps``.

    Frame ``i`` of the output is the source frame shown at time ``i / target_fps`` (nearest earlier
    frame), so a 30 fps video resampled to 25 fps drops every sixth frame. ``target_fps=None`` or a
    missing source rate keeps every frame.
    """
    if not target_fps or not source_fps or source_fps <= 0:
        return np.arange(num_frames)
    count = max(1, math.floor(num_frames * target_fps / source_fps + 1e-6))
    indices = np.floor(np.arange(count) * (source_fps / target_fps) + 1e-6).astype(np.int64)
    return np.minimum(indices, num_frames - 1)


def clip_span(clip_len: int, stride: int) -> int:
    """Frames a clip of ``clip_len`` frames taken every ``stride`` frames covers."""
    return (clip_len - 1) * stride + 1


def random_clip(num_frames: int, clip_len: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """One random clip: ``clip_len`` indices ``stride`` apart from a uniformly random start.

    A video shorter than the clip is looped (indices wrap around) so every clip has ``clip_len`` frames.
    """
    span = clip_span(clip_len, stride)
    start = int(rng.integers(0, max(num_frames - span, 0) + 1))
    return (start + np.arange(clip_len) * stride) % num_frames


def uniform_clips(num_frames: int, clip_len: int, stride: int, num_clips: int) -> np.ndarray:
    """``num_clips`` clips with uniformly spaced starts, first at frame 0, last ending at the last frame.

    Returns ``[num_clips, clip_len]`` indices; short videos are looped as in :func:`random_clip`.
    """
    last_start = max(num_frames - clip_span(clip_len, stride), 0)
    starts = np.round(np.linspace(0, last_start, num_clips)).astype(np.int64)
    return (starts[:, None] + np.arange(clip_len)[None, :] * stride) % num_frames


def whole_video(num_frames: int, min_len: int, max_len: int | None = None) -> np.ndarray:
    """Every frame (the release's protocol), looped up to ``min_len`` and cut at ``max_len``."""
    length = max(num_frames, min_len)
    if max_len is not None:
        length = min(length, max_len)
    return np.arange(length) % num_frames


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Starts of the sliding windows that fit in the video (one window at 0 if none does)."""
    return list(range(0, num_frames - window + 1, stride)) or [0]


def crop_boxes(height: int, width: int, size: int, num_crops: int) -> list[tuple[int, int]]:
    """Top-left corners of test crops: 1 = centre; 3 = start, centre and end of the longer side."""
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    top, left = (height - size) // 2, (width - size) // 2
    if num_crops == 1:
        return [(top, left)]
    if width >= height:
        return [(top, 0), (top, left), (top, width - size)]
    return [(0, left), (top, left), (height - size, left)]


def random_crop_box(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly random ``size`` x ``size`` crop."""
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def short_side_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the shorter side is ``short_side``, keeping the aspect ratio."""
    scale = short_side / min(width, height)
    return max(short_side, round(width * scale)), max(short_side, round(height * scale))
