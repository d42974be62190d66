"""Export I3D to TorchScript and ONNX and check each export against PyTorch.

    i3d-export OUT_DIR [--stream rgb|flow|joint] [--weights-rgb NAME_OR_FILE]
        [--weights-flow NAME_OR_FILE] [--formats torchscript onnx] [--mirror DIR]
    i3d-export OUT_DIR --checkpoint outputs/.../checkpoints/best.ckpt

Writes ``OUT_DIR/i3d_<stream>.onnx``, ``OUT_DIR/i3d_<stream>.torchscript.pt`` and
``OUT_DIR/i3d_<stream>.json`` (inputs, output, class names and the checks). Inputs: one
``[batch, C, frames, 224, 224]`` float32 clip per modality in [-1, 1] (rgb: 3 channels, flow: 2),
batch and frames dynamic (frames >= 17 for ONNX); output ``logits [batch, classes]`` (joint: the sum
of both streams' logits). Each export is run on the release's sample clip (1 x 79 frames) and on a
random 3 x 17-frame batch; the largest absolute logit difference to PyTorch is printed and must be
within ``--tolerance`` (exit status 1 otherwise).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

from i3d_lightning.atomic_files import write_json
from i3d_lightning.cli import number, run_reporting_errors, writable_folder
from i3d_lightning.data.release_clip import load_input, release_sample
from i3d_lightning.errors import UserInputError
from i3d_lightning.export.formats import FORMATS, MIN_EXPORT_FRAMES, SUFFIXES, export, load_model, max_abs_difference
from i3d_lightning.extras import install_command
from i3d_lightning.models.streams import STREAMS
from i3d_lightning.preprocessing import RELEASE_CROP_SIZE
from i3d_lightning.weights.release import ReleaseFileError, WeightsSource

#: What each format needs beyond the base install (the ``export`` extra).
FORMAT_MODULES = {"torchscript": (), "onnx": ("onnx", "onnxscript", "onnxruntime")}


def check_format_modules(formats: list[str]) -> None:
    """Refuse, before anything is written, formats whose packages are not installed."""
    missing = sorted({module for fmt in formats for module in FORMAT_MODULES[fmt]
                      if importlib.util.find_spec(module) is None})
    if missing:
        raise UserInputError(f"exporting {' and '.join(formats)} needs {', '.join(missing)}: "
                             f"{install_command('export')} (or pass --formats torchscript)")


def sample_clip(modality: str, path: str | None, source: WeightsSource) -> torch.Tensor:
    """The check clip of ``modality``: ``path``, else the release's sample clip."""
    if path:
        return load_input(path, modality)
    try:
        return load_input(release_sample(modality, source), modality)
    except ReleaseFileError as error:
        raise UserInputError(f"{error}\nOr check the export on a clip of your own: --sample-{modality} PATH "
                             f"(.npy, .gif{' or a video' if modality == 'rgb' else ''})") from None


def check_inputs(modalities: tuple[str, ...], samples: dict[str, str | None], source: WeightsSource) -> dict:
    """Named input sets for the checks: the sample clip, and a random batch of the shortest length."""
    sample = tuple(sample_clip(m, samples.get(m), source) for m in modalities)
    frames = min(clip.shape[2] for clip in sample)
    sample = tuple(clip[:, :, :frames] for clip in sample)  # the modalities' clips have one length
    generator = torch.Generator().manual_seed(1)
    size = RELEASE_CROP_SIZE
    random = tuple(torch.rand(3, clip.shape[1], MIN_EXPORT_FRAMES, size, size, generator=generator) * 2 - 1
                   for clip in sample)
    return {f"sample 1x{frames}": sample, f"random 3x{MIN_EXPORT_FRAMES}": random}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i3d-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--stream", choices=sorted(STREAMS), help="default: rgb, or the checkpoint's")
    parser.add_argument("--weights-rgb", default="rgb_imagenet", help="registry name or converted file")
    parser.add_argument("--weights-flow", default="flow_imagenet")
    parser.add_argument("--checkpoint", help="a train.py checkpoint instead of --weights-*")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--sample-rgb", help="check input instead of the release's sample (.npy/.gif/video)")
    parser.add_argument("--sample-flow")
    parser.add_argument("--mirror", help="local copy of the release's data/ folder (see docs/weights.md)")
    parser.add_argument("--tolerance", type=number(0), default=1e-4, help="largest accepted logit difference")
    args = parser.parse_args(argv)
    return run_reporting_errors(export_and_check, args)


def export_and_check(args: argparse.Namespace) -> int:
    source = WeightsSource(mirror=args.mirror, mirror_option="--mirror DIR")
    check_format_modules(args.formats)
    stream = args.stream or (None if args.checkpoint else "rgb")
    print("loading the model ...", flush=True)
    model, classes = load_model(stream, weights={"rgb": args.weights_rgb, "flow": args.weights_flow},
                                checkpoint=args.checkpoint, source=source)
    name = "joint" if len(model.modalities) > 1 else model.modalities[0]
    inputs = check_inputs(model.modalities, {"rgb": args.sample_rgb, "flow": args.sample_flow}, source)
    writable_folder(args.out, "OUT")  # made only now, so that a refusal above leaves nothing behind
    checks: dict[str, dict[str, float]] = {}
    for fmt in args.formats:
        print(f"exporting {fmt} ...", flush=True)
        path = export(model, fmt, args.out / f"i3d_{name}{SUFFIXES[fmt]}")
        print(f"checking {path.name} against PyTorch on {', '.join(inputs)} ...", flush=True)
        checks[fmt] = {label: max_abs_difference(path, fmt, model, clips) for label, clips in inputs.items()}
        print(f"{path}: max |logit difference| to PyTorch " +
              ", ".join(f"{diff:.3g} ({label})" for label, diff in checks[fmt].items()))
    description = {
        "stream": name,
        "source": args.checkpoint or {s: getattr(args, f"weights_{s}") for s in model.modalities},
        "inputs": [{"name": m, "shape": ["batch", model.towers[m].in_channels, "frames", *[RELEASE_CROP_SIZE] * 2],
                    "dtype": "float32", "range": [-1.0, 1.0], "min_frames": MIN_EXPORT_FRAMES}
                   for m in model.modalities],
        "output": {"name": "logits", "shape": ["batch", len(classes)]},
        "classes": classes,
        "checks": {"max_abs_logit_difference": checks, "tolerance": args.tolerance},
    }
    write_json(args.out / f"i3d_{name}.json", description)
    worst = max(diff for results in checks.values() for diff in results.values())
    if not worst <= args.tolerance:  # NaN too
        print(f"error: an export differs from PyTorch by {worst:.3g} > {args.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
