"""The reference FVD's embedding of a video: TF1 bilinear resize of every frame to 224x224, values
``0..255`` scaled to [-1, 1], and the rgb_scratch I3D's logits averaged over time (TensorFlow's
``RGB/inception_i3d/Mean:0``: 400 values, before the softmax), in fp32."""

from __future__ import annotations

import torch
from torch import nn

from i3d_lightning.errors import UserInputError
from i3d_lightning.fvd.resize import resize_bilinear_tf1
from i3d_lightning.hardware import check_precision_name
from i3d_lightning.models.i3d import MIN_FRAMES, InceptionI3d
from i3d_lightning.models.inference import check_batch_size, optimize_for_inference, prepare_input, run_in_batches
from i3d_lightning.preprocessing import check_model_range, to_model_range_

#: The frame size the reference protocol resizes to.
SIZE = 224


class VideoEmbedder(nn.Module):
    """``[N, T, H, W, 3]`` videos, values 0..255 (uint8 or float) -> ``[N, classes]`` float32 logits.

    ``resolution`` (height, width): frames are first resized to it (TF1 bilinear), as a protocol may ask.
    ``preprocessed=True`` takes network-ready ``[N, T, 224, 224, 3]`` float input in [-1, 1] as it is.
    ``fast`` runs the fast inference path (:mod:`i3d_lightning.models.inference`; fp32 logits within
    1e-4 of the plain model). At most ``batch_size`` videos go through the network at once, in
    ``precision`` (``32``: IEEE fp32 on every device, ``tf32``, ``bf16``). The resize and the scaling
    run where the videos are: give them on the accelerator.
    """

    def __init__(self, model: InceptionI3d, *, preprocessed: bool = False, fast: bool = True, batch_size: int = 8,
                 precision: str = "32", resolution: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.network = optimize_for_inference(model.eval(), fast=fast)
        self.preprocessed, self.fast, self.resolution = preprocessed, fast, resolution
        self.batch_size, self.precision = check_batch_size(batch_size), check_precision_name(precision)

    def network_input(self, videos: torch.Tensor) -> torch.Tensor:
        """The network's input ``[N, 3, T, 224, 224]`` in [-1, 1] for ``videos`` (see the class)."""
        if videos.dim() != 5 or videos.shape[-1] != 3:
            raise UserInputError(f"videos must be [N, T, H, W, 3] (RGB, channels last), got shape "
                                 f"{tuple(videos.shape)}")
        if videos.shape[1] < MIN_FRAMES:
            raise UserInputError(f"videos of {videos.shape[1]} frames are too short for I3D: it needs at least "
                                 f"{MIN_FRAMES}")
        if self.preprocessed:
            if tuple(videos.shape[2:4]) != (SIZE, SIZE) or not videos.is_floating_point():
                raise UserInputError(f"preprocessed videos must be float [N, T, {SIZE}, {SIZE}, 3] in [-1, 1], got "
                                     f"{videos.dtype} of shape {tuple(videos.shape)}")
            check_model_range(videos, "preprocessed videos", " (videos in [-1, 1] are used as they are)")
            frames = videos.to(torch.float32)
        else:
            if self.resolution is not None:
                videos = resize_bilinear_tf1(videos, self.resolution)
            frames = to_model_range_(resize_bilinear_tf1(videos, (SIZE, SIZE)), 0.0, 255.0)
        return frames.permute(0, 4, 1, 2, 3)

    def frame_size(self, videos: torch.Tensor) -> tuple[int, int]:
        """(height, width) of the frames that are resized to 224x224: the protocol's resolution, if any."""
        return self.resolution if self.resolution is not None and not self.preprocessed else \
            tuple(videos.shape[-3:-1])

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return run_in_batches(lambda clips: self.network(prepare_input(clips, self.fast)), len(videos),
                              lambda part: self.network_input(videos[part]), batch_size=self.batch_size,
                              device=videos.device, precision=self.precision)
