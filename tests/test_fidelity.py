"""Numerical fidelity: the converted PyTorch I3D against the same checkpoint run with TensorFlow ops.

Target: max |logit difference| <= 1e-4 in fp32 (measured ~1e-5 to 5e-5; tools/benchmarks/measure_fidelity.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i3d_lightning.data.release_clip import load_input
from i3d_lightning.models import InceptionI3d
from i3d_lightning.weights import kinetics_categories
from i3d_lightning.weights.conversion import read_tf_checkpoint
from tests.tf_checkpoints import release_like_variables, write_tf_checkpoint
from tests.tf_reference import TFReferenceI3D

TOLERANCE = 1e-4


def _compare(model: InceptionI3d, reference: TFReferenceI3D, x: torch.Tensor) -> tuple[np.ndarray, float]:
    with torch.inference_mode():
        ours = model(x).numpy()
    theirs = reference(x.permute(0, 2, 3, 4, 1).numpy())
    return ours, float(np.abs(ours - theirs).max())


@pytest.fixture(scope="module")
def rgb_scratch(checkpoints_dir, rgb_scratch_state) -> tuple[InceptionI3d, TFReferenceI3D]:
    model = InceptionI3d().eval()
    model.load_state_dict(rgb_scratch_state)
    return model, TFReferenceI3D(checkpoints_dir / "rgb_scratch" / "model.ckpt")


def test_sample_clip_logits_match_tensorflow(rgb_scratch, release_dir):
    clip = load_input(release_dir / "v_CricketShot_g04_c01_rgb.gif", "rgb")
    assert clip.shape == (1, 3, 79, 224, 224)
    logits, difference = _compare(*rgb_scratch, clip)
    assert difference <= TOLERANCE
    assert kinetics_categories(400)[int(logits.argmax())] == "playing cricket"


@pytest.mark.parametrize("shape", [(1, 3, 17, 193, 211), (2, 3, 9, 193, 193), (1, 3, 20, 224, 201)])
def test_odd_sized_random_inputs_match_tensorflow(rgb_scratch, shape):
    x = torch.rand(shape) * 2 - 1
    _, difference = _compare(*rgb_scratch, x)
    assert difference <= TOLERANCE


def test_flow_checkpoint_layout_matches_tensorflow(tmp_path, release_dir):
    # No flow checkpoint data is available offline: random weights in the release's Flow/ layout.
    prefix = write_tf_checkpoint(tmp_path / "model.ckpt", release_like_variables("Flow/inception_i3d/", 2, 400))
    state, layout = read_tf_checkpoint(prefix)
    assert layout.in_channels == 2
    model = InceptionI3d(400, 2).eval()
    model.load_state_dict(state)
    flow = load_input(release_dir / "v_CricketShot_g04_c01_flow.gif", "flow")[:, :, :24]
    _, difference = _compare(model, TFReferenceI3D(prefix), flow)
    assert difference <= TOLERANCE
