"""Tensor transforms of clips: ``[T, H, W, C]`` uint8 frames in, ``[C, T, H, W]`` floats out."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``[T, C, H, W]`` frames so that ``min(H, W) == size``, keeping the aspect
    ratio (no antialiasing, like OpenCV's ``INTER_LINEAR`` that the release used)."""
    height, width = frames.shape[-2:]
    scale = size / min(height, width)
    new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
    if new_size == (height, width):
        return frames
    return F.interpolate(frames.float(), size=new_size, mode="bilinear", align_corners=False,
                         antialias=False)


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Centre ``size`` x ``size`` crop of ``[..., H, W]`` frames."""
    height, width = frames.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from frames of {height}x{width}")
    top, left = (height - size) // 2, (width - size) // 2
    return frames[..., top:top + size, left:left + size]


def rgb_to_model_range(frames: torch.Tensor) -> torch.Tensor:
    """Pixel values in [0, 255] -> [-1, 1] (the release's ``x / 127.5 - 1``)."""
    return frames.float() / 127.5 - 1.0
