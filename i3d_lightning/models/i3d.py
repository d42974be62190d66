"""Inception-v1 I3D ("Quo Vadis, Action Recognition?", Carreira & Zisserman 2017).

The graph reproduces DeepMind's Sonnet model (kinetics-i3d/i3d.py) operation for operation, so that
converted TensorFlow checkpoints give the same logits:

* every convolution and max-pool uses TensorFlow ``SAME`` padding: the output is ``ceil(n / stride)``
  and the padding is split with the extra element *after* the data (PyTorch's ``padding=k // 2`` is
  symmetric and gives different results for even kernels and strided layers);
* max-pool padding never wins a max (TensorFlow ignores padded cells; we pad with ``-inf``);
* batch norm has ``eps=1e-3``, a learned offset (beta) but no learned scale (gamma is fixed to 1),
  and moving statistics with decay 0.999 (PyTorch ``momentum=0.001``);
* the head is a 2x7x7 average pool (VALID, stride 1), dropout, a 1x1x1 convolution with bias and no
  batch norm or ReLU, and the mean of the per-time-step logits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]

@dataclass(frozen=True)
class Conv:
    """A :class:`Unit3D`: convolution with ``out_channels`` filters, batch norm, ReLU."""

    name: str
    out_channels: int
    kernel: Triple = (1, 1, 1)
    stride: Triple = (1, 1, 1)


@dataclass(frozen=True)
class Pool:
    """A :class:`MaxPool3dSame`."""

    name: str
    kernel: Triple
    stride: Triple


@dataclass(frozen=True)
class Mixed:
    """An :class:`InceptionBlock`; ``channels`` of its branches: (branch 0 1x1, branch 1 1x1 reduce,
    branch 1 3x3, branch 2 1x1 reduce, branch 2 3x3, branch 3 1x1)."""

    name: str
    channels: tuple[int, int, int, int, int, int]


#: The backbone, layer by layer, as the release's Sonnet graph builds it (its endpoint names). The
#: network, :data:`ENDPOINTS`, the checkpoint conversion and the TensorFlow reference are built from it.
LAYERS: tuple[Conv | Pool | Mixed, ...] = (
    Conv("Conv3d_1a_7x7", 64, (7, 7, 7), (2, 2, 2)),
    Pool("MaxPool3d_2a_3x3", (1, 3, 3), (1, 2, 2)),
    Conv("Conv3d_2b_1x1", 64),
    Conv("Conv3d_2c_3x3", 192, (3, 3, 3)),
    Pool("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    Mixed("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    Mixed("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    Pool("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    Mixed("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    Mixed("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    Mixed("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    Mixed("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    Mixed("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    Pool("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    Mixed("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    Mixed("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)

#: Endpoints in network order: the layers, then ``Features`` (the average-pooled ``Mixed_5c`` output
#: averaged over time and space: the 1024-d vector the logits layer sees, an addition to the
#: release's list), ``Logits`` and ``Predictions``.
ENDPOINTS: tuple[str, ...] = (*(layer.name for layer in LAYERS), "Features", "Logits", "Predictions")

FEATURE_DIM = 1024
#: Layers with weights (convolutions and mixed blocks; the logits layer is apart): the most blocks
#: ``trainable_blocks`` can name.
LEARNED_BLOCKS = sum(not isinstance(layer, Pool) for layer in LAYERS)
#: The network divides time by 8 and space by 32 before the 2x7x7 average pool, so these are the
#: smallest inputs it can take.
MIN_FRAMES = 9
MIN_SIZE = 193


def tf_same_padding(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> list[int]:
    """TensorFlow ``SAME`` padding of a [..., T, H, W] input, in ``F.pad`` order.

    Returns ``[w_before, w_after, h_before, h_after, t_before, t_after]``; when the total padding of
    a dimension is odd, the extra element goes after the data, as in TensorFlow.
    """
    pads: list[int] = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride), strict=True):
        # In integers, so that symbolic sizes (torch.export's dynamic axes) give simple expressions;
        # the total is negative only if the kernel is smaller than the stride (never in I3D).
        total = (n + s - 1) // s * s - s + k - n
        if k < s:
            total = max(total, 0)
        pads += [total // 2, total - total // 2]
    return pads


def _symmetric(pads: list[int]) -> bool:
    """Whether PyTorch's built-in (symmetric) padding can replace ``F.pad``. Symbolic sizes (an export
    with a dynamic time axis) always take ``F.pad``, which needs no branch on their values."""
    return all(isinstance(p, int) for p in pads) and all(pads[i] == pads[i + 1] for i in range(0, len(pads), 2))


def _shifted_is_faster(x: torch.Tensor) -> bool:
    """Whether :func:`shifted_max_pool` replaces PyTorch's max-pool for ``x``: on a CPU (there ~7x
    faster than PyTorch's kernel on I3D's pools, in fp32 too: ``tools/benchmarks/measure_max_pool.py``),
    where no gradient flows through the pool (it writes in place: evaluation, and the frozen blocks of
    a fine-tuning), and not while the model is traced, compiled or exported (its slicing would be
    baked in at one size)."""
    return (x.device.type == "cpu" and not x.requires_grad and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling() and not torch.compiler.is_exporting())


def shifted_max_pool(x: torch.Tensor, kernel_size: Triple, stride: Triple) -> torch.Tensor:
    """:class:`MaxPool3dSame`'s values (cells outside ``x`` are skipped, as TensorFlow's ``SAME``
    max-pool does), computed one axis at a time as elementwise maxima of shifted views, without the
    ``-inf`` padding copy. ``[B, C, T, H, W]`` in, ``[B, C, ceil(T / st), ceil(H / sh), ceil(W / sw)]``
    out, any dtype and memory layout; in place, so not differentiable."""
    before = tf_same_padding(x.shape[-3:], kernel_size, stride)[-2::-2]  # t, h, w
    for axis, kernel, step, pad in zip((2, 3, 4), kernel_size, stride, before, strict=True):
        x = _axis_max(x, axis, kernel, step, pad)
    return x


def _axis_max(x: torch.Tensor, axis: int, kernel: int, stride: int, before: int) -> torch.Tensor:
    """``out[o] = max(x[o * stride - before + j] for j < kernel)`` along ``axis``, over the indices
    inside ``x``; ``ceil(n / stride)`` outputs."""
    if kernel == 1 and stride == 1:
        return x
    n = x.shape[axis]
    outputs = -(-n // stride)
    every_stride = [slice(None)] * x.dim()
    every_stride[axis] = slice(None, None, stride)
    out = x[tuple(every_stride)].clone()  # offset 0: x[o * stride] exists for every output
    for offset in range(-before, kernel - before):
        # The outputs first..last-1 for which x[o * stride + offset] lies inside x.
        first = max(0, -(offset // stride))
        last = min(outputs, (n - 1 - offset) // stride + 1)
        if offset == 0 or last <= first:
            continue
        values = x.narrow(axis, first * stride + offset, (last - first - 1) * stride + 1)[tuple(every_stride)]
        region = out.narrow(axis, first, last - first)
        torch.maximum(region, values, out=region)
    return out


class MaxPool3dSame(nn.Module):
    """3D max-pool with TensorFlow ``SAME`` padding; padded cells never win the max."""

    def __init__(self, kernel_size: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _shifted_is_faster(x):
            return shifted_max_pool(x, self.kernel_size, self.stride)
        pads = tf_same_padding(x.shape[-3:], self.kernel_size, self.stride)
        if _symmetric(pads):
            # PyTorch's own padding is implicit -inf, and avoids a copy of the activation.
            return F.max_pool3d(x, self.kernel_size, self.stride, padding=tuple(pads[-2::-2]))
        x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool3d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME"


class Unit3D(nn.Module):
    """Convolution (TensorFlow ``SAME``, no bias) -> batch norm without scale -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1)) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.001)
        # Sonnet's BatchNorm in the release has scale=False: gamma is a constant 1, never trained.
        self.bn.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = tf_same_padding(x.shape[-3:], self.conv.kernel_size, self.conv.stride)
        if _symmetric(pads):
            x = F.conv3d(x, self.conv.weight, self.conv.bias, self.conv.stride, tuple(pads[-2::-2]))
        else:
            x = self.conv(F.pad(x, pads))
        return F.relu(self.bn(x), inplace=True)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3 max-pool -> 1x1), concatenated."""

    def __init__(self, in_channels: int, channels: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = channels
        self.branch0 = Unit3D(in_channels, b0)
        self.branch1 = nn.Sequential(Unit3D(in_channels, b1a), Unit3D(b1a, b1b, (3, 3, 3)))
        self.branch2 = nn.Sequential(Unit3D(in_channels, b2a), Unit3D(b2a, b2b, (3, 3, 3)))
        self.branch3 = nn.Sequential(MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, b3))
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


def _backbone(in_channels: int) -> nn.ModuleDict:
    layers: dict[str, nn.Module] = {}
    channels = in_channels
    for layer in LAYERS:
        if isinstance(layer, Conv):
            layers[layer.name] = Unit3D(channels, layer.out_channels, layer.kernel, layer.stride)
            channels = layer.out_channels
        elif isinstance(layer, Pool):
            layers[layer.name] = MaxPool3dSame(layer.kernel, layer.stride)
        else:
            block = InceptionBlock(channels, layer.channels)
            layers[layer.name] = block
            channels = block.out_channels
    return nn.ModuleDict(layers)


class InceptionI3d(nn.Module):
    """I3D classifier.

    Args:
        num_classes: size of the logits layer (400 for Kinetics-400, 600 for Kinetics-600).
        in_channels: 3 for RGB, 2 for optical flow (x, y).
        dropout: dropout probability before the logits layer (the release trained with 0.5).

    Input: ``[B, C, T, H, W]`` float, values in [-1, 1], ``T >= 9``, ``H, W >= 193``.
    Output: logits ``[B, num_classes]``, the mean over time of per-time-step logits. With a 224x224
    input the last feature map is 7x7 and the model is exactly the release's; larger inputs give a
    larger map whose logits are averaged over space as well (fully convolutional testing).
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.blocks = _backbone(in_channels)
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=1)
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Conv3d(FEATURE_DIM, num_classes, 1, bias=True)

    @property
    def num_classes(self) -> int:
        return self.logits.out_channels

    def replace_logits(self, num_classes: int) -> None:
        """Swap the logits layer for a freshly initialised one with ``num_classes`` outputs."""
        old = self.logits
        self.logits = nn.Conv3d(FEATURE_DIM, num_classes, 1, bias=True).to(old.weight.device,
                                                                           old.weight.dtype)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` with the reason if ``x`` is not a valid ``[B, C, T, H, W]`` input."""
        if x.dim() != 5:
            raise ValueError(f"I3D expects a [B, C, T, H, W] tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"this I3D takes {self.in_channels} input channels, got {x.shape[1]} "
                             f"(shape {tuple(x.shape)}; rgb has 3 channels, flow 2)")
        t, h, w = x.shape[-3:]
        if t < MIN_FRAMES or h < MIN_SIZE or w < MIN_SIZE:
            raise ValueError(
                f"input of {t} frames x {h}x{w} pixels is too small for I3D: it needs at least "
                f"{MIN_FRAMES} frames and {MIN_SIZE}x{MIN_SIZE} pixels (time shrinks 8x and space "
                f"32x before the 2x7x7 average pool); the release used 224x224 crops")

    def forward_endpoints(self, x: torch.Tensor, endpoints: Iterable[str]) -> dict[str, torch.Tensor]:
        """Run the network up to the last requested endpoint and return those endpoints.

        Feature maps are ``[B, C', T', H', W']``; ``Features`` is ``[B, 1024]``; ``Logits`` and
        ``Predictions`` (softmax) are ``[B, num_classes]``.
        """
        wanted = set(endpoints)
        unknown = wanted.difference(ENDPOINTS)
        if unknown:
            raise ValueError(f"unknown endpoints {sorted(unknown)}; valid: {', '.join(ENDPOINTS)}")
        last = max(ENDPOINTS.index(name) for name in wanted)
        if last >= ENDPOINTS.index("Features"):
            self.check_input(x)
        out: dict[str, torch.Tensor] = {}
        for name, layer in self.blocks.items():
            x = layer(x)
            if name in wanted:
                out[name] = x
            if ENDPOINTS.index(name) == last:
                return out
        pooled = self.avg_pool(x)  # [B, 1024, T'-1, H'-6, W'-6]
        if "Features" in wanted:
            out["Features"] = pooled.mean(dim=(2, 3, 4))
        if last >= ENDPOINTS.index("Logits"):
            logits = self.logits(self.dropout(pooled)).mean(dim=(2, 3, 4))
            out["Logits"] = logits
            if "Predictions" in wanted:
                out["Predictions"] = logits.softmax(dim=1)
        return {name: out[name] for name in ENDPOINTS if name in wanted}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled ``Mixed_5c`` features ``[B, 1024]`` of an input ``[B, C, T, H, W]``."""
        return self.forward_endpoints(x, ["Features"])["Features"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of an input ``[B, C, T, H, W]`` in [-1, 1]."""
        return self.forward_endpoints(x, ["Logits"])["Logits"]
