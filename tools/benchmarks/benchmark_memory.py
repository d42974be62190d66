"""Peak memory and time of whole-video work on long videos: feature extraction and flow on videos of 1, 3
and 10 minutes (docs/features.md, "Long videos").

    python tools/benchmarks/benchmark_memory.py --mirror ../shared/deepmind-i3d/checkpoints
        [--minutes 1 3 10] [--runs rgb per_video thumos14 flow] [--flow-short-side 256]

Writes one THUMOS14-like video per length (320x240, 30 fps, H.264 as x264 encodes it with B-frames; a
random texture panning 2 pixels a frame), then runs each command as a process of its own and reads its
peak resident memory from the kernel when it ends (``wait4``'s ``ru_maxrss``: the largest of the
process and the processes it waited for, not their sum) and its wall time:

* ``rgb``: ``i3d-extract-features --stream rgb --weights-rgb rgb_scratch --stride 64 --workers 0``, the
  command the long-video issue measured (1.95 GB for 1 minute, 4.90 GB for 4 before segments);
* ``per_video``: ``i3d-extract-features --stream rgb --weights-rgb rgb_scratch --per-video --workers 0``,
  the network's one pass over the whole video (in tiles since they exist);
* ``thumos14``: ``--preset thumos14`` (joint, TV-L1 flow computed from the video, 16 frames every 4) with
  rgb_scratch and a randomly initialised flow tower (the flow checkpoints are not offline; weights do not
  change memory or time), ``--workers 0``; on a CPU this is about 23 hours per video-hour;
* ``flow``: ``i3d-extract-flow --short-side S`` (TV-L1 flow written as JPEGs, one worker process); TV-L1
  at the release's 256 runs at 1-3 pairs a second on a 2-core CPU, so ``--flow-short-side`` can make
  the frames smaller to see how memory follows the video's length within the hour.

The rgb_scratch weights come from ``--mirror`` (converted into the cache on first use, before any run
is timed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from i3d_lightning.hardware import describe_device, resolve_device
from i3d_lightning.models import InceptionI3d
from i3d_lightning.weights import WeightsSource, stream_towers
from i3d_lightning.weights.loading import save_state_dict

FPS = 30
BIN = Path(sys.executable).parent


def panning_video(path: Path, minutes: float) -> None:
    """A 320x240 random texture sliding right 2 pixels a frame, ``minutes`` long at 30 fps, H.264."""
    import av

    texture = np.random.default_rng(0).integers(0, 256, (30, 80, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for t in range(round(minutes * 60 * FPS)):
            frame = np.roll(texture, 2 * t, axis=1)[:, :320]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def peak_memory_and_time(command: list[str]) -> tuple[float, float]:
    """(peak resident memory in GB, wall seconds) of ``command``, run to its end; it must succeed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr.decode()[-3000:]}")
    return usage.ru_maxrss * 1024 / 1e9, wall  # ru_maxrss is in KiB on Linux


RUNS = ("rgb", "per_video", "thumos14", "flow")


def commands(run: str, video: Path, out: Path, mirror: str, flow_tower: Path, flow_short_side: int) -> list[str]:
    """The command line of ``run`` (see the module) on the folder of ``video``."""
    features = [str(BIN / "i3d-extract-features"), str(video.parent), str(out), "--mirror", mirror, "--workers", "0"]
    if run == "rgb":
        return [*features, "--stream", "rgb", "--weights-rgb", "rgb_scratch", "--stride", "64"]
    if run == "per_video":
        return [*features, "--stream", "rgb", "--weights-rgb", "rgb_scratch", "--per-video"]
    if run == "thumos14":
        return [*features, "--preset", "thumos14", "--weights-rgb", "rgb_scratch", "--weights-flow", str(flow_tower)]
    return [str(BIN / "i3d-extract-flow"), str(video.parent), str(out), "--short-side", str(flow_short_side)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10], help="video lengths")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--flow-short-side", type=int, default=256, help="the flow run's frame size")
    parser.add_argument("--mirror", required=True, help="folder of the release's checkpoints (rgb_scratch)")
    args = parser.parse_args()
    stream_towers(("rgb",), {"rgb": "rgb_scratch"}, source=WeightsSource(mirror=args.mirror))  # into the cache
    print(f"{describe_device(resolve_device('cpu'))}; 320x240 H.264 at {FPS} fps; flow short side "
          f"{args.flow_short_side}")
    print(f"{'run':<9} {'minutes':>7} {'peak RSS GB':>11} {'wall s':>8} {'s per video-minute':>18}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        flow_tower = save_state_dict(InceptionI3d(400, 2).state_dict(), root / "flow.safetensors", {"stream": "flow"})
        for minutes in args.minutes:
            video = root / f"{minutes:g}min" / "video.mp4"
            panning_video(video, minutes)
            for run in args.runs:
                command = commands(run, video, root / f"{run}-{minutes:g}", args.mirror, flow_tower,
                                   args.flow_short_side)
                peak, wall = peak_memory_and_time(command)
                print(f"{run:<9} {minutes:>7g} {peak:>11.2f} {wall:>8.1f} {wall / minutes:>18.1f}", flush=True)


if __name__ == "__main__":
    main()
