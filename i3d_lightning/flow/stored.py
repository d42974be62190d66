"""Precomputed TV-L1 optical flow stored the common way: per video a folder of greyscale JPEGs
``flow_x_00001.jpg``, ``flow_y_00001.jpg``, ... (1-based), pixel 0..255 mapping flow -20..20 pixels.

Flow frame ``i`` (0-based) is the motion from frame ``i`` to ``i + 1`` of the video resampled to the
dataset's frame rate, so it lines up with rgb frame ``i``. The model input is flow / 20, in [-1, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from i3d_lightning.errors import UserInputError
from i3d_lightning.preprocessing import FLOW_BOUND, to_model_range_


class FlowReadError(UserInputError):
    """A flow folder is missing, incomplete or holds unreadable images."""


def flow_file(folder: Path, axis: str, index: int) -> Path:
    """Path of the ``axis`` ("x" or "y") JPEG of 0-based flow frame ``index``."""
    return folder / f"flow_{axis}_{index + 1:05d}.jpg"


def count_flow_frames(folder: str | os.PathLike) -> int:
    """Number of flow frames in ``folder`` (pairs of x and y images)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FlowReadError(f"{folder}: flow folder not found")
    count = sum(1 for name in os.listdir(folder) if name.startswith("flow_x_") and name.endswith(".jpg"))
    if count == 0:
        raise FlowReadError(f"{folder}: no flow_x_*.jpg images")
    return count


def flow_to_pixels(flow: torch.Tensor) -> torch.Tensor:
    """Flow in pixels -> uint8 JPEG values (clipped to +-20, 0..255)."""
    scaled = (flow.clamp(-FLOW_BOUND, FLOW_BOUND) + FLOW_BOUND) * (255 / (2 * FLOW_BOUND))
    return scaled.round_().to(torch.uint8)


def read_flow(folder: str | os.PathLike, indices: np.ndarray | list[int]) -> torch.Tensor:
    """Flow frames ``indices`` of ``folder`` as float32 ``[T, H, W, 2]`` (x, y) in [-1, 1]."""
    folder = Path(folder)
    unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
    frames = []
    for index in unique.tolist():
        pair = []
        for axis in ("x", "y"):
            path = flow_file(folder, axis, index)
            try:
                with Image.open(path) as image:
                    pair.append(np.asarray(image.convert("L")))
            except (OSError, ValueError) as error:
                raise FlowReadError(f"{path}: cannot read flow image ({error})") from error
        if pair[0].shape != pair[1].shape:
            raise FlowReadError(f"{folder}: flow_x and flow_y of frame {index + 1} differ in size")
        frames.append(np.stack(pair, axis=-1))
    pixels = np.stack(frames)[inverse]
    return to_model_range_(torch.from_numpy(pixels.astype(np.float32)), 0.0, 255.0)
