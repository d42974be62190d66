"""TV-L1 optical flow in PyTorch, batched, on any device: OpenCV's ``DualTVL1OpticalFlow``.

The dual TV-L1 of Zach, Pock and Bischof (2007) in the formulation of Sánchez, Meinhardt-Llopis and
Facciolo (IPOL 2013), computed as OpenCV's ``optflow`` module computes it, so that flow made here
matches flow made by ``i3d-extract-flow --backend opencv`` (and the release's):

* images as float 0..255; a pyramid of ``scales`` levels, each ``scale_step`` times the previous one
  (OpenCV's ``resize`` rules: rounded sizes, bilinear, no smoothing), stopping before a side < 16;
* per level, from the coarsest, ``warps`` times: the second image and its centred-difference gradient
  warped by the current flow (bicubic, a = -0.75, zero outside the image, positions on OpenCV's 1/32
  pixel grid), then at most ``outer_iterations`` rounds of a ``median_filtering`` median of the flow
  followed by at most ``inner_iterations`` primal-dual steps, stopping once a step moves the flow by
  less than ``epsilon`` pixels root-mean-square;
* the flow resized to the next level (bilinear) and divided by ``scale_step``.

Each pair in a batch follows its own stopping rule (a pair that has converged is frozen while the
others go on), so a pair's flow does not depend on what else is in the batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from i3d_lightning.errors import UserInputError
from i3d_lightning.heartbeat import beat
from i3d_lightning.settings import check_settings, setting

#: OpenCV's remap works on positions rounded to 1/32 pixel (``INTER_TAB_SIZE``).
REMAP_STEPS = 32
#: OpenCV stops adding pyramid levels before either side drops below this.
MIN_LEVEL_SIDE = 16


@dataclass(frozen=True)
class TVL1Parameters:
    """OpenCV's ``DualTVL1OpticalFlow`` parameters, with its defaults (``gamma`` is not supported: 0)."""

    tau: float = setting(0.25, above=0)
    lambda_: float = setting(0.15, above=0)
    theta: float = setting(0.3, above=0)
    scales: int = setting(5, minimum=1)
    scale_step: float = setting(0.8, above=0, below=1)  # each scale this much smaller than the one before
    warps: int = setting(5, minimum=1)
    epsilon: float = setting(0.01, above=0)
    inner_iterations: int = setting(30, minimum=1)
    outer_iterations: int = setting(10, minimum=1)
    median_filtering: int = setting(5, choices=(0, 1, 3, 5))  # OpenCV's: 0 or 1 = none

    def __post_init__(self) -> None:
        check_settings(self)


def grey_from_rgb(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 3]`` RGB -> uint8 ``[...]`` luma, bit for bit OpenCV's ``cvtColor(RGB2GRAY)``
    (0.299 R + 0.587 G + 0.114 B in 15-bit fixed point, rounded)."""
    weights = torch.tensor([9798, 19235, 3735], dtype=torch.int32, device=frames.device)
    return ((frames.to(torch.int32) * weights).sum(-1).add_(1 << 14) >> 15).to(torch.uint8)


def tvl1_flow(first: torch.Tensor, second: torch.Tensor, parameters: TVL1Parameters = TVL1Parameters()) -> torch.Tensor:
    """Flow from ``first`` to ``second``: greyscale ``[B, H, W]`` (or ``[H, W]``) values 0..255, uint8
    or float -> float32 ``[B, H, W, 2]`` (x, y) in pixels: ``first[y, x]`` moves to
    ``second[y + flow_y, x + flow_x]``. Runs on the inputs' device."""
    if first.shape != second.shape or first.dim() not in (2, 3):
        raise UserInputError(f"TV-L1 takes two greyscale frames or batches of one shape [B, H, W], got "
                             f"{tuple(first.shape)} and {tuple(second.shape)}")
    if first.dim() == 2:
        return tvl1_flow(first[None], second[None], parameters)[0]
    if min(first.shape[1:]) < MIN_LEVEL_SIDE:
        raise UserInputError(f"TV-L1 needs frames of at least {MIN_LEVEL_SIDE}x{MIN_LEVEL_SIDE}, got "
                             f"{first.shape[1]}x{first.shape[2]}")
    # fp32 whatever the caller's autocast: TV-L1's iterations are not meant for bf16.
    with torch.autocast(first.device.type, enabled=False):
        return _pyramid_flow(first.to(torch.float32), second.to(torch.float32), parameters)


