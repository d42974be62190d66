"""Writing TV-L1 flow the way the release did: flow_x/flow_y JPEGs per video, one resumable folder each.

Per video: frames resampled to ``fps`` and resized so the shorter side is ``short_side``, turned to
greyscale; TV-L1 between consecutive frames (``flow_of_pairs``: :func:`torch_pairs`, our
:mod:`~i3d_lightning.flow.tvl1`, or :func:`opencv_pairs`, OpenCV's); flow clipped to [-20, 20] and
stored as 0..255 JPEGs (:mod:`~i3d_lightning.flow.stored` reads them back).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from i3d_lightning.errors import UserInputError
from i3d_lightning.flow.stored import flow_file, flow_to_pixels
from i3d_lightning.flow.tvl1 import grey_from_rgb, tvl1_flow_in_batches
from i3d_lightning.video import decoding
from i3d_lightning.video.sampling import resample_indices, short_side_size

#: Frames decoded at a time: bounds memory for long videos.
CHUNK = 128


def video_id(path: Path, root: Path, layout: str) -> str:
    return path.stem if layout == "stem" else str(path.relative_to(root).with_suffix(""))


def compute_flow(path: Path, out: Path, fps: float | None, short_side: int, flow_of_pairs,
                 on_frames: Callable[[int], None] | None = None, *, pairs_per_write: int = 8,
                 on_total: Callable[[int], None] | None = None) -> int:
    """Write the flow JPEGs of ``path`` into the folder ``out``; returns the number of flow frames.
    ``flow_of_pairs(first, second)``: uint8 greyscale ``[N, H, W]`` pairs -> ``[N, H, W, 2]`` pixels,
    called on ``pairs_per_write`` pairs at a time, whose flow is written before the next call;
    ``on_total(n)`` is told how many flow frames the video will have, and ``on_frames(n)`` each time ``n``
    more are written (a long video's progress moves every few pairs, not once per decoded chunk)."""
    info = decoding.probe(path)
    frames = resample_indices(info.num_frames, info.fps, fps)
    size = short_side_size(info.width, info.height, short_side)
    if on_total is not None:
        on_total(max(0, len(frames) - 1))
    previous = None
    written = 0
    # One decoder through the whole video, CHUNK frames at a time (a read per chunk would decode an AVI
    # with B-frames from its start each time).
    for rgb in decoding.iter_frames(path, frames, chunk=CHUNK, size=size):
        grey = grey_from_rgb(torch.from_numpy(rgb))
        if previous is not None:
            grey = torch.cat([previous, grey])
        for start in range(0, len(grey) - 1, pairs_per_write):
            part = grey[start:start + pairs_per_write + 1]
            for flow in flow_of_pairs(part[:-1], part[1:]):
                quantized = flow_to_pixels(flow).numpy()
                for axis, channel in (("x", 0), ("y", 1)):
                    Image.fromarray(quantized[..., channel]).save(flow_file(out, axis, written), quality=95)
                written += 1
            if on_frames is not None:
                on_frames(len(part) - 1)
        previous = grey[-1:]
    if written == 0:
        raise UserInputError(f"{path}: fewer than two frames, no flow")
    return written


def opencv_pairs():
    """OpenCV's TV-L1, one pair at a time (the release's tool)."""
    import cv2

    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()

    def flow_of_pairs(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.from_numpy(tvl1.calc(a.numpy(), b.numpy(), None))
                            for a, b in zip(first, second, strict=True)])
    return flow_of_pairs


def torch_pairs(batch: int, device: torch.device):
    """Our TV-L1, ``batch`` pairs at a time on ``device``."""
    def flow_of_pairs(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return tvl1_flow_in_batches(first.to(device), second.to(device), batch).cpu()
    return flow_of_pairs


def write_flow_folder(path: Path, target: Path, fps: float | None, short_side: int, flow_of_pairs,
                      on_frames: Callable[[int], None] | None = None, **progress: object) -> None:
    """:func:`compute_flow` into ``target``, written under a temporary name and renamed when complete, so
    that an existing ``target`` is always a finished video (a later run skips it); nothing is left on failure.
    ``progress``: :func:`compute_flow`'s ``pairs_per_write`` and ``on_total``."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        compute_flow(path, partial, fps, short_side, flow_of_pairs, on_frames, **progress)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(target)
