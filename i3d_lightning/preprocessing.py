"""Preprocessing: tensor transforms of frames, and the release's preprocessing built from them (pure tensor
code, beneath both the weights, which name their preprocessing, and the data).

Frames are ``[T, C, H, W]`` (or ``[..., H, W]`` where only the last two axes matter); the model takes
``[C, T, H, W]`` float32 in [-1, 1]. :func:`to_model_range_` is the one place where values become
[-1, 1]: rgb pixels from [0, 255], flow from [-20, 20] pixels (and flow JPEGs, which store that
range as 0..255).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from i3d_lightning.errors import UserInputError

#: The release's input conventions (the kinetics-i3d README), the defaults of clip sampling, the sample
#: evaluation and the tools: frames at 25 fps, resized so the shorter side is 256, centre crop 224.
RELEASE_FPS = 25.0
RELEASE_SHORT_SIDE = 256
RELEASE_CROP_SIZE = 224
#: Flow beyond +-20 pixels per frame is clipped, as in the release; 20 pixels become 1.
FLOW_BOUND = 20.0
#: Slack when checking that given input is in [-1, 1]: float rounding of values computed as x / 127.5 - 1.
MODEL_RANGE_TOLERANCE = 1e-3


def to_model_range_(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Map float ``values`` in [low, high] linearly onto [-1, 1], in place (the release's ``x / 127.5 - 1``
    for pixels: the subtraction of ``low = 0`` and the division are exact as written)."""
    return values.sub_(low).div_((high - low) / 2).sub_(1.0)


