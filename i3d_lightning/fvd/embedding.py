"""The reference FVD's embedding of a video: TF1 bilinear resize of every frame to 224x224, values
``0..255`` scaled to [-1, 1], and the rgb_scratch I3D's logits averaged over time (TensorFlow's
``RGB/inception_i3d/Mean:0``: 400 values, before the softmax), in fp32."""

from __future__ import annotations

import torch
from torch import nn

from i3d_lightning.data.transforms import check_model_range, to_model_range_
from i3d_lightning.errors import UserInputError
from i3d_lightning.fvd.resize import resize_bilinear_tf1
from i3d_lightning.models.i3d import MIN_FRAMES, InceptionI3d
from i3d_lightning.models.inference import optimize_for_inference, prepare_input

#: The frame size the reference protocol resizes to.
SIZE = 224


class VideoEmbedder(nn.Module):
    """``[N, T, H, W, 3]`` videos, values 0..255 (uint8 or float) -> ``[N, classes]`` float32 logits.

    ``preprocessed=True`` takes network-ready ``[N, T, 224, 224, 3]`` float input in [-1, 1] as it is.
    ``fast`` runs the fast inference path (:mod:`i3d_lightning.models.inference`; fp32 logits within
    1e-4 of the plain model). ``chunk`` videos go through the network at once.
    """

    def __init__(self, model: InceptionI3d, *, preprocessed: bool = False, fast: bool = True, chunk: int = 8) -> None:
        super().__init__()
        self.network = optimize_for_inference(model.eval(), fast=fast)
        self.preprocessed, self.fast, self.chunk = preprocessed, fast, chunk

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
            frames = to_model_range_(resize_bilinear_tf1(videos, (SIZE, SIZE)), 0.0, 255.0)
        return frames.permute(0, 4, 1, 2, 3)

    @torch.inference_mode()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        outputs = [self.network(prepare_input(self.network_input(part), self.fast)).float()
                   for part in videos.split(self.chunk)]
        return torch.cat(outputs)
