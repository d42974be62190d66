"""The network's one pass over a whole video, computed a bounded span of frames at a time.

The release's whole-video output is the mean over time of the 2x7x7-average-pooled ``Mixed_5c`` map
(then the logits layer). In one pass its activations grow with the video: the first convolution's
output alone is 1.6 MB per frame at 224x224 in fp32, ~2.4 GB per minute of 25 fps video.

A :class:`TemporalTile` is a span of frames whose ``Mixed_5c`` time steps, away from the span's cut
ends, are exactly the one pass's:

* each step depends on a bounded span of frames (:func:`temporal_reach`: 47 before and 54 after
  step ``q``'s frame ``8q``), so a tile reaching that far on both sides sees what the one pass sees;
* TensorFlow ``SAME`` padding depends on a layer's input length modulo its stride. A tile that starts
  on a multiple of the network's time stride (8) and whose length has the video's remainder modulo 8
  gets the one pass's padding at every layer, so its strided grids are the one pass's, shifted by
  ``start / 8`` steps.

Each tile owns a run of the average pool's time steps (``first`` to ``last`` of its own); their sums,
added over a video's tiles and divided by their count (:data:`TemporalTile.steps`), are the one pass's
mean, up to float summation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from i3d_lightning.models.i3d import LAYERS, MIN_FRAMES, InceptionI3d, Mixed

#: (kernel, stride) in time of each layer; an inception block's widest branch is a 3x3x3 convolution
#: (or max-pool) at stride 1.
TIME_LAYERS: tuple[tuple[int, int], ...] = tuple((3, 1) if isinstance(layer, Mixed) else
                                                 (layer.kernel[0], layer.stride[0]) for layer in LAYERS)
#: The network's stride in time: ``Mixed_5c`` has a step per 8 frames.
TIME_STRIDE = math.prod(stride for _, stride in TIME_LAYERS)
#: The average pool's window in time (2 steps of ``Mixed_5c``, stride 1).
POOL_STEPS = 2
#: ``Mixed_5c`` steps a tile owns by default: 256 frames, ~400 MB of activations per 224x224 crop in fp32
#: with its reach (a tile is then ~370 frames; the reach is computed twice, ~45% more work than one pass).
TILE_STEPS = 32


def temporal_reach() -> tuple[int, int]:
    """Frames (before, after) frame ``8q`` that ``Mixed_5c``'s step ``q`` may depend on, for any padding.

    Walked back from the last layer: an output ``i`` of a layer with kernel ``k`` and stride ``s`` reads
    inputs ``s*i - p`` to ``s*i - p + k - 1``, where ``SAME`` puts ``p`` between ``(k - s) // 2`` and
    ``(k - 1) // 2`` depending on the input's length; the widest case is taken on each side.
    """
    before = after = 0  # offsets from s*i at the current layer's input, in that layer's input steps
    for kernel, stride in reversed(TIME_LAYERS):
        before = before * stride + (kernel - 1) // 2
        after = after * stride + kernel - 1 - max(kernel - stride, 0) // 2
    return before, after


@dataclass(frozen=True)
class TemporalTile:
    """Frames ``start`` to ``stop`` of a video's timeline, owning its average-pool steps ``first`` to
    ``last`` (its own indices; ``last`` excluded)."""

    start: int
    stop: int
    first: int
    last: int

    @property
    def steps(self) -> int:
        return self.last - self.first


def output_steps(num_frames: int) -> int:
    """Average-pool time steps of a one-pass input of ``num_frames`` (>= ``MIN_FRAMES``) frames."""
    mixed = num_frames
    for _, stride in TIME_LAYERS:
        mixed = -(-mixed // stride)
    return mixed - POOL_STEPS + 1


def plan_tiles(num_frames: int, steps_per_tile: int = TILE_STEPS) -> list[TemporalTile]:
    """Tiles whose owned steps cover a one-pass input of ``num_frames`` frames in order, each owning
    ``steps_per_tile`` steps (the last fewer); one tile, the whole input, where that is all it needs."""
    if num_frames < MIN_FRAMES:
        raise ValueError(f"a one-pass input needs at least {MIN_FRAMES} frames, got {num_frames}")
    if steps_per_tile < 1:
        raise ValueError(f"steps_per_tile must be at least 1, got {steps_per_tile}")
    before, after = temporal_reach()
    steps = output_steps(num_frames)
    tiles = []
    for first in range(0, steps, steps_per_tile):
        last = min(first + steps_per_tile, steps)
        # Mixed_5c steps first .. last (the pool's last owned step reads step ``last``) must be exact.
        start = max(0, (TIME_STRIDE * first - before) // TIME_STRIDE * TIME_STRIDE)
        stop = min(num_frames, TIME_STRIDE * last + after + 1)
        stop += (num_frames - (stop - start)) % TIME_STRIDE  # the video's remainder: the same padding
        stop = min(stop, num_frames)
        offset = start // TIME_STRIDE
        tiles.append(TemporalTile(start, stop, first - offset, last - offset))
    if len(tiles) > 1 and tiles[0].stop == num_frames:
        return [TemporalTile(0, num_frames, 0, steps)]
    return tiles


def tile_feature_sum(tower: InceptionI3d, clips: torch.Tensor, steps: tuple[int, int]) -> torch.Tensor:
    """``[B, 1024]``: the sum over a tile's own average-pool ``steps`` (its ``first`` and ``last``) of the
    average-pooled ``Mixed_5c``, averaged over space, for ``clips`` ``[B, C, T, H, W]`` (the tile's frames,
    in the network's range)."""
    first, last = steps
    tower.check_input(clips)
    mixed = tower.forward_endpoints(clips, ["Mixed_5c"])["Mixed_5c"]
    pooled = tower.avg_pool(mixed[:, :, first:last + POOL_STEPS - 1])
    return pooled.mean(dim=(3, 4)).sum(dim=2)
