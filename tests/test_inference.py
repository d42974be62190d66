"""The fast inference path: batch norm folded, space-to-depth stem, shifted max-pools, channels-last-3d,
bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from i3d_lightning.data.sample import load_input
from i3d_lightning.models import InceptionI3d
from i3d_lightning.models.i3d import MaxPool3dSame, Unit3D
from i3d_lightning.models.inference import (
    ShiftedMaxPool3dSame,
    SpaceToDepthStem,
    autocast,
    fold_batch_norm,
    optimize_for_inference,
    prepare_input,
)

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
    assert isinstance(fast.blocks.Conv3d_1a_7x7, SpaceToDepthStem)
    assert isinstance(fast.blocks.Mixed_3b.branch3[0], ShiftedMaxPool3dSame)
    assert fast.blocks.Conv3d_2c_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
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


# Even and odd sizes give different SAME paddings (before/after), and flow has 2 channels.
STEM_INPUTS = [(1, 3, 9, 31, 30), (2, 3, 12, 33, 34), (1, 2, 11, 29, 32)]


@pytest.mark.parametrize("shape", STEM_INPUTS)
def test_space_to_depth_stem_computes_the_stride_2_convolution(shape):
    generator = torch.Generator().manual_seed(1)
    unit = Unit3D(shape[1], 64, (7, 7, 7), (2, 2, 2)).eval()
    for tensor in (unit.conv.weight, unit.bn.running_mean, unit.bn.bias):
        tensor.data.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    folded = fold_batch_norm(torch.nn.Sequential(unit))[0]
    stem = SpaceToDepthStem(folded)
    clip = torch.rand(shape, generator=generator) * 2 - 1
    with torch.inference_mode():
        expected, got = unit(clip), stem(clip)
        assert got.shape == expected.shape == (shape[0], 64, *[(n + 1) // 2 for n in shape[2:]])
        assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()  # fp32 summation order
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert stem.space_to_depth(clip).dtype == torch.bfloat16  # built in the autocast dtype
            low = stem(clip).float()
    assert (low - expected).abs().max() <= 0.05 * expected.abs().max()


# I3D's four pools, and one with wider kernels and strides than any of them.
@pytest.mark.parametrize(("kernel", "stride"), [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)),
                                                ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (1, 1, 1)),
                                                ((5, 1, 4), (2, 3, 1))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shifted_max_pool_equals_the_max_pool(kernel, stride, dtype):
    generator = torch.Generator().manual_seed(2)
    pool = MaxPool3dSame(kernel, stride)
    shifted = ShiftedMaxPool3dSame(pool)
    for size in ((8, 9, 10), (7, 12, 11), (1, 2, 3)):
        # Negative values everywhere: a zero-padded pool would be caught.
        clip = (-torch.rand(2, 5, *size, generator=generator) - 0.1).to(dtype)
        for layout in (torch.contiguous_format, torch.channels_last_3d):
            clip = clip.contiguous(memory_format=layout)
            assert torch.equal(shifted(clip), pool(clip)), (size, layout)
