"""TensorFlow 1's ``tf.compat.v1.image.resize_bilinear`` (``align_corners=False``,
``half_pixel_centers=False``) in PyTorch: the resize of the reference FVD.

TF1 maps output pixel ``i`` to input coordinate ``i * in / out`` (no half-pixel shift, unlike
``F.interpolate(..., align_corners=False)``), takes the two neighbours ``floor`` and
``min(ceil, in - 1)`` and interpolates ``top + (bottom - top) * lerp`` in float32, first along the
width, then along the height. The same arithmetic, in the same order, runs here on any device.
"""

from __future__ import annotations

import torch


def _axis(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower index, upper index, lerp) of each output position along one axis, as TF1 computes them."""
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    position = torch.arange(out_size, dtype=torch.float32) * scale
    floor = torch.floor(position)
    lower = floor.to(torch.int64).clamp(min=0)
    upper = torch.ceil(position).to(torch.int64).clamp(max=in_size - 1)
    return lower.to(device), upper.to(device), (position - floor).to(device)


def resize_bilinear_tf1(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[..., H, W, C]`` images (uint8 or float, channels last) to ``size`` = (height, width).

    Returns float32 ``[..., height, width, C]`` with TF1 ``resize_bilinear``'s values.
    """
    if images.dim() < 3:
        raise ValueError(f"expected [..., H, W, C] images, got shape {tuple(images.shape)}")
    height, width = images.shape[-3], images.shape[-2]
    x = images.to(torch.float32)
    top, bottom, y_lerp = _axis(height, size[0], x.device)
    left, right, x_lerp = _axis(width, size[1], x.device)
    x_lerp = x_lerp.view(-1, 1)  # over [..., width, C]
    y_lerp = y_lerp.view(-1, 1, 1)  # over [..., height, width, C]
    top_rows, bottom_rows = x.index_select(-3, top), x.index_select(-3, bottom)
    top_left, top_right = top_rows.index_select(-2, left), top_rows.index_select(-2, right)
    bottom_left, bottom_right = bottom_rows.index_select(-2, left), bottom_rows.index_select(-2, right)
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    return upper + (lower - upper) * y_lerp