def rgb_to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 -> a new float32 tensor in [-1, 1] (for frames sent as uint8 and scaled on the
    accelerator: the same values as :func:`crop_views`'s float views)."""
    return to_model_range_(pixels.to(torch.float32), 0.0, 255.0)


def check_model_range(values: torch.Tensor | np.ndarray, what: str, hint: str = "") -> None:
    """Raise a one-line :class:`UserInputError` naming ``what`` if ``values`` leave [-1, 1]."""
    low, high = float(values.min()), float(values.max())
    if low < -1 - MODEL_RANGE_TOLERANCE or high > 1 + MODEL_RANGE_TOLERANCE:
        raise UserInputError(f"{what}: values span [{low:.3g}, {high:.3g}], expected [-1, 1]{hint}")


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``[T, C, H, W]`` frames so that ``min(H, W) == size``, keeping the aspect
    ratio (no antialiasing, like OpenCV's ``INTER_LINEAR`` that the release used). Returns the frames
    as they are when already that size, else float32."""
    height, width = frames.shape[-2:]
    scale = size / min(height, width)
    new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
    if new_size == (height, width):
        return frames
    return F.interpolate(frames.float(), size=new_size, mode="bilinear", align_corners=False,
                         antialias=False)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[T, 2, H, W]`` flow (x, y) to ``size`` = (height, width), scaling the vectors
    with the image so that they stay in (resized) pixels."""
    height, width = flow.shape[-2:]
    if tuple(size) == (height, width):
        return flow
    resized = F.interpolate(flow.float(), size=tuple(size), mode="bilinear", align_corners=False)
    return resized * torch.tensor([size[1] / width, size[0] / height]).view(1, 2, 1, 1)


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Centre ``size`` x ``size`` crop of ``[..., H, W]`` frames."""
    height, width = frames.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from frames of {height}x{width}")
    top, left = (height - size) // 2, (width - size) // 2
    return frames[..., top:top + size, left:left + size]


def ten_crops(clips: torch.Tensor, size: int, *, flow: bool) -> torch.Tensor:
    """The 10 test crops of ``[..., C, T, H, W]`` clips: the ``size`` squares at the four corners and the
    centre, then the same five mirrored (for ``flow``, float, mirroring negates x), stacked as a new
    axis: ``[..., 10, C, T, size, size]``."""
    height, width = clips.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from frames of {height}x{width}")
    boxes = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size),
             ((height - size) // 2, (width - size) // 2)]
    crops = torch.stack([clips[..., top:top + size, left:left + size] for top, left in boxes], dim=-5)
    mirrored = crops.flip(-1)
    if flow:
        mirrored[..., 0, :, :, :] *= -1  # mirrored motion: flow x reverses
    return torch.cat([crops, mirrored], dim=-5)


def crop_views(name: str, frames: torch.Tensor, clips_shape: tuple[int, int], boxes: list[tuple[int, int]],
               flip: bool, crop_size: int | None, train: bool, *, rgb_as_uint8: bool = False) -> torch.Tensor:
    """The model's views of a video's clips: ``frames`` ``[K * T, H, W, C]`` (rgb uint8 0..255, flow
    float in [-1, 1]) of ``clips_shape`` (K, T), each clip cropped at every ``(top, left)`` of
    ``boxes`` (``crop_size`` square; ``None``: the whole frames), mirrored when ``flip`` (which negates
    flow x), as float32 ``[V, C, T, S, S]`` in [-1, 1] with V = K x boxes (``[C, T, S, S]`` for a
    training clip). ``rgb_as_uint8``: rgb views stay uint8 0..255 (for :func:`rgb_to_model_range` on the
    accelerator)."""
    num_clips, clip_len = clips_shape
    clips = frames.reshape(num_clips, clip_len, *frames.shape[1:])  # [K, T, H, W, C]
    if crop_size is None:
        boxes, crop_size = [(0, 0)], max(clips.shape[2:4])
    crops = [clips[:, :, top:top + crop_size, left:left + crop_size] for top, left in boxes]
    views = torch.stack(crops, dim=1).flatten(0, 1) if len(crops) > 1 else crops[0]  # [V, T, S, S, C]
    if flip:
        views = views.flip(-2)
    # One pass from the cropped (uint8 for rgb) frames into a contiguous float [V, C, T, S, S].
    keep_uint8 = name == "rgb" and rgb_as_uint8
    result = torch.empty(views.shape[0], views.shape[-1], *views.shape[1:-1],
                         dtype=views.dtype if keep_uint8 else torch.float32, device=frames.device)
    result.copy_(views.permute(0, 4, 1, 2, 3))
    if name == "rgb" and not keep_uint8:
        to_model_range_(result, 0.0, 255.0)
    elif flip:
        result[:, 0].neg_()  # mirrored motion: flow x reverses
    return result[0] if train else result


@dataclass(frozen=True)
class ReleasePreprocessing:
    """How the release prepared one modality's input (the kinetics-i3d README), as a callable.

    Frames sampled at ``fps``; resized (bilinear) so the shorter side is ``short_side``; centre crop
    ``crop_size``; values scaled from ``value_range`` to [-1, 1]. Flow (TV-L1 on greyscale frames) is
    clipped to ``value_range`` = +-20 pixels first, and its vectors scale with the resize.
    """

    modality: str
    value_range: tuple[float, float]
    fps: float = RELEASE_FPS
    short_side: int = RELEASE_SHORT_SIDE
    crop_size: int = RELEASE_CROP_SIZE

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """``[T, H, W, C]`` frames already at ``fps`` (rgb: uint8 pixels; flow: float pixels, channels
        x, y) -> ``[C, T, crop_size, crop_size]`` float32 in [-1, 1]."""
        frames = frames.permute(0, 3, 1, 2)  # [T, C, H, W]
        if self.modality == "flow":
            height, width = frames.shape[-2:]
            scale = self.short_side / min(height, width)
            frames = resize_flow(frames, (max(self.short_side, round(height * scale)),
                                          max(self.short_side, round(width * scale))))
        else:
            frames = resize_short_side(frames, self.short_side)
        low, high = self.value_range
        clip = center_crop(frames, self.crop_size).float().clamp(low, high)
        return to_model_range_(clip, low, high).permute(1, 0, 2, 3)

    def describe(self) -> str:
        """One line for documentation and model cards."""
        what = ("RGB values rescaled to [-1, 1]" if self.modality == "rgb" else
                f"greyscale; TV-L1 optical flow (x, y) clipped to [-{FLOW_BOUND:g}, {FLOW_BOUND:g}] and rescaled "
                f"to [-1, 1]")
        return (f"{self.fps:g} fps; resize (bilinear) so the shorter side is {self.short_side}; centre crop "
                f"{self.crop_size}x{self.crop_size}; {what}")


RELEASE_PREPROCESSING: dict[str, ReleasePreprocessing] = {
    "rgb": ReleasePreprocessing("rgb", (0.0, 255.0)),
    "flow": ReleasePreprocessing("flow", (-FLOW_BOUND, FLOW_BOUND)),
}
