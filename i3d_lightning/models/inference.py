"""A faster I3D for inference: batch norm folded into the convolutions, channels-last-3d memory
layout, bf16 autocast where the hardware has it, optionally ``torch.compile``.

Folding is exact algebra (``conv(x) * s + b`` with ``s = 1 / sqrt(var + eps)``, ``b = beta - mean * s``);
in fp32 the logits stay within 1e-4 of the plain model. bf16 changes logits by about 1e-1 on a
25-logit scale; ``tools/benchmark_model.py`` and the tests report the error and check the top-1.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from i3d_lightning.models.i3d import InceptionI3d, Unit3D

PRECISIONS = ("32", "bf16")


@torch.no_grad()
def fold_batch_norm(model: InceptionI3d) -> InceptionI3d:
    """A copy of ``model`` (in eval mode) whose Unit3D convolutions absorb their batch norms."""
    folded = copy.deepcopy(model).eval()
    for unit in folded.modules():
        if isinstance(unit, Unit3D) and isinstance(unit.bn, nn.BatchNorm3d):
            bn, conv = unit.bn, unit.conv
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, bias=True)
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1, 1))
            fused.bias.copy_(bn.bias - bn.running_mean * scale)
            unit.conv, unit.bn = fused.to(conv.weight.device), nn.Identity()
    return folded


def optimize_for_inference(model: InceptionI3d, *, fast: bool = True, compile: bool = False) -> nn.Module:
    """The inference model: with ``fast``, batch norm folded and channels-last-3d weights; with
    ``compile``, wrapped by ``torch.compile``. Inputs should then be channels-last-3d too
    (:func:`prepare_input`)."""
    model = fold_batch_norm(model).to(memory_format=torch.channels_last_3d) if fast else model.eval()
    return torch.compile(model) if compile else model


def prepare_input(clip: torch.Tensor, fast: bool) -> torch.Tensor:
    """``[B, C, T, H, W]`` in the layout the (fast) model wants."""
    return clip.contiguous(memory_format=torch.channels_last_3d) if fast else clip


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is worth it here: CUDA with bf16, or a CPU with AVX-512 bf16 / AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast for ``precision="bf16"``, nothing for ``"32"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield
