"""How fast the data pipeline delivers 64x224x224 training clips, next to raw decoding and the model.

    python benchmarks/benchmark_data.py [--videos N] [--clips N] [--workers 1 2]

Writes N test videos (10 s, 320x240, 25 fps, MPEG-4 Part 2, textured motion) to a temporary folder, then
measures in clips per second:
* raw decode: decord decoding of each clip's 64 frames at shorter side 256, nothing else;
* the DataModule: VideoDataModule training batches (decode + random crop 224 + flip + scaling,
  collation) with each number of workers;
* the model: an I3D forward pass on one 64x224x224 clip, fp32 and bf16 autocast, on this machine.
The pipeline keeps up when its clips/s is above the model's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from i3d_lightning.data.clip_dataset import ClipSampling
from i3d_lightning.data.datamodule import VideoDataModule
from i3d_lightning.data.dataset_configs import Custom
from i3d_lightning.data.synthetic import render_video, write_mp4
from i3d_lightning.hardware import bf16_is_fast, describe_device
from i3d_lightning.models import InceptionI3d
from i3d_lightning.video import decoding
from i3d_lightning.video.sampling import random_clip, short_side_size

CLIP = 64


def make_videos(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        frames = render_video(("left", "right")[index % 2], rng, num_frames=250, size=320, speed=3)[:, 40:280]
        path = folder / ("left", "right")[index % 2] / f"video{index}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(path, frames, fps=25)
        paths.append(path)
    return paths


def raw_decode(paths: list[Path], clips: int) -> float:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for index in range(clips):
        path = paths[index % len(paths)]
        info = decoding.probe(path)
        decoding.read_frames(path, random_clip(info.num_frames, CLIP, 1, rng),
                             size=short_side_size(info.width, info.height, 256))
    return clips / (time.perf_counter() - start)


def datamodule_rate(root: Path, workers: int, clips: int, batch_size: int = 4) -> float:
    datamodule = VideoDataModule(Custom(train=str(root), val=str(root)), batch_size=batch_size, num_workers=workers,
                                 train_sampling=ClipSampling(train=True, clip_len=CLIP), check_videos=0)
    datamodule.setup("fit")
    datamodule.datasets["train"].records *= max(1, clips // len(datamodule.datasets["train"].records) + 2)
    loader = iter(datamodule.train_dataloader())
    next(loader)  # workers started, first batch out
    delivered, start = 0, time.perf_counter()
    while delivered < clips:
        delivered += next(loader)["size"]
    return delivered / (time.perf_counter() - start)


def model_rate(dtype: torch.dtype, repeats: int = 2) -> float:
    model = InceptionI3d().eval()
    clip = torch.rand(1, 3, CLIP, 224, 224) * 2 - 1
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        model(clip)
        start = time.perf_counter()
        for _ in range(repeats):
            model(clip)
    return repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"{describe_device('cpu')}, {os.cpu_count()} CPUs; clips of {CLIP}x224x224 from 320x240 25 fps "
          f"MPEG-4 videos")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp), args.videos)
        rows = [("raw decode (decord, 1 process)", raw_decode(paths, args.clips))]
        rows += [(f"DataModule, {workers} worker{'s' * (workers > 1)}", datamodule_rate(Path(tmp), workers, args.clips))
                 for workers in args.workers]
    rows += [("I3D forward fp32 (batch 1)", model_rate(torch.float32))]
    if bf16_is_fast("cpu"):
        rows += [("I3D forward bf16 autocast (batch 1)", model_rate(torch.bfloat16))]
    print(f"{'what':<38} {'clips/s':>8}")
    for name, rate in rows:
        print(f"{name:<38} {rate:>8.2f}")
    if not bf16_is_fast("cpu"):
        print("(bf16 not timed: this CPU has no AMX; see benchmarks/benchmark_model.py for its bf16 GEMM rate)")


if __name__ == "__main__":
    main()
