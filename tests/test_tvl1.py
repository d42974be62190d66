"""TV-L1 in PyTorch: known motions recovered, OpenCV's flow matched on real frames, pairs independent
of their batch, and the pieces that must equal OpenCV's exactly (greyscale, median)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from i3d_lightning.data.release_clip import read_gif
from i3d_lightning.errors import UserInputError
from i3d_lightning.flow.tvl1 import TVL1Parameters, _median, grey_from_rgb, tvl1_flow


def _smooth_texture(size: int, seed: int) -> torch.Tensor:
    """float ``[size, size]`` in 0..255: noise blurred to features of a few pixels, so that sub-pixel
    motion is well defined."""
    noise = torch.from_numpy(np.random.default_rng(seed).random((1, 1, size, size), dtype=np.float32))
    kernel = torch.exp(-torch.arange(-4, 5, dtype=torch.float32) ** 2 / 4)
    kernel = (kernel[:, None] * kernel[None, :] / kernel.sum() ** 2)[None, None]
    blurred = F.conv2d(F.pad(noise, (4, 4, 4, 4), mode="reflect"), kernel)[0, 0]
    return (blurred - blurred.min()) / (blurred.max() - blurred.min()) * 255


def _moved(image: torch.Tensor, flow_of_pixel) -> torch.Tensor:
    """The image ``second`` with ``second[p + flow(p)] = image[p]``, by sampling ``image`` at the inverse
    motion (bicubic; motions here are rigid, so the inverse is exact)."""
    size = image.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    source_x, source_y = flow_of_pixel(xs, ys, inverse=True)
    grid = torch.stack([source_x * 2 / (size - 1) - 1, source_y * 2 / (size - 1) - 1], -1)[None].float()
    return F.grid_sample(image[None, None], grid, mode="bicubic", padding_mode="border", align_corners=True)[0, 0]


def _interior_error(flow: torch.Tensor, expected: torch.Tensor, margin: int = 12) -> float:
    return float(torch.linalg.vector_norm(flow - expected, dim=-1)[margin:-margin, margin:-margin].mean())


def test_a_sub_pixel_translation_is_recovered():
    image = _smooth_texture(64, seed=0)
    shift = (1.4, -0.7)

    def translation(xs, ys, inverse=False):
        sign = -1 if inverse else 1
        return xs + sign * shift[0], ys + sign * shift[1]

    flow = tvl1_flow(image, _moved(image, translation))
    assert flow.shape == (64, 64, 2) and flow.dtype == torch.float32
    assert _interior_error(flow, torch.tensor(shift)) < 0.1
    assert _interior_error(flow, torch.zeros(2)) > 1.4  # not trivially small: the motion is there


def test_a_rotation_is_recovered():
    image = _smooth_texture(64, seed=1)
    angle, centre = math.radians(4.0), 31.5

    def rotation(xs, ys, inverse=False):
        a = -angle if inverse else angle
        dx, dy = xs - centre, ys - centre
        return centre + math.cos(a) * dx - math.sin(a) * dy, centre + math.sin(a) * dx + math.cos(a) * dy

    ys, xs = torch.meshgrid(torch.arange(64, dtype=torch.float64), torch.arange(64, dtype=torch.float64), indexing="ij")
    moved_x, moved_y = rotation(xs, ys)
    expected = torch.stack([moved_x - xs, moved_y - ys], -1).float()
    flow = tvl1_flow(image, _moved(image, rotation))
    assert _interior_error(flow, expected) < 0.15
    assert _interior_error(flow, torch.zeros(2)) > 1.0  # the rotation moves pixels by up to 1.4 px there


@pytest.fixture(scope="module")
def sample_grey(release_dir) -> np.ndarray:
    """The release's sample clip in greyscale, uint8 ``[T, 224, 224]``."""
    rgb = read_gif(release_dir / "v_CricketShot_g04_c01_rgb.gif")
    return grey_from_rgb(torch.from_numpy(rgb)).numpy()


def test_matches_opencv_on_real_frames(sample_grey):
    # Crops of the sample clip around the batsman (the moving part), three pairs in one batch.
    crops = np.ascontiguousarray(sample_grey[[10, 11, 40, 41, 60, 61], 60:140, 70:166])
    opencv = cv2.optflow.DualTVL1OpticalFlow_create()
    expected = np.stack([opencv.calc(crops[i], crops[i + 1], None) for i in (0, 2, 4)])
    ours = tvl1_flow(torch.from_numpy(crops[[0, 2, 4]]), torch.from_numpy(crops[[1, 3, 5]])).numpy()
    error = np.linalg.norm(ours - expected, axis=-1)
    assert np.linalg.norm(expected, axis=-1).mean() > 0.2  # there is motion to get right
    assert error.mean() <= 0.05, error.mean()
    assert np.percentile(error, 99) < 0.5


def test_a_pairs_flow_does_not_depend_on_its_batch(sample_grey):
    frames = torch.from_numpy(np.ascontiguousarray(sample_grey[20:24, 80:128, 80:144]))
    parameters = TVL1Parameters(scales=3, warps=2)
    together = tvl1_flow(frames[:3], frames[1:], parameters)
    for index in range(3):  # the pairs stop iterating at different steps: each must follow its own rule
        alone = tvl1_flow(frames[index], frames[index + 1], parameters)
        torch.testing.assert_close(together[index], alone, rtol=0, atol=1e-5)


def test_greyscale_and_median_equal_opencvs():
    rgb = np.random.default_rng(2).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
    grey = grey_from_rgb(torch.from_numpy(rgb)).numpy()
    assert np.array_equal(grey, np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in rgb]))
    flow = torch.from_numpy(np.random.default_rng(3).normal(0, 2, (2, 2, 23, 31)).astype(np.float32))
    for size in (3, 5):
        expected = np.stack([[cv2.medianBlur(channel, size) for channel in pair] for pair in flow.numpy()])
        assert np.array_equal(_median(flow, size).numpy(), expected)


@pytest.mark.parametrize(("first", "second", "message"), [
    (torch.zeros(2, 32, 32), torch.zeros(2, 32, 30), "one shape"),
    (torch.zeros(1, 8, 32), torch.zeros(1, 8, 32), "at least 16x16"),
])
def test_bad_frames_are_one_clear_error(first, second, message):
    with pytest.raises(UserInputError, match=message):
        tvl1_flow(first, second)
