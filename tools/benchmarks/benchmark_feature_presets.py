"""Hours of compute per hour of video for each action-localization feature preset, with flow computed on
the fly, and how much of it is the flow.

    python tools/benchmarks/benchmark_feature_presets.py [--seconds 2] [--presets thumos14 activitynet]
        [--crops 1 10] [--device auto|cpu|cuda]

Runs the extraction of ``i3d-extract-features --preset P --crops C`` (:func:`i3d_lightning.features.run.extract`,
one process, decoding in it) end to end (decoding, TV-L1 flow, both towers, the
files) on a THUMOS14-like video: the release's sample clip (its frames looped) scaled to 320x240 and
encoded at 30 fps, ``--seconds`` long. The towers have random weights (their values do not change the
speed; the flow checkpoints need not be downloaded). The time inside the flow computation and inside
the network calls is measured in the same run, by wrapping the two functions that do them. A hour of
video at 30 fps is 108,000 frames: the rates below scale to it linearly (every part of the work is per
frame or per window).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchmark_flow import default_clip  # beside this script: the release's sample clip in shared/

from i3d_lightning.data.annotations import video_files
from i3d_lightning.data.release_clip import read_gif
from i3d_lightning.data.synthetic import write_mp4
from i3d_lightning.features.extraction import FeatureExtractor
from i3d_lightning.features.presets import FEATURE_PRESETS
from i3d_lightning.features.run import extract_features
from i3d_lightning.features.settings import ExtractionSettings
from i3d_lightning.flow.online import OnlineFlow
from i3d_lightning.hardware import describe_device, resolve_device
from i3d_lightning.models import InceptionI3d
from i3d_lightning.runtime.video_inference import InferenceOptions
from i3d_lightning.weights.loading import save_state_dict

FPS = 30


def thumos_like_video(path: Path, seconds: float) -> Path:
    """The sample clip's frames, looped to ``seconds`` at 30 fps and scaled to 320x240."""
    frames = torch.from_numpy(read_gif(default_clip())).permute(0, 3, 1, 2).float()
    frames = F.interpolate(frames, size=(240, 320), mode="bilinear", align_corners=False, antialias=True)
    frames = frames.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    count = round(seconds * FPS)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames[np.arange(count) % len(frames)], FPS)
    return path


@contextlib.contextmanager
def timed(owner: type, name: str, totals: dict[str, float], device: torch.device) -> Iterator[None]:
    """Add the time spent in ``owner.name`` to ``totals[name]`` (synchronising a CUDA device)."""
    original: Callable = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = original(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        totals[name] += time.perf_counter() - start
        return result

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the test video")
    parser.add_argument("--presets", nargs="+", default=sorted(FEATURE_PRESETS), choices=sorted(FEATURE_PRESETS))
    parser.add_argument("--crops", type=int, nargs="+", default=[1, 10], choices=[1, 10])
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"{describe_device(device)}; a {args.seconds:g} s video of 320x240 at {FPS} fps; flow computed on the fly")
    print(f"{'preset':<12} {'crops':>5} {'wall s':>7} {'flow s':>7} {'network s':>9} {'h per video-h':>13} "
          f"{'flow share':>10}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        thumos_like_video(root / "videos" / "video.mp4", args.seconds)
        weights = {modality: str(save_state_dict(InceptionI3d(400, channels).state_dict(),
                                                 root / f"{modality}.safetensors", {"stream": modality}))
                   for modality, channels in (("rgb", 3), ("flow", 2))}
        for preset in args.presets:
            for crops in args.crops:
                totals = {"model_input": 0.0, "_run": 0.0}
                settings = ExtractionSettings.from_preset(preset, crops=crops, weights=weights)
                with timed(OnlineFlow, "model_input", totals, device), timed(FeatureExtractor, "_run", totals, device):
                    start = time.perf_counter()
                    report = extract_features(video_files(root / "videos"), root / f"{preset}_{crops}",
                                              settings, options=InferenceOptions(devices=1))
                    wall = time.perf_counter() - start
                if len(report.skipped):
                    raise SystemExit(f"{preset} --crops {crops}: the video could not be read")
                flow, network = totals["model_input"], totals["_run"]
                print(f"{preset:<12} {crops:>5} {wall:>7.1f} {flow:>7.1f} {network:>9.1f} "
                      f"{wall / args.seconds:>13.1f} {flow / wall:>10.0%}", flush=True)


if __name__ == "__main__":
    main()
