"""The release's sample through TensorFlow and through the converted PyTorch model, side by side.

    python tools/compare_with_tensorflow.py [--checkpoint PREFIX] [--clip GIF|NPY] [--top 20]

What the reference port's ``multi-evaluate.py`` showed, for one TensorFlow checkpoint of the release
(default: ``rgb_scratch`` in ``$I3D_SHARED_DIR``, else ../shared): the checkpoint converted to PyTorch
(i3d_lightning.weights.conversion) and the same checkpoint run by the TensorFlow forward pass the tests
use as their oracle (``tests/tf_reference.py``: the release's Sonnet graph in TensorFlow ops, run in
fp32), both printed in the release's ``evaluate_sample.py`` format, then the largest logit difference
and whether the top classes agree. The clip is the release's preprocessed sample (its GIF render, or
the original ``.npy`` of shape [1, T, 224, 224, C]). Needs the [tf] extra; run from a checkout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: the oracle lives with the tests
from i3d_lightning.data.release_clip import load_input
from i3d_lightning.evaluation.release_sample import format_release_output
from i3d_lightning.hardware import inference_precision
from i3d_lightning.models import InceptionI3d
from i3d_lightning.weights import kinetics_categories
from i3d_lightning.weights.conversion import read_tf_checkpoint
from tests.tf_reference import TFReferenceI3D

SHARED = Path(os.environ.get("I3D_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) / "deepmind-i3d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=SHARED / "checkpoints" / "rgb_scratch" / "model.ckpt",
                        help="a TensorFlow checkpoint prefix of the release")
    parser.add_argument("--clip", type=Path, help="the sample clip (default: the release's, for the stream)")
    parser.add_argument("--top", type=int, default=20, help="classes printed (the release prints 20)")
    args = parser.parse_args()
    state, layout = read_tf_checkpoint(args.checkpoint)
    stream = "rgb" if layout.in_channels == 3 else "flow"
    clip = load_input(args.clip or SHARED / f"v_CricketShot_g04_c01_{stream}.gif", stream)  # [1, C, T, H, W]
    model = InceptionI3d(layout.num_classes, layout.in_channels).eval()
    model.load_state_dict(state)
    with torch.inference_mode(), inference_precision(torch.device("cpu"), "32"):
        ours = model(clip).numpy()[0]
    theirs = TFReferenceI3D(args.checkpoint)(clip.permute(0, 2, 3, 4, 1).numpy())[0]
    categories = kinetics_categories(layout.num_classes)
    for title, logits in (("TensorFlow", theirs), ("PyTorch (converted)", ours)):
        print(f"== {title}: {args.checkpoint.parent.name}, {stream}, clip {tuple(clip.shape)}")
        print(format_release_output(logits, categories, args.top))
        print()
    same = np.array_equal(np.argsort(ours)[::-1][:args.top], np.argsort(theirs)[::-1][:args.top])
    print(f"max |logit difference|: {np.abs(ours - theirs).max():.2e} (largest |logit| {np.abs(theirs).max():.3f})")
    print(f"top {args.top} classes in the same order: {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
