"""What the choices other FVD ports make do to the value, on the same videos.

    python tools/benchmarks/fvd_choices.py [--videos 8] [--frames 16] [--size 64] [--mirror DIR]

Makes a seeded set of "real" videos (textures panning in random directions) and "fake" ones (the same
with noise and a blur), then computes FVD the reference way and with one choice changed at a time:
PyTorch's half-pixel bilinear resize instead of TF1's, frames rounded to uint8 after the resize, a
biased covariance (divided by n), ``scipy.linalg.sqrtm`` for the square root, and both together (StyleGAN-V's
distance, ``i3d-fvd --covariance biased --square-root scipy``). Prints one line per
variant with its value and its relative difference to the reference. (The embedding checkpoint is the
other usual difference: rgb_imagenet instead of rgb_scratch; it needs the release's rgb_imagenet files.)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from i3d_lightning.fvd.distance import GaussianStatistics, frechet_distance
from i3d_lightning.fvd.embedding import SIZE
from i3d_lightning.fvd.resize import resize_bilinear_tf1
from i3d_lightning.hardware import describe_device
from i3d_lightning.models.inference import optimize_for_inference, prepare_input
from i3d_lightning.preprocessing import to_model_range_
from i3d_lightning.weights import WeightsSource, i3d


def make_videos(count: int, frames: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[count, frames, size, size, 3]`` real videos and their degraded copies."""
    rng = np.random.default_rng(seed)
    real = np.empty((count, frames, size, size, 3), np.uint8)
    for index in range(count):
        texture = rng.integers(0, 256, (size // 4, size // 4, 3)).repeat(8, 0).repeat(8, 1)
        dy, dx = rng.integers(-3, 4, 2)
        for t in range(frames):
            real[index, t] = np.roll(texture, (t * dy, t * dx), axis=(0, 1))[:size, :size]
    noisy = real.astype(np.float32) + rng.normal(0, 25, real.shape)
    blurred = (noisy + np.roll(noisy, 1, 2) + np.roll(noisy, 1, 3)) / 3
    return real, np.clip(blurred, 0, 255).astype(np.uint8)


def embed(network: torch.nn.Module, videos: np.ndarray, resize: str) -> torch.Tensor:
    """rgb_scratch logits averaged over time, with the chosen resize: ``tf1``, ``half_pixel`` or ``tf1_uint8``."""
    x = torch.from_numpy(videos)
    if resize == "half_pixel":
        flat = x.flatten(0, 1).permute(0, 3, 1, 2).float()
        frames = F.interpolate(flat, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        frames = frames.permute(0, 2, 3, 1).reshape(*x.shape[:2], SIZE, SIZE, 3)
    else:
        frames = resize_bilinear_tf1(x, (SIZE, SIZE))
        if resize == "tf1_uint8":
            frames = frames.round().clamp(0, 255)
    clips = to_model_range_(frames.contiguous(), 0.0, 255.0).permute(0, 4, 1, 2, 3)
    with torch.inference_mode():
        return torch.cat([network(prepare_input(clip[None], True)) for clip in clips]).double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8, help="videos per side")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="frame size before the resize to 224")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mirror", help="local copy of the release's data/ folder (see README)")
    args = parser.parse_args()
    network = optimize_for_inference(i3d(weights="rgb_scratch", source=WeightsSource(mirror=args.mirror)).eval())
    real, fake = make_videos(args.videos, args.frames, args.size, args.seed)
    embedded = {resize: (embed(network, real, resize), embed(network, fake, resize))
                for resize in ("tf1", "half_pixel", "tf1_uint8")}

    def fvd(pair: tuple[torch.Tensor, torch.Tensor], **distance: str) -> float:
        real_embeddings, fake_embeddings = pair
        return frechet_distance(GaussianStatistics.from_embeddings(real_embeddings),
                                GaussianStatistics.from_embeddings(fake_embeddings), **distance)

    reference = fvd(embedded["tf1"])
    variants = {
        "reference (TF1 resize, float, unbiased, SVD roots)": reference,
        "PyTorch half-pixel bilinear resize": fvd(embedded["half_pixel"]),
        "frames rounded to uint8 after the resize": fvd(embedded["tf1_uint8"]),
        "biased covariance (divided by n)": fvd(embedded["tf1"], covariance="biased"),
        "scipy.linalg.sqrtm": fvd(embedded["tf1"], square_root="scipy"),
        "StyleGAN-V's distance (biased, scipy.linalg.sqrtm)": fvd(embedded["tf1"], covariance="biased",
                                                                  square_root="scipy"),
    }
    print(f"{describe_device(torch.device('cpu'))}; {args.videos} + {args.videos} videos of {args.frames} frames "
          f"{args.size}x{args.size}, seed {args.seed}")
    for name, value in variants.items():
        print(f"{name:<52} FVD {value:12.6f}   {(value - reference) / reference:+.2e}")


if __name__ == "__main__":
    main()
