"""Precision that says what it does: ``32`` is IEEE fp32 for convolutions and matrix products on every
device (PyTorch's cuDNN default is TF32), ``tf32`` is an explicit opt-in, and the library restores the
process's own settings afterwards. Checked on the CPU through the backend switches themselves, which
PyTorch exposes (and lets a test set) without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i3d_lightning.errors import UserInputError
from i3d_lightning.evaluation.release_sample import evaluate_sample
from i3d_lightning.hardware import check_inference_precision, float32_mode, float32_settings, inference_precision
from i3d_lightning.models import InceptionI3d
from i3d_lightning.models.inference import check_fast_path
from tests.conftest import IEEE, float32_settings_at_each_convolution

TF32_ON_CUDA = IEEE | {"cudnn.conv": "tf32", "cudnn.rnn": "tf32", "cuda.matmul": "tf32", "mkldnn.matmul": "tf32",
                       "matmul_precision": "high"}


def test_float32_mode_sets_every_switch_and_restores_the_users(user_float32_flags):
    with float32_mode("ieee"):
        assert float32_settings() == IEEE
    assert float32_settings() == user_float32_flags
    with float32_mode("tf32"):
        assert float32_settings() == TF32_ON_CUDA  # CPU convolutions stay IEEE
    with pytest.raises(RuntimeError, match="inside"), float32_mode("ieee"):
        raise RuntimeError("inside")
    assert float32_settings() == user_float32_flags  # restored after an error too
    assert user_float32_flags["matmul_precision"] == "medium" and user_float32_flags["cudnn.conv"] == "tf32"
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32  # older API reads still work


def test_inference_precision_bf16_autocasts_and_keeps_the_rest_ieee(user_float32_flags):
    with inference_precision(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert float32_settings() == IEEE
    with inference_precision(torch.device("cpu"), "32"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(UserInputError, match="choose one of 32, tf32, bf16"):
        check_inference_precision("16", torch.device("cpu"))


def test_sample_evaluation_runs_the_network_in_the_precision_asked(tmp_path, weights_cache,
                                                                     user_float32_flags):
    clip = np.random.default_rng(0).uniform(-1, 1, (1, 9, 193, 193, 3)).astype(np.float32)
    np.save(tmp_path / "clip.npy", clip)
    results = {}
    for precision in ("32", "tf32"):  # TF32 is a CUDA mode: on the CPU, tf32 runs IEEE fp32 too
        with float32_settings_at_each_convolution() as seen:
            results[precision], _ = evaluate_sample(["rgb"], {"rgb": "rgb_scratch"}, {"rgb": tmp_path / "clip.npy"},
                                                    precision=precision, fast=True)
        assert seen and all(settings == IEEE for settings in seen)
        assert float32_settings() == user_float32_flags
    np.testing.assert_array_equal(results["32"], results["tf32"])
    with inference_precision(torch.device("cuda"), "tf32"):  # a CUDA device is not needed to set its switches
        assert float32_settings() == TF32_ON_CUDA


def test_fast_path_check_compares_against_ieee_fp32(user_float32_flags):
    model = InceptionI3d(7, 3).eval()
    clip = torch.rand(1, 3, 9, 193, 193) * 2 - 1
    with float32_settings_at_each_convolution() as seen:
        (check,) = check_fast_path(model, {"random": clip}, precisions=("32",))
    assert seen and all(settings == IEEE for settings in seen)
    assert check.max_abs_difference < 1e-4 and float32_settings() == user_float32_flags
