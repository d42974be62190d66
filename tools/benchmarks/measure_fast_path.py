"""How far the fast inference path's logits are from the plain fp32 model's, in fp32 and in bf16.

    python tools/benchmarks/measure_fast_path.py [--weights rgb_scratch] [--mirror DIR] [--random 4]
        [--frames 64] [--device auto|cpu|cuda]

Runs the release's sample clip of the weights' stream and ``--random`` random clips (frames x 224 x
224, values in [-1, 1]) through the plain model in fp32, and through the fast path
(``optimize_for_inference``: batch norm folded, space-to-depth stem, shifted max-pools,
channels-last-3d) in fp32 and under bf16 autocast. Prints, per input and precision, the largest
logit difference, the plain model's margin between its top two classes, and whether the top-1 class
is the same; a top-1 can only change where the margin is below twice the difference (a near-tie).
"""

from __future__ import annotations

import argparse
import sys

import torch

from i3d_lightning.cli import run_reporting_errors
from i3d_lightning.data.release_clip import load_input, release_sample
from i3d_lightning.hardware import INFERENCE_PRECISIONS, describe_device, resolve_device
from i3d_lightning.models.i3d import MIN_FRAMES
from i3d_lightning.models.inference import check_fast_path
from i3d_lightning.weights import WeightsSource, i3d

SIZE = 224


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="rgb_scratch", help="registry name or converted file")
    parser.add_argument("--mirror", help="local copy of the release's data/ folder (see README)")
    parser.add_argument("--random", type=int, default=4, help="how many random clips besides the sample")
    parser.add_argument("--frames", type=int, default=64, help=f"frames of each random clip (>= {MIN_FRAMES})")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precisions", nargs="+", choices=INFERENCE_PRECISIONS, default=list(INFERENCE_PRECISIONS),
                        help="fast-path precisions to compare (bf16 is emulated and very slow on CPUs "
                             "without bf16 instructions)")
    args = parser.parse_args(argv)
    if args.frames < MIN_FRAMES:
        parser.error(f"--frames must be at least {MIN_FRAMES}")
    return run_reporting_errors(measure, args)


def measure(args: argparse.Namespace) -> int:
    source = WeightsSource(mirror=args.mirror)
    device = resolve_device(args.device)
    model = i3d(weights=args.weights, source=source)
    stream = "rgb" if model.in_channels == 3 else "flow"
    clips = {f"release sample ({stream})": load_input(release_sample(stream, source), stream)}
    generator = torch.Generator().manual_seed(0)
    for index in range(args.random):
        shape = (1, model.in_channels, args.frames, SIZE, SIZE)
        clips[f"random {index} ({args.frames}x{SIZE}x{SIZE})"] = torch.rand(shape, generator=generator) * 2 - 1

    checks = check_fast_path(model, clips, device=device, precisions=tuple(args.precisions))
    print(f"{args.weights} on {describe_device(device)}; fast path vs plain fp32 model")
    print(f"{'input':<28} {'precision':>9} {'max |dlogit|':>12} {'max |logit|':>11} {'top-1 margin':>12} "
          f"{'top-1 same':>10}")
    for check in checks:
        print(f"{check.input:<28} {check.precision:>9} {check.max_abs_difference:>12.3g} "
              f"{check.max_abs_logit:>11.3f} {check.top1_margin:>12.3f} {check.top1_equal!s:>10}")
    for precision in sorted({check.precision for check in checks}):
        mine = [check for check in checks if check.precision == precision]
        changed = [check for check in mine if not check.top1_equal]
        print(f"{precision}: largest logit difference {max(c.max_abs_difference for c in mine):.3g}; "
              f"top-1 changed on {len(changed)} of {len(mine)} inputs"
              + (f", near-ties: {sum(c.near_tie for c in changed)} of them" if changed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
