"""TV-L1 frame pairs per second: OpenCV's DualTVL1OpticalFlow and ours (``i3d_lightning.flow.tvl1``),
in the same run, with the same number of threads.

    python tools/benchmarks/benchmark_flow.py [--frames GIF_OR_VIDEO] [--sizes 224x224 256x340] [--batches 1 8 32]
        [--pairs 32] [--device cpu|cuda]

The frames are consecutive frames of a real clip (default: the release's sample clip, the GIF in
``$I3D_SHARED_DIR/deepmind-i3d``), resized to each size, in greyscale. OpenCV computes the pairs one
after the other (it has no batched form) on the CPU; ours takes them ``--batches`` at a time on
``--device``. Every row is the same ``--pairs`` pairs, so the rows compare like with like.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from i3d_lightning.data.release_clip import read_gif
from i3d_lightning.flow.tvl1 import grey_from_rgb, tvl1_flow
from i3d_lightning.hardware import describe_device, resolve_device
from i3d_lightning.video import decoding


def default_clip() -> Path:
    shared = Path(os.environ.get("I3D_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared"))
    return shared / "deepmind-i3d" / "v_CricketShot_g04_c01_rgb.gif"


def read_rgb(path: Path) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` frames of a GIF or a video."""
    if path.suffix.lower() == ".gif":
        return read_gif(path)
    return decoding.read_frames(path, np.arange(decoding.probe(path).num_frames))


def grey_frames(rgb: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 ``[T, height, width]`` greyscale frames, resized bilinearly."""
    frames = torch.from_numpy(rgb).permute(0, 3, 1, 2).float()
    resized = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return grey_from_rgb(resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))


def opencv_rate(frames: torch.Tensor, pairs: int) -> float | None:
    try:
        import cv2
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    except (ImportError, AttributeError):
        return None
    cv2.setNumThreads(torch.get_num_threads())
    images = frames.numpy()
    start = time.perf_counter()
    for index in range(pairs):
        tvl1.calc(images[index], images[index + 1], None)
    return pairs / (time.perf_counter() - start)


def torch_rate(frames: torch.Tensor, pairs: int, batch: int, device: torch.device) -> float:
    frames = frames.to(device)
    tvl1_flow(frames[:1], frames[1:2])  # warm-up: caches, CUDA kernels
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, pairs, batch):
        last = min(first + batch, pairs)
        tvl1_flow(frames[first:last], frames[first + 1:last + 1])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return pairs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=Path, default=default_clip(), help="a GIF or a video")
    parser.add_argument("--sizes", nargs="+", default=["224x224", "256x340"], help="HxW")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rgb = read_rgb(args.frames)
    if len(rgb) < args.pairs + 1:
        rgb = np.concatenate([rgb] * (args.pairs // len(rgb) + 2))  # long enough, still real frames
    print(f"ours on {describe_device(device)}; OpenCV on {describe_device('cpu')}; {args.pairs} pairs of "
          f"{args.frames.name}")
    print(f"{'size':<9} {'what':<24} {'pairs/s':>8}")
    for size in args.sizes:
        height, width = (int(side) for side in size.split("x"))
        frames = grey_frames(rgb[:args.pairs + 1], height, width)
        rate = opencv_rate(frames, args.pairs)
        print(f"{size:<9} {'OpenCV (CPU)':<24} {rate:>8.2f}" if rate is not None
              else f"{size:<9} {'OpenCV':<24} not installed (pip install opencv-contrib-python-headless)")
        for batch in args.batches:
            rate = torch_rate(frames, args.pairs, batch, device)
            print(f"{size:<9} {f'ours, batch {batch} ({device.type})':<24} {rate:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
