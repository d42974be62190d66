"""Measure how closely the converted PyTorch I3D matches the TensorFlow graph (fp32 logits).

    python tools/benchmarks/measure_fidelity.py [--shared ../shared]

Converts the rgb_scratch checkpoint of ``shared/`` and runs the same inputs through a TensorFlow
reference forward pass (``tests/tf_reference.py``) and through the PyTorch model: the release's
sample clip (decoded from its GIF render, 79 frames at 224x224) and random inputs of odd sizes.
Prints the maximum absolute logit difference and whether the top-1 classes agree.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from i3d_lightning.data.release_clip import load_input

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: the oracle lives with the tests
from i3d_lightning.hardware import inference_precision
from i3d_lightning.models import InceptionI3d
from i3d_lightning.weights.conversion import read_tf_checkpoint
from tests.tf_reference import TFReferenceI3D

# Inputs whose last feature map is 7x7 (the release graph squeezes it, so it takes no larger ones).
RANDOM_SHAPES = [(1, 17, 193, 211), (2, 16, 224, 224), (1, 9, 193, 193), (1, 31, 224, 200)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("I3D_SHARED_DIR", "../shared")))
    args = parser.parse_args()
    release = args.shared / "deepmind-i3d"
    prefix = release / "checkpoints" / "rgb_scratch" / "model.ckpt"
    state, layout = read_tf_checkpoint(prefix)
    model = InceptionI3d(layout.num_classes, layout.in_channels).eval()
    model.load_state_dict(state)
    reference = TFReferenceI3D(prefix)

    clip = load_input(release / "v_CricketShot_g04_c01_rgb.gif", "rgb")
    inputs = {"sample GIF 79x224x224": clip}
    generator = torch.Generator().manual_seed(0)
    for batch, frames, height, width in RANDOM_SHAPES:
        shape = (batch, 3, frames, height, width)
        inputs[f"random {batch}x{frames}x{height}x{width}"] = torch.rand(shape, generator=generator) * 2 - 1

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; rgb_scratch, fp32")
    print(f"{'input':<26} {'max |dlogit|':>12} {'max |logit|':>11} {'top-1 same':>10} {'torch s':>8} {'tf s':>6}")
    for name, x in inputs.items():
        start = time.perf_counter()
        with torch.inference_mode(), inference_precision(torch.device("cpu"), "32"):
            ours = model(x).numpy()
        torch_seconds = time.perf_counter() - start
        start = time.perf_counter()
        theirs = reference(x.permute(0, 2, 3, 4, 1).numpy())
        tf_seconds = time.perf_counter() - start
        same = bool((ours.argmax(1) == theirs.argmax(1)).all())
        print(f"{name:<26} {np.abs(ours - theirs).max():>12.2e} {np.abs(theirs).max():>11.3f} "
              f"{same!s:>10} {torch_seconds:>8.2f} {tf_seconds:>6.2f}")


if __name__ == "__main__":
    main()
