"""Videos per second of the whole FVD tool (decode, TF1 resize, embed), and what TF32 and bf16 do to FVD.

    python tools/benchmarks/benchmark_fvd.py [--videos 256] [--frames 16] [--size 128] [--precisions 32 tf32 bf16]
        [--format mp4|png|npy] [--workers N] [--batch-size B] [--devices 1] [--mirror DIR]

Writes ``--videos`` "real" videos (textures panning, ``--size`` square; ``--format``: MPEG-4 files at
25 fps, folders of PNG frames, or arrays) and as many "fake" ones (the same frames with noise and a
blur) to a temporary folder, then runs what ``i3d-fvd REAL FAKE`` runs (Lightning's predict loop
over both sides, ``--workers`` decoding processes, ``--batch-size`` clips per network call) once per
precision, and prints for each: videos/s over both sides, FVD, KVD, for tf32 and bf16 the change of
FVD and the largest change of an embedding against IEEE fp32, and the videos/s of the embedding alone
(resize + network on clips already on the device, same batch) for comparison. bf16 runs only where
it is fast (a GPU with bf16, a CPU with AMX) unless ``--force-bf16``: elsewhere it is emulated, ~100x
slower.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from i3d_lightning.data.synthetic import render_video, write_mp4
from i3d_lightning.fvd.distance import frechet_distance, kernel_distance
from i3d_lightning.fvd.embedding import VideoEmbedder
from i3d_lightning.fvd.inputs import ClipProtocol, ClipSource
from i3d_lightning.fvd.run import EmbeddingLoop, embed_side
from i3d_lightning.hardware import INFERENCE_PRECISIONS, bf16_is_fast, describe_device, resolve_device
from i3d_lightning.runtime.video_inference import InferenceOptions, default_batch_size
from i3d_lightning.weights import WeightsSource, i3d


def write_videos(root: Path, count: int, frames: int, size: int, file_format: str) -> tuple[Path, Path]:
    """``root/real`` and ``root/fake``, ``count`` videos each in ``file_format`` (``mp4``, ``png``: a
    folder of frame folders, ``npy``: one array per side); the fake ones are noisy, blurred copies."""
    rng = np.random.default_rng(0)
    sides: dict[str, list[np.ndarray]] = {"real": [], "fake": []}
    for index in range(count):
        real = render_video(("left", "right", "up", "down")[index % 4], rng, num_frames=frames, size=size, speed=3)
        noisy = real.astype(np.float32) + rng.normal(0, 25, real.shape)
        blurred = (noisy + np.roll(noisy, 1, 1) + np.roll(noisy, 1, 2)) / 3
        sides["real"].append(real)
        sides["fake"].append(np.clip(blurred, 0, 255).astype(np.uint8))
    for side, videos in sides.items():
        if file_format == "npy":
            np.save(root / f"{side}.npy", np.stack(videos))
            continue
        for index, video in enumerate(videos):
            if file_format == "mp4":
                (root / side).mkdir(exist_ok=True)
                write_mp4(root / side / f"video{index:04d}.mp4", video, fps=25)
            else:
                (root / side / f"video{index:04d}").mkdir(parents=True)
                for t, frame in enumerate(video):
                    Image.fromarray(frame).save(root / side / f"video{index:04d}" / f"{t:05d}.png")
    suffix = ".npy" if file_format == "npy" else ""
    return root / f"real{suffix}", root / f"fake{suffix}"


def network_alone(embedder: VideoEmbedder, frames: int, size: int, device: str, repeats: int = 3) -> float:
    """Videos/s of ``embedder`` (TF1 resize, scaling, network) on uint8 videos already on ``device``,
    ``embedder.batch_size`` per call: what the end-to-end rate is measured against."""
    videos = torch.randint(0, 256, (embedder.batch_size, frames, size, size, 3), dtype=torch.uint8, device=device)
    embedder(videos)  # warm-up (cuDNN picks its algorithms)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        embedder(videos)
    if device == "cuda":
        torch.cuda.synchronize()
    return repeats * embedder.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=256, help="videos per side")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128, help="frame height and width of the videos")
    parser.add_argument("--format", choices=("mp4", "png", "npy"), default="mp4",
                        help="MPEG-4 files, folders of PNG frames, or one array per side")
    parser.add_argument("--precisions", nargs="+", choices=INFERENCE_PRECISIONS, default=["32", "bf16"])
    parser.add_argument("--batch-size", type=int, help="clips per network call (default: 32 on a GPU, 8 on the CPU)")
    parser.add_argument("--force-bf16", action="store_true", help="time bf16 even where it is emulated")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--devices", default="1")
    parser.add_argument("--mirror", help="local copy of the release's data/ folder (see README)")
    args = parser.parse_args()
    device = resolve_device("auto").type
    batch_size = args.batch_size or default_batch_size(device)
    print(f"{describe_device(device)}, {os.cpu_count()} CPUs, {args.workers} decoding workers, batch {batch_size}; "
          f"{args.videos} + {args.videos} videos ({args.format}) of {args.frames} frames {args.size}x{args.size}, "
          "one clip each")
    model = i3d(weights="rgb_scratch", source=WeightsSource(mirror=args.mirror))
    protocol = ClipProtocol(frames=args.frames)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = write_videos(Path(tmp), args.videos, args.frames, args.size, args.format)
        for precision in args.precisions:
            if precision == "bf16" and not (bf16_is_fast(device) or args.force_bf16):
                print("bf16: not run, bf16 is emulated on this device (give --force-bf16 to run it anyway)")
                continue
            embedder = VideoEmbedder(model, batch_size=batch_size, precision=precision)
            trainer, module = InferenceOptions(devices=args.devices).trainer(), EmbeddingLoop(embedder)
            start = time.perf_counter()
            sides = [embed_side(ClipSource(path, protocol), trainer, module, workers=args.workers)
                     for path in (real, fake)]
            seconds = time.perf_counter() - start
            alone = network_alone(embedder.to(device), args.frames, args.size, device)
            results[precision] = sides
            fvd = frechet_distance(sides[0].statistics, sides[1].statistics)
            kvd = kernel_distance(sides[0].embeddings, sides[1].embeddings)
            line = (f"precision {precision:>4}: {2 * args.videos / seconds:8.2f} videos/s ({seconds:.1f} s; "
                    f"embedding alone {alone:.2f} videos/s, {2 * args.videos / seconds / alone:.0%} of it)   "
                    f"FVD {fvd:.6f}   KVD {kvd:.6f}")
            if precision != "32" and "32" in results:  # tf32 or bf16 against IEEE fp32
                reference = frechet_distance(results["32"][0].statistics, results["32"][1].statistics)
                change = max(float((one.embeddings - base.embeddings).abs().max() / base.embeddings.abs().max())
                             for one, base in zip(sides, results["32"], strict=True))
                line += (f"   FVD change vs fp32 {(fvd - reference) / reference:+.2e}, "
                         f"largest embedding change {change:.2e}")
            print(line)


if __name__ == "__main__":
    main()
