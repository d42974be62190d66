"""How fast the data pipeline delivers 64x224x224 training clips, next to raw decoding and the model, and
what exact frames cost (docs/data.md, "Exact frames").

    python tools/benchmarks/benchmark_data.py [--videos N] [--clips N] [--workers 1 2] [--encodings ...]

Writes N test videos (320x240, 25 fps, textured motion) per encoding to a temporary folder:
* ``mp4_h264``: 10 s MP4/H.264 as x264 encodes by default (B-frames, closed GOPs; Kinetics-like);
* ``avi_mpeg4_bframes``: 7 s AVI/MPEG-4 Part 2 with 2 B-frames (UCF101's XviD family, its length);
* ``mp4_mpeg4``: 10 s MP4/MPEG-4 Part 2 without B-frames (this benchmark's videos before exact frames).
then measures in clips per second, with ``data.decoder=decord`` (decord's seek for every file, the
reading before exact frames) and ``exact`` (the default):
* raw decode: each clip's 64 frames at shorter side 256, nothing else;
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
from i3d_lightning.data.synthetic import render_video
from i3d_lightning.hardware import bf16_is_fast, describe_device
from i3d_lightning.models import InceptionI3d
from i3d_lightning.video import decoding
from i3d_lightning.video.sampling import random_clip, short_side_size

CLIP = 64


#: name -> (suffix, codec, encoder options, mpeg4 B-frames, seconds).
ENCODINGS = {
    "mp4_h264": (".mp4", "libx264", {"crf": "23", "preset": "medium"}, None, 10),
    "avi_mpeg4_bframes": (".avi", "mpeg4", {"qscale": "3"}, 2, 7),
    "mp4_mpeg4": (".mp4", "mpeg4", {"qscale": "3"}, 0, 10),
}


def write_video(path: Path, frames: np.ndarray, encoding: str, fps: int = 25) -> None:
    import av

    _, codec, options, bframes, _ = ENCODINGS[encoding]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.gop_size = 12 if codec == "mpeg4" else 250
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        stream.options = dict(options)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_videos(folder: Path, count: int, encoding: str) -> list[Path]:
    rng = np.random.default_rng(0)
    suffix, *_, seconds = ENCODINGS[encoding]
    paths = []
    for index in range(count):
        frames = render_video(("left", "right")[index % 2], rng, num_frames=25 * seconds, size=320, speed=3)
        path = folder / ("left", "right")[index % 2] / f"video{index}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames[:, 40:280], encoding)
        paths.append(path)
    return paths


def raw_decode(paths: list[Path], clips: int, decoder: str) -> float:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for index in range(clips):
        path = paths[index % len(paths)]
        info = decoding.probe(path, decoder=decoder)
        decoding.read_frames(path, random_clip(info.num_frames, CLIP, 1, rng),
                             size=short_side_size(info.width, info.height, 256), decoder=decoder)
    return clips / (time.perf_counter() - start)


def datamodule_rate(root: Path, workers: int, clips: int, decoder: str, batch_size: int = 4) -> float:
    datamodule = VideoDataModule(Custom(train=str(root), val=str(root)), batch_size=batch_size, num_workers=workers,
                                 train_sampling=ClipSampling(train=True, clip_len=CLIP), check_videos=0,
                                 decoder=decoder)
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
    parser.add_argument("--encodings", nargs="+", choices=sorted(ENCODINGS), default=list(ENCODINGS))
    parser.add_argument("--no-model", action="store_true", help="time the data only")
    args = parser.parse_args()
    print(f"{describe_device('cpu')}, {os.cpu_count()} CPUs; clips of {CLIP}x224x224 from 320x240 25 fps videos")
    rows = []
    for encoding in args.encodings:
        with tempfile.TemporaryDirectory() as tmp:
            paths = make_videos(Path(tmp), args.videos, encoding)
            modes = sorted({decoding.access_mode(path) for path in paths})
            for decoder in ("decord", "exact"):
                label = f"{encoding}, decoder={decoder}" + (f" ({'/'.join(modes)})" if decoder == "exact" else "")
                rows.append((f"{label}: raw decode, 1 process", raw_decode(paths, args.clips, decoder)))
                rows += [(f"{label}: DataModule, {workers} worker{'s' * (workers > 1)}",
                          datamodule_rate(Path(tmp), workers, args.clips, decoder)) for workers in args.workers]
    if not args.no_model:
        rows += [("I3D forward fp32 (batch 1)", model_rate(torch.float32))]
        if bf16_is_fast("cpu"):
            rows += [("I3D forward bf16 autocast (batch 1)", model_rate(torch.bfloat16))]
    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}} {'clips/s':>8}")
    for name, rate in rows:
        print(f"{name:<{width}} {rate:>8.2f}")
    if not args.no_model and not bf16_is_fast("cpu"):
        print("(bf16 not timed: this CPU has no AMX; see tools/benchmarks/benchmark_model.py for its bf16 GEMM rate)")


if __name__ == "__main__":
    main()