def tvl1_flow_in_batches(first: torch.Tensor, second: torch.Tensor, batch: int,
                          parameters: TVL1Parameters = TVL1Parameters()) -> torch.Tensor:
    """:func:`tvl1_flow` of many ``[N, H, W]`` pairs, ``batch`` pairs per call (bounds memory; on the
    CPU batches beyond ~8 gain nothing, see docs/data.md). Computed on the inputs' device."""
    return torch.cat([tvl1_flow(a, b, parameters)
                      for a, b in zip(first.split(batch), second.split(batch), strict=True)])


def _pyramid_flow(first: torch.Tensor, second: torch.Tensor, parameters: TVL1Parameters) -> torch.Tensor:
    """:func:`tvl1_flow` of float ``[B, H, W]`` images."""
    pyramid = [(first, second)]
    for _ in range(parameters.scales - 1):
        height, width = pyramid[-1][0].shape[1:]
        size = (round(height * parameters.scale_step), round(width * parameters.scale_step))
        if min(size) < MIN_LEVEL_SIDE:
            break
        step = 1 / parameters.scale_step
        pyramid.append(tuple(_resize_bilinear(image, size, (step, step)) for image in pyramid[-1]))
    flow = first.new_zeros((first.shape[0], 2, *pyramid[-1][0].shape[1:]), dtype=torch.float32)
    for level in range(len(pyramid) - 1, -1, -1):
        flow = _one_level(*pyramid[level], flow, parameters)
        beat()  # a level takes seconds at most: a worker computing flow is seen to be alive
        if level > 0:
            size = pyramid[level - 1][0].shape[1:]
            scale = (flow.shape[2] / size[0], flow.shape[3] / size[1])
            flow = _resize_bilinear(flow.flatten(0, 1), size, scale).unflatten(0, (-1, 2)) * (1 / parameters.scale_step)
    return flow.permute(0, 2, 3, 1).contiguous()


def _one_level(first: torch.Tensor, second: torch.Tensor, flow: torch.Tensor,
               parameters: TVL1Parameters) -> torch.Tensor:
    """TV-L1 at one pyramid level: ``[B, H, W]`` images, ``[B, 2, H, W]`` initial flow -> refined flow."""
    batch, height, width = first.shape
    threshold = parameters.epsilon ** 2 * height * width  # on the sum over pixels of the squared flow change
    image_and_gradient = torch.cat([second[:, None], _centred_gradient(second)], dim=1)  # [B, 3, H, W]
    dual = flow.new_zeros((batch, 2, 2, height, width))  # (flow component, direction x/y)
    for _ in range(parameters.warps):
        warped = _warp_bicubic(image_and_gradient, flow)
        gradient = warped[:, 1:].contiguous()  # [B, 2, H, W]
        constant = warped[:, 0] - (gradient * flow).sum(1) - first  # the residual's flow-free part
        # |grad|^2 kept away from 0 so that the step's division is defined. Where it is below float
        # epsilon OpenCV takes no step inside the threshold band; this takes the clamped -residual/|grad|^2
        # there, a move of at most lambda*theta*|grad| < 6e-5 px.
        norm = (gradient ** 2).sum(1).clamp_(min=torch.finfo(torch.float32).tiny)
        full = _Iterate(flow.clone(), dual, gradient, constant, norm)
        rows, state = torch.arange(batch, device=flow.device), full
        for _ in range(parameters.outer_iterations):
            if parameters.median_filtering > 1:
                state.flow.copy_(_median(state.flow, parameters.median_filtering))
            for _ in range(parameters.inner_iterations):
                going_on = state.step(parameters) > threshold
                if bool(going_on.all()):
                    continue
                # Some pairs have converged: they are written back and the others go on alone.
                state.write_back(full, rows)
                rows = rows[going_on]
                if rows.numel() == 0:
                    break
                state = full.select(rows)
            if rows.numel() == 0:
                break
        if rows.numel():
            state.write_back(full, rows)
        flow, dual = full.flow, full.dual
    return flow


@dataclass
class _Iterate:
    """The primal-dual iteration of one warp, for the pairs (rows) still iterating."""

    flow: torch.Tensor  # [b, 2, H, W], pixels
    dual: torch.Tensor  # [b, 2, 2, H, W]: (flow component, x/y)
    gradient: torch.Tensor  # [b, 2, H, W]: the second image's gradient, warped
    constant: torch.Tensor  # [b, H, W]: warped image - first image - gradient . flow at the warp
    norm: torch.Tensor  # [b, H, W]: |gradient|^2

    def select(self, rows: torch.Tensor) -> _Iterate:
        return _Iterate(*(getattr(self, name).index_select(0, rows) for name in self.__dataclass_fields__))

    def write_back(self, full: _Iterate, rows: torch.Tensor) -> None:
        if self is not full:
            full.flow.index_copy_(0, rows, self.flow)
            full.dual.index_copy_(0, rows, self.dual)

    def step(self, parameters: TVL1Parameters) -> torch.Tensor:
        """One step, in place; returns each pair's sum of squared flow changes ``[b]``."""
        lambda_theta, tau_theta = parameters.lambda_ * parameters.theta, parameters.tau / parameters.theta
        # Thresholding: v = u + step * gradient, the step projecting the residual onto [-lt, lt] |grad|^2.
        residual = torch.addcmul(self.constant, self.gradient[:, 0], self.flow[:, 0])
        residual.addcmul_(self.gradient[:, 1], self.flow[:, 1])
        step = residual.div_(self.norm).neg_().clamp_(-lambda_theta, lambda_theta)
        change = self.gradient * step[:, None]
        change.add_(_divergence(self.dual), alpha=parameters.theta)  # u = v + theta * div(p)
        self.flow.add_(change)
        flow_gradient = _forward_gradient(self.flow)
        scale = torch.hypot(flow_gradient[:, :, 0], flow_gradient[:, :, 1]).mul_(tau_theta).add_(1)
        self.dual.add_(flow_gradient, alpha=tau_theta).div_(scale[:, :, None])
        return change.square_().sum((1, 2, 3))


