"""The release's sample clip, and single-clip inputs in the release's formats (sample evaluation).

* ``.npy``: the release's arrays, ``(1, T, 224, 224, C)`` float in [-1, 1] (C = 3 rgb, 2 flow);
* ``.gif``: the release's renders of them: rgb as ``(x + 1) / 2`` (so ``pixel / 255 * 2 - 1`` gives the
  input back), flow as ``clip(flow + 0.5, 0, 1)`` in R (x) and G (y) (so ``pixel / 255 - 0.5``);
* any other file: a video, preprocessed as the release did
  (:data:`~i3d_lightning.preprocessing.RELEASE_PREPROCESSING`); for flow, TV-L1
  (:mod:`~i3d_lightning.flow.tvl1`) of its greyscale frames first.

Every loader returns a float32 tensor ``[1, C, T, H, W]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from i3d_lightning.errors import UserInputError, not_a_file
from i3d_lightning.flow.tvl1 import grey_from_rgb, tvl1_flow_in_batches
from i3d_lightning.models.streams import CHANNELS
from i3d_lightning.preprocessing import RELEASE_PREPROCESSING, check_model_range, to_model_range_
from i3d_lightning.video import decoding
from i3d_lightning.video.sampling import resample_indices, short_side_size
from i3d_lightning.weights import release
from i3d_lightning.weights.release import WeightsSource

SAMPLE_NAME = "v_CricketShot_g04_c01"
#: Frame pairs per TV-L1 call when a flow input is computed from a video.
FLOW_PAIRS_PER_CALL = 16


def release_sample(modality: str, source: WeightsSource = WeightsSource()) -> Path:
    """The release's sample clip of ``modality``: its ``.npy`` if a mirror or the cache has it or it
    can be downloaded, else the ``.gif`` render from a mirror (as in ``shared/deepmind-i3d``)."""
    npy, gif = f"{SAMPLE_NAME}_{modality}.npy", f"{SAMPLE_NAME}_{modality}.gif"
    for name in (npy, gif):
        found = release.find_in_mirror(name, source)
        if found is not None:
            return found
    try:
        return release.fetch_release_file(npy, source)
    except release.ReleaseFileError as error:
        raise release.ReleaseFileError(f"{error}\nOr give the clip yourself: sample.{modality}=PATH (the release's "
                                       f".npy or .gif, or any video)") from None


def load_input(path: str | os.PathLike, modality: str) -> torch.Tensor:
    """Load ``path`` (``.npy``, ``.gif`` or, for rgb, a video) as a ``[1, C, T, H, W]`` input."""
    if modality not in CHANNELS:
        raise ValueError(f"modality must be one of {sorted(CHANNELS)}, got {modality!r}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise not_a_file(path, f"{modality} input")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        clip = _load_npy(path, modality)
    elif suffix == ".gif":
        clip = _load_gif(path, modality)
    else:
        clip = _load_video(path, modality)
    return clip.unsqueeze(0)


def _load_npy(path: Path, modality: str) -> torch.Tensor:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path}: not a readable .npy array ({error})") from error
    channels = CHANNELS[modality]
    if array.ndim != 5 or array.shape[0] != 1 or array.shape[-1] != channels:
        raise UserInputError(f"{path}: expected the release's layout (1, T, H, W, {channels}) for "
                             f"{modality}, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise UserInputError(f"{path}: expected float values in [-1, 1], got dtype {array.dtype}")
    check_model_range(array, str(path), " (rescale pixels as x / 127.5 - 1)")
    return torch.from_numpy(array[0].astype(np.float32)).permute(3, 0, 1, 2)


def read_gif(path: str | os.PathLike) -> np.ndarray:
    """Every frame of a GIF as uint8 RGB ``[T, H, W, 3]``."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UserInputError(f"{path}: not a readable GIF ({error})") from error


def _load_gif(path: Path, modality: str) -> torch.Tensor:
    pixels = torch.from_numpy(read_gif(path)).permute(3, 0, 1, 2).float()  # [3, T, H, W] in [0, 255]
    if modality == "rgb":
        return to_model_range_(pixels, 0.0, 255.0)
    return pixels[:2] / 255 - 0.5  # undoes the render, clip(flow + 0.5, 0, 1); not a [-1, 1] scaling


def _load_video(path: Path, modality: str) -> torch.Tensor:
    preprocess = RELEASE_PREPROCESSING[modality]
    info = decoding.probe(path)
    indices = resample_indices(info.num_frames, info.fps, preprocess.fps)
    if modality == "rgb":
        return preprocess(torch.from_numpy(decoding.read_frames(path, indices)))
    # Flow as the release made it: TV-L1 between consecutive greyscale frames at the shorter side
    # 256 (one flow frame fewer than the video has), then cropped, clipped and scaled.
    size = short_side_size(info.width, info.height, preprocess.short_side)
    grey = grey_from_rgb(torch.from_numpy(decoding.read_frames(path, indices, size=size)))
    if len(grey) < 2:
        raise UserInputError(f"{path}: {len(grey)} frame at {preprocess.fps:g} fps, no flow")
    return preprocess(tvl1_flow_in_batches(grey[:-1], grey[1:], FLOW_PAIRS_PER_CALL))
