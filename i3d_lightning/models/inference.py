"""A faster I3D for inference: batch norm folded into the convolutions, the stem convolution and the
max-pools rewritten into shapes the CPU runs well, channels-last-3d memory layout, bf16 autocast where
the hardware runs it fast, optionally ``torch.compile``; and the batched run of a network in an inference
precision (``32``: IEEE fp32, ``tf32``, ``bf16``; :func:`~i3d_lightning.hardware.inference_precision`
turns one into backend settings).

Every rewrite computes the same function: folding is exact algebra (``conv(x) * s + b`` with
``s = 1 / sqrt(var + eps)``, ``b = beta - mean * s``), the space-to-depth stem only reorders the sums
of the 7x7x7 convolution, and a max is the same in any order. In fp32 the logits stay within 1e-4 of
the plain model; bf16 moves them further. :func:`check_fast_path` (used by
``tools/benchmarks/measure_fast_path.py`` and the tests) measures both; docs/features.md has the figures.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from i3d_lightning.errors import UserInputError
from i3d_lightning.hardware import INFERENCE_PRECISIONS, inference_precision
from i3d_lightning.models.i3d import InceptionI3d, MaxPool3dSame, Unit3D, shifted_max_pool, tf_same_padding


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


class SpaceToDepthStem(nn.Module):
    """``Conv3d_1a_7x7`` (7x7x7 convolution, stride 2, ``SAME`` padding, bias, ReLU) as a stride-1
    4x4x4 convolution over the input's 2x2x2 blocks.

    With 3 (or 2) input channels the 7x7x7 convolution leaves the CPU's matrix units mostly idle: it
    was a quarter of the network's FLOPs and half of its bf16 time. Moving each 2x2x2 block of the
    padded input into the channels (8C of them) and zero-padding the kernel to 8x8x8 gives the same
    sums in a shape oneDNN runs much faster, although it multiplies 1.5x more zeros (docs/features.md: the
    fast path's figures).
    """

    def __init__(self, unit: Unit3D) -> None:
        super().__init__()
        conv = unit.conv
        if conv.kernel_size != (7, 7, 7) or conv.stride != (2, 2, 2) or conv.bias is None:
            raise ValueError("SpaceToDepthStem rewrites a batch-norm-folded 7x7x7, stride-2 Unit3D")
        out_channels, in_channels = conv.weight.shape[:2]
        # weight[o, c, 2k + d] -> weight[o, (c, d), k] in each of the three dimensions.
        weight = F.pad(conv.weight.detach(), (0, 1) * 3).view(out_channels, in_channels, 4, 2, 4, 2, 4, 2)
        weight = weight.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(out_channels, in_channels * 8, 4, 4, 4)
        self.weight = nn.Parameter(weight.contiguous(), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, 64, ceil(T/2), ceil(H/2), ceil(W/2)]``, after ReLU."""
        return F.relu(F.conv3d(self.space_to_depth(x), self.weight, self.bias), inplace=True)

    @staticmethod
    def space_to_depth(x: torch.Tensor) -> torch.Tensor:
        """The ``SAME``-padded input as blocks: ``[B, 8C, ceil(n/2) + 3 per dimension]``, channels
        ordered (c, dt, dh, dw), in channels-last-3d layout, in the autocast dtype when autocast is on."""
        batch, channels, *size = x.shape
        before = tf_same_padding(size, (7, 7, 7), (2, 2, 2))[-2::-2]  # t, h, w
        blocks = [(n + 1) // 2 + 3 for n in size]  # output o reads blocks o..o+3
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        out = x.new_zeros(batch, *blocks, channels, 2, 2, 2, dtype=dtype)
        frames_last = x.permute(0, 2, 3, 4, 1)  # [B, T, H, W, C]
        for dt, dh, dw in itertools.product(range(2), repeat=3):
            # Padded position p = i + before lands in block p // 2 at offset p % 2.
            first = [(d - b) % 2 for d, b in zip((dt, dh, dw), before, strict=True)]
            source = frames_last[:, first[0]::2, first[1]::2, first[2]::2]
            start = [(i + b) // 2 for i, b in zip(first, before, strict=True)]
            out[:, start[0]:start[0] + source.shape[1], start[1]:start[1] + source.shape[2],
                start[2]:start[2] + source.shape[3], :, dt, dh, dw] = source
        return out.flatten(4).permute(0, 4, 1, 2, 3)


class ShiftedMaxPool3dSame(nn.Module):
    """:class:`MaxPool3dSame` computed as :func:`~i3d_lightning.models.i3d.shifted_max_pool` on every
    device (the plain pool does so on a CPU only): PyTorch's CPU max-pool kernel is slow, in
    channels-last bf16 most of all."""

    def __init__(self, pool: MaxPool3dSame) -> None:
        super().__init__()
        self.kernel_size = pool.kernel_size
        self.stride = pool.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shifted_max_pool(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME"


def optimize_for_inference(model: InceptionI3d, *, fast: bool = True, compile: bool = False) -> nn.Module:
    """The inference model. With ``fast``: batch norm folded, channels-last-3d weights, and for eager
    mode the stem as a :class:`SpaceToDepthStem` and max-pools as :class:`ShiftedMaxPool3dSame`;
    inputs should then be channels-last-3d too (:func:`prepare_input`). With ``compile``, wrapped by
    ``torch.compile``, which writes its own pooling kernels: the two eager rewrites only slowed it
    down (shape-dependent slicing recompiles per block)."""
    if not fast:
        model = model.eval()
    else:
        model = fold_batch_norm(model)
        if not compile:
            model.blocks["Conv3d_1a_7x7"] = SpaceToDepthStem(model.blocks["Conv3d_1a_7x7"])
            for parent in list(model.modules()):
                for name, child in parent.named_children():
                    if isinstance(child, MaxPool3dSame):
                        setattr(parent, name, ShiftedMaxPool3dSame(child))
        model = model.to(memory_format=torch.channels_last_3d)
    return torch.compile(model) if compile else model


def prepare_input(clip: torch.Tensor, fast: bool) -> torch.Tensor:
    """``[B, C, T, H, W]`` in the layout the (fast) model wants."""
    return clip.contiguous(memory_format=torch.channels_last_3d) if fast else clip


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` if it is a usable number of clips per network call, else one line for the user."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"batch size {batch_size}: give at least 1 clip per network call")
    return batch_size


def run_in_batches(network: Callable[[torch.Tensor], torch.Tensor], count: int,
                   inputs: Callable[[slice], torch.Tensor], *, batch_size: int, device: torch.device,
                   precision: str) -> torch.Tensor:
    """``network`` over ``count`` clips in calls of at most ``batch_size``, in ``precision``
    (:func:`~i3d_lightning.hardware.inference_precision`): ``inputs(part)`` makes the network input of
    the clips ``part``, so only one call's float input exists at a time. Returns the outputs
    concatenated, as float32."""
    outputs = []
    with torch.inference_mode(), inference_precision(device, precision):
        for start in range(0, count, batch_size):
            outputs.append(network(inputs(slice(start, min(start + batch_size, count)))).float())
    return torch.cat(outputs)


@dataclass(frozen=True)
class FastPathCheck:
    """How far the fast path's logits on one input are from the plain fp32 model's."""

    input: str
    precision: str
    max_abs_difference: float  # max |logit - plain fp32 logit| over the batch
    max_abs_logit: float  # of the plain fp32 logits, for scale
    top1_margin: float  # plain fp32 top-1 minus top-2 logit (the smallest over the batch)
    top1_equal: bool  # the same top-1 class for every clip of the batch

    @property
    def near_tie(self) -> bool:
        """Whether the error could swap the top two classes: only then can the top-1 change."""
        return self.top1_margin <= 2 * self.max_abs_difference


def check_fast_path(model: InceptionI3d, clips: Mapping[str, torch.Tensor], *,
                    device: torch.device | str = "cpu",
                    precisions: tuple[str, ...] = INFERENCE_PRECISIONS) -> list[FastPathCheck]:
    """Run each ``[B, C, T, H, W]`` clip in [-1, 1] through the plain fp32 ``model`` and through its
    fast path in each of ``precisions``; one :class:`FastPathCheck` per clip and precision."""
    device = torch.device(device)
    model = model.eval().to(device)
    fast = optimize_for_inference(model, fast=True)
    checks = []
    for name, clip in clips.items():
        clip = clip.to(device)
        with torch.inference_mode(), inference_precision(device, "32"):
            reference = model(clip).float()
        top2 = reference.topk(2, dim=1).values
        margin = float((top2[:, 0] - top2[:, 1]).min())
        for precision in precisions:
            with torch.inference_mode(), inference_precision(device, precision):
                logits = fast(prepare_input(clip, True)).float()
            checks.append(FastPathCheck(name, precision, float((logits - reference).abs().max()),
                                        float(reference.abs().max()), margin,
                                        bool(torch.equal(logits.argmax(1), reference.argmax(1)))))
    return checks