def _centred_gradient(image: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` -> ``[B, 2, H, W]`` (d/dx, d/dy): central differences, one-sided (halved) at the
    borders, as OpenCV's TV-L1 (the same as central differences over a replicated border)."""
    padded = F.pad(image[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    return torch.stack([0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]),
                        0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])], dim=1)


def _forward_gradient(flow: torch.Tensor) -> torch.Tensor:
    """``[B, 2, H, W]`` -> ``[B, 2, 2, H, W]``: forward differences, 0 on the last column / row."""
    gradient = flow.new_zeros((flow.shape[0], 2, 2, *flow.shape[2:]))
    torch.sub(flow[..., 1:], flow[..., :-1], out=gradient[:, :, 0, :, :-1])
    torch.sub(flow[..., 1:, :], flow[..., :-1, :], out=gradient[:, :, 1, :-1, :])
    return gradient


def _divergence(dual: torch.Tensor) -> torch.Tensor:
    """``[B, 2, 2, H, W]`` -> ``[B, 2, H, W]``: backward differences with zeros before the first
    column / row (the adjoint of :func:`_forward_gradient`)."""
    x, y = dual[:, :, 0], dual[:, :, 1]
    divergence = x + y
    divergence[..., 1:] -= x[..., :-1]
    divergence[..., 1:, :] -= y[..., :-1, :]
    return divergence


def _warp_bicubic(images: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``images[b, c]`` sampled at ``(x + flow_x, y + flow_y)``: ``[B, C, H, W]`` -> ``[B, C, H, W]``.
    Bicubic (a = -0.75), zero outside the image, positions rounded to 1/32 pixel, as OpenCV's
    ``remap(..., INTER_CUBIC)``."""
    height, width = images.shape[2:]
    ys = torch.arange(height, device=flow.device, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(width, device=flow.device, dtype=torch.float32).view(1, 1, -1)
    x = torch.round((xs + flow[:, 0]) * REMAP_STEPS) / REMAP_STEPS
    y = torch.round((ys + flow[:, 1]) * REMAP_STEPS) / REMAP_STEPS
    grid = torch.stack([x * (2 / (width - 1)) - 1, y * (2 / (height - 1)) - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


def _median(flow: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` x ``size`` median of each channel of ``[B, C, H, W]``, replicated border (OpenCV's
    ``medianBlur``). Computed by a selection network of elementwise min/max over the window's shifted
    views: ~3.5x faster than ``torch.median`` over unfolded windows on a CPU, and as exact."""
    height, width = flow.shape[2:]
    half = size // 2
    padded = F.pad(flow, (half, half, half, half), mode="replicate")
    count = size * size
    values: dict[int, torch.Tensor] = {index: padded[..., index // size:index // size + height,
                                                     index % size:index % size + width]
                                       for index in range(count)}
    operations, result = _median_network(count)
    spare: list[torch.Tensor] = []  # buffers of nodes no longer read: fresh ~MB allocations cost more than the ops
    for node, kind, first, second, last_reads in operations:
        out = spare.pop() if spare else torch.empty_like(flow)
        values[node] = (torch.minimum if kind == "min" else torch.maximum)(values[first], values[second], out=out)
        for done in last_reads:
            buffer = values.pop(done)
            if done >= count:
                spare.append(buffer)
    return values[result]


@functools.cache
def _median_network(count: int) -> tuple[list[tuple[int, str, int, int, tuple[int, ...]]], int]:
    """The operations that select the median of ``count`` values (nodes ``0 .. count - 1``):
    ``(node, "min" | "max", input, input, nodes last read here)`` in order, and the result's node.

    Batcher's odd-even merge sort of the next power of two, the missing inputs taken as +inf
    (comparators with them are no-ops or swaps), then only the operations the middle output depends on."""
    width = 1 << (count - 1).bit_length()
    wires: list[int | None] = [*range(count), *[None] * (width - count)]  # None: +inf
    made: list[tuple[int, str, int, int]] = []
    for low, high in _odd_even_merge_sort(width):
        first, second = wires[low], wires[high]
        if second is None:
            continue
        if first is None:
            wires[low], wires[high] = second, None
            continue
        smaller, larger = count + len(made), count + len(made) + 1
        made += [(smaller, "min", first, second), (larger, "max", first, second)]
        wires[low], wires[high] = smaller, larger
    result = wires[count // 2]
    needed, kept = {result}, []
    for node, kind, first, second in reversed(made):
        if node in needed:
            needed |= {first, second}
            kept.append((node, kind, first, second))
    kept.reverse()
    last_read: dict[int, int] = {}
    for position, (_, _, first, second) in enumerate(kept):
        last_read[first] = last_read[second] = position
    operations = [(node, kind, first, second,
                   tuple(sorted({n for n in (first, second) if last_read[n] == position})))
                  for position, (node, kind, first, second) in enumerate(kept)]
    return operations, result


def _odd_even_merge_sort(width: int) -> list[tuple[int, int]]:
    """Comparators ``(low, high)`` of Batcher's odd-even merge sort of ``width`` (a power of two) wires."""
    pairs = []
    block = 1
    while block < width:
        distance = block
        while distance >= 1:
            for start in range(distance % block, width - distance, 2 * distance):
                for offset in range(min(distance, width - start - distance)):
                    low = start + offset
                    if low // (2 * block) == (low + distance) // (2 * block):
                        pairs.append((low, low + distance))
            distance //= 2
        block *= 2
    return pairs


def _resize_bilinear(images: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
    """OpenCV's bilinear ``resize`` of ``[N, H, W]`` to ``size``: destination pixel ``d`` samples the
    source at ``(d + 0.5) * scale - 0.5``, clamped to the image (``scale`` is source pixels per
    destination pixel, OpenCV's ``1 / fx``, which for a resize by ``fx`` is not the ratio of sizes)."""
    for dim, (count, step) in enumerate(zip(size, scale, strict=True), start=1):
        source = images.shape[dim]
        position = ((torch.arange(count, device=images.device, dtype=torch.float64) + 0.5) * step - 0.5)
        position = position.clamp(0, source - 1)
        lower = position.floor().long().clamp(max=source - 1)
        upper = (lower + 1).clamp(max=source - 1)
        weight = (position - lower).to(torch.float32)
        shape = [1] * images.dim()
        shape[dim] = count
        weight = weight.view(shape)
        images = images.index_select(dim, lower) * (1 - weight) + images.index_select(dim, upper) * weight
    return images
