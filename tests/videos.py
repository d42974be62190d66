"""Real encoded test videos whose frames carry their own index (as a uniform grey level)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

#: Grey level of frame i is 16 + (i * LEVEL_STEP) % 216: YUV conversion and compression move a level
#: by up to ~5, so levels 12 apart identify a frame (modulo 18 frames) after decoding.
LEVEL_STEP = 12
LEVELS = 18


def frame_level(index: int) -> int:
    return 16 + (index % LEVELS) * LEVEL_STEP


def decoded_index_mod_levels(mean_level: float) -> int:
    """Which frame (modulo ``LEVELS``) a decoded frame of mean grey ``mean_level`` was."""
    return round((mean_level - 16) / LEVEL_STEP) % LEVELS


def write_video(path: Path, num_frames: int, *, fps: int = 25, width: int = 320, height: int = 240,
                codec: str = "mpeg4", gop: int = 12) -> Path:
    """Write ``num_frames`` uniform grey frames (level ``frame_level(i)``) with PyAV; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = gop
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {}
        for index in range(num_frames):
            pixels = np.full((height, width, 3), frame_level(index), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
