"""The fast inference path: batch norm folded, space-to-depth stem, shifted max-pools, channels-last-3d,
bf16 autocast."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from i3d_lightning.data.release_clip import load_input
from i3d_lightning.models import InceptionI3d
from i3d_lightning.models.i3d import MaxPool3dSame, Unit3D, tf_same_padding
from i3d_lightning.models.inference import (
    ShiftedMaxPool3dSame,
    SpaceToDepthStem,
    check_fast_path,
    fold_batch_norm,
    optimize_for_inference,
)
from tests.conftest import run_command


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


@pytest.mark.long(minutes=2)
def test_fast_path_keeps_fp32_logits_and_the_bf16_top1(rgb_scratch_model, inputs):
    fast = optimize_for_inference(rgb_scratch_model, fast=True)
    assert isinstance(fast.blocks.Conv3d_1a_7x7, SpaceToDepthStem)
    assert isinstance(fast.blocks.Mixed_3b.branch3[0], ShiftedMaxPool3dSame)
    assert fast.blocks.Conv3d_2c_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    checks = check_fast_path(rgb_scratch_model, inputs, precisions=("32",))
    # bf16 on one smallest clip, whatever the CPU: emulated where it has no bf16 instructions (about 100x
    # slower), and the suite must not depend on the CPU's ISA; the numerics are the same at any size.
    bf16_inputs = {"random0": inputs["random0"][:, :, :9, :193, :193]}
    checks += check_fast_path(rgb_scratch_model, bf16_inputs, precisions=("bf16",))
    assert [(c.input, c.precision) for c in checks] == ([(name, "32") for name in inputs]
                                                        + [(name, "bf16") for name in bf16_inputs])
    for check in checks:
        if check.precision == "32":
            assert check.max_abs_difference <= 1e-4, check
        # bf16 may swap two classes whose fp32 logits are closer than its error (random noise clips
        # can give such near-ties), nothing else; the sample's margin is 5.
        assert check.top1_equal or (check.near_tie and check.input != "sample"), check
    bf16_errors = [c.max_abs_difference for c in checks if c.precision == "bf16"]
    # bf16 keeps 8 bits of mantissa: errors of a few tenths on logits of ~10-20, never more.
    assert 0 < max(bf16_errors) < 1.0, checks


def test_measure_fast_path_tool_reports_the_precisions_asked(weights_cache, release_dir, capsys, monkeypatch):
    # fp32 only, on every CPU: bf16 is emulated (about 100x slower) without bf16 instructions, and its
    # numerics are checked on a small clip above.
    status, stdout, stderr = run_command("tools/benchmarks/measure_fast_path.py", [
        "--mirror", str(release_dir), "--random", "1", "--frames", "9", "--precisions", "32"], capsys, monkeypatch)
    assert status == 0, stderr
    assert "release sample (rgb)" in stdout and "random 0 (9x224x224)" in stdout
    fp32 = re.search(r"^32: largest logit difference (\S+); top-1 changed on 0 of 2 inputs$", stdout, re.M)
    assert fp32 and float(fp32.group(1)) <= 1e-4, stdout
    assert not re.search(r"^bf16:", stdout, re.M)


def test_folding_removes_batch_norm_and_leaves_the_model_alone(rgb_scratch_model):
    folded = fold_batch_norm(rgb_scratch_model)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in rgb_scratch_model.modules())  # original untouched


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
    # The pool computes shifted maxima where no gradient flows (on a CPU) and PyTorch's max-pool where
    # one does; the fast path's pool always the former. Each equals PyTorch's max-pool of the input
    # padded with -inf as TensorFlow's SAME padding places it.
    generator = torch.Generator().manual_seed(2)
    pool = MaxPool3dSame(kernel, stride)
    shifted = ShiftedMaxPool3dSame(pool)
    for size in ((8, 9, 10), (7, 12, 11), (1, 2, 3)):
        # Negative values everywhere: a zero-padded pool would be caught.
        clip = (-torch.rand(2, 5, *size, generator=generator) - 0.1).to(dtype)
        padded = F.pad(clip.float(), tf_same_padding(size, kernel, stride), value=float("-inf"))
        expected = F.max_pool3d(padded, kernel, stride).to(dtype)
        for layout in (torch.contiguous_format, torch.channels_last_3d):
            clip = clip.contiguous(memory_format=layout)
            assert torch.equal(shifted(clip), expected), (size, layout)
            assert torch.equal(pool(clip), expected), (size, layout)
            trained = clip.detach().requires_grad_()
            pooled = pool(trained)
            pooled.sum().backward()  # the in-place shifted maxima would refuse this
            assert torch.equal(pooled.detach(), expected), (size, layout)
            # Each output's gradient goes to one of the cells of its window.
            assert trained.grad.float().sum().item() == pooled.numel(), (size, layout)
