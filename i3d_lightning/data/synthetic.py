"""A small generated dataset of real encoded videos whose class can only be told from motion.

Each video pans a random blocky texture (with a brighter textured square on it) in one of four
directions (the class), wrapping around the frame edges. Any single frame is just a texture: only
the motion between frames gives the class away. Videos are written once (MPEG-4 Part 2 through PyAV)
to ``<root>/<split>/<class>/<class>_NNN.mp4``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

CLASSES = ("left", "right", "up", "down")
_DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
#: Marks a completely written dataset; its content names the generation parameters.
DONE_MARKER = "COMPLETE"
#: Bumped whenever the rendering changes, so that cached datasets are regenerated.
RENDER_VERSION = 2


def _texture(rng: np.random.Generator, height: int, width: int, block: int) -> np.ndarray:
    blocks = rng.integers(0, 256, (height // block + 1, width // block + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)[:height, :width]


def render_video(direction: str, rng: np.random.Generator, *, num_frames: int, size: int, speed: int,
                 block: int = 8) -> np.ndarray:
    """Frames ``[num_frames, size, size, 3]`` uint8 of a texture panning towards ``direction``."""
    texture = _texture(rng, size, size, block)
    square = size // 3
    top, left = rng.integers(0, size - square, 2)
    texture[top:top + square, left:left + square] = 128 + _texture(rng, square, square, block) // 2
    d_row, d_col = _DIRECTIONS[direction]
    return np.stack([np.roll(texture, (d_row * speed * t, d_col * speed * t), axis=(0, 1))
                     for t in range(num_frames)])


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode ``[T, H, W, 3]`` uint8 frames as an MPEG-4 video."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "3"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate(root: str | os.PathLike, *, videos_per_class: dict[str, int], num_frames: int = 40, size: int = 224,
             speed: int = 4, fps: int = 25, seed: int = 0) -> Path:
    """Write the dataset under ``root`` unless it is already complete; returns ``root``.

    ``videos_per_class`` maps a split name to its number of videos per class. The files go to a
    temporary folder first and are moved into place at the end, so an interrupted generation never
    leaves a half-written dataset that looks complete.
    """
    root = Path(root)
    signature = (f"version={RENDER_VERSION} classes={CLASSES} videos={sorted(videos_per_class.items())} "
                 f"frames={num_frames} size={size} speed={speed} fps={fps} seed={seed}\n")
    marker = root / DONE_MARKER
    if marker.is_file() and marker.read_text() == signature:
        return root
    rng = np.random.default_rng(seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for split, count in videos_per_class.items():
            for name in CLASSES:
                folder = staging / split / name
                folder.mkdir(parents=True)
                for index in range(count):
                    frames = render_video(name, rng, num_frames=num_frames, size=size, speed=speed)
                    write_mp4(folder / f"{name}_{index:03d}.mp4", frames, fps)
        (staging / DONE_MARKER).write_text(signature)
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
