"""Real encoded test videos whose frames carry their own index (as a uniform grey level)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

#: Grey level of frame i is 16 + (i % LEVELS) * LEVEL_STEP: YUV conversion and compression move a
#: level by up to ~5, so levels 12 apart identify a frame (modulo LEVELS) after decoding.
LEVEL_STEP = 12
LEVELS = 18


def frame_level(index: int) -> int:
    return 16 + (index % LEVELS) * LEVEL_STEP


def decoded_index_mod_levels(mean_level: float) -> int:
    """Which frame (modulo ``LEVELS``) a decoded frame of mean grey ``mean_level`` was."""
    return round((mean_level - 16) / LEVEL_STEP) % LEVELS


def write_frames(path: Path, frames: np.ndarray, *, fps: int = 25, codec: str = "mpeg4", gop: int = 12) -> Path:
    """Encode ``[T, H, W, 3]`` uint8 frames with PyAV; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.gop_size = gop
        stream.options = {"qscale": "2"} if codec in ("mpeg4", "mjpeg") else {}
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_video(path: Path, num_frames: int, *, fps: int = 25, width: int = 320, height: int = 240,
                codec: str = "mpeg4", gop: int = 12) -> Path:
    """A video of ``num_frames`` uniform grey frames, frame i at level ``frame_level(i)``."""
    levels = np.array([frame_level(i) for i in range(num_frames)], dtype=np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3))
    return write_frames(path, np.ascontiguousarray(frames), fps=fps, codec=codec, gop=gop)


def horizontal_ramp(width: int, height: int) -> np.ndarray:
    """``[height, width]`` uint8 ramp from 16 (left) to 240 (right)."""
    return np.broadcast_to(np.linspace(16, 240, width).round().astype(np.uint8), (height, width)).copy()
