"""The one pass over a long video in tiles: the same numbers as the one pass, in bounded spans of frames."""

from __future__ import annotations

import pytest
import torch

from i3d_lightning.models import InceptionI3d
from i3d_lightning.models.inference import optimize_for_inference, prepare_input
from i3d_lightning.models.temporal_tiles import (
    TIME_STRIDE,
    TemporalTile,
    output_steps,
    plan_tiles,
    temporal_reach,
    tile_feature_sum,
)


def test_the_reach_is_the_receptive_field_of_the_layers():
    # Walked by hand: Mixed_5c's step q reads Mixed_4f's 2q-4 .. 2q+5 (two 3-wide blocks, the 2-wide
    # pool), Conv3d_2c's 4q-20-p .. 4q+24-p (p <= 1), frames 8q-42-2p-3 .. 8q+56-2p-2 (the 7-wide stride-2 stem).
    assert temporal_reach() == (47, 54)
    assert TIME_STRIDE == 8
    assert [output_steps(n) for n in (9, 16, 17, 64, 65)] == [1, 1, 2, 7, 8]


@pytest.mark.parametrize("steps_per_tile", [1, 3, 32])
def test_tiles_own_every_step_once_and_reach_what_their_steps_read(steps_per_tile):
    before, after = temporal_reach()
    for frames in range(9, 700, 7):
        tiles = plan_tiles(frames, steps_per_tile)
        owned = [tile.start // TIME_STRIDE + step for tile in tiles for step in range(tile.first, tile.last)]
        assert owned == list(range(output_steps(frames)))
        for tile in tiles:
            assert tile.start % TIME_STRIDE == 0 and 0 <= tile.start < tile.stop <= frames
            # The one pass's padding at every layer: the video's length modulo 8, or the video's end.
            assert tile.stop == frames or (tile.stop - tile.start) % TIME_STRIDE == frames % TIME_STRIDE
            for step in range(tile.start // TIME_STRIDE + tile.first, tile.start // TIME_STRIDE + tile.last + 1):
                assert max(0, TIME_STRIDE * step - before) >= tile.start
                assert min(frames - 1, TIME_STRIDE * step + after) < tile.stop
        if output_steps(frames) <= steps_per_tile:
            assert tiles == [TemporalTile(0, frames, 0, output_steps(frames))]


@pytest.fixture(scope="module")
def tower(rgb_scratch_state) -> torch.nn.Module:
    # The release's weights: a random network's features hardly depend on its input, and would
    # agree whatever frames a tile read.
    model = InceptionI3d().eval()
    model.load_state_dict(rgb_scratch_state)
    return optimize_for_inference(model, fast=True)


@torch.no_grad()
def test_tiles_add_up_to_the_one_pass(tower):
    frames = 131  # 16 steps, in 4 tiles of 4; 131 = 3 modulo 8, so the stem pads 3 frames, not 2
    clip = torch.rand(1, 3, frames, 193, 193) * 2 - 1
    one_pass = tower.features(prepare_input(clip, True))
    tiles = plan_tiles(frames, 4)
    # Cut on the left (frames 16 and 48 on: what came before is not read) and on the right (tile 1).
    assert [tile.start for tile in tiles] == [0, 0, 16, 48] and tiles[1].stop < frames
    sums = [tile_feature_sum(tower, prepare_input(clip[:, :, tile.start:tile.stop], True), (tile.first, tile.last))
            for tile in tiles]
    tiled = sum(sums) / sum(tile.steps for tile in tiles)
    torch.testing.assert_close(tiled, one_pass, rtol=0, atol=1e-6)
    # The padding rule matters: an interior tile one frame shorter (another length modulo 8) is off.
    inner = tiles[1]
    shorter = TemporalTile(inner.start, inner.stop - 1, inner.first, inner.last)
    off = tile_feature_sum(tower, prepare_input(clip[:, :, shorter.start:shorter.stop], True),
                           (shorter.first, shorter.last))
    assert (off - sums[1]).abs().max() > 1e-3
