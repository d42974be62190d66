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
