"""The fast inference path: batch norm folded, channels-last-3d, bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from i3d_lightning.data.sample import load_input
from i3d_lightning.models import InceptionI3d
from i3d_lightning.models.inference import autocast, fold_batch_norm, optimize_for_inference, prepare_input

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def rgb_scratch_model(rgb_scratch_state) -> InceptionI3d:
    model = InceptionI3d().eval()
    model.load_state_dict(rgb_scratch_state)
    return model


@pytest.fixture(scope="module")
def inputs(release_dir) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    clips = {"sample": load_input(release_dir / "v_CricketShot_g04_c01_rgb.gif", "rgb")}
    for index in range(3):
        clips[f"random{index}"] = torch.rand(1, 3, 16, 224, 224, generator=generator) * 2 - 1
    return clips


def _logits(model, clip, *, fast: bool, precision: str) -> torch.Tensor:
    with torch.inference_mode(), autocast(CPU, precision):
        return model(prepare_input(clip, fast)).float()


def test_folding_removes_batch_norm_and_keeps_fp32_logits(rgb_scratch_model, inputs):
    folded = fold_batch_norm(rgb_scratch_model)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in rgb_scratch_model.modules())  # original untouched
    fast = optimize_for_inference(rgb_scratch_model, fast=True)
    assert fast.blocks.Conv3d_1a_7x7.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    for name, clip in inputs.items():
        plain = _logits(rgb_scratch_model, clip, fast=False, precision="32")
        quick = _logits(fast, clip, fast=True, precision="32")
        assert (plain - quick).abs().max() <= 1e-4, name


def test_bf16_keeps_the_top1(rgb_scratch_model, inputs):
    fast = optimize_for_inference(rgb_scratch_model, fast=True)
    errors = {}
    for name, clip in inputs.items():
        reference = _logits(rgb_scratch_model, clip, fast=False, precision="32")
        bf16 = _logits(fast, clip, fast=True, precision="bf16")
        assert bf16.argmax() == reference.argmax(), name
        errors[name] = float((bf16 - reference).abs().max())
    # bf16 keeps 8 bits of mantissa: errors of a few tenths on logits of ~10-20, never more.
    assert 0 < max(errors.values()) < 1.0, errors
