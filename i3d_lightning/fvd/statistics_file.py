"""Reference statistics saved to a file (``--save-stats``): the mean and covariance (float64) of one
side's embeddings, their count, the clip protocol and a fingerprint of the network's weights, so that a
reference set is embedded once and only compared with statistics made the same way."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from i3d_lightning.atomic_files import atomic_output
from i3d_lightning.errors import UserInputError
from i3d_lightning.fvd.distance import GaussianStatistics

FORMAT = "i3d-lightning FVD statistics 1"


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the state dict (names, shapes and float32 values, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_statistics(path: str | os.PathLike, statistics: GaussianStatistics, description: dict) -> Path:
    """Write ``statistics`` and ``description`` (protocol, weights fingerprint, ...) as ``.npz``, atomically."""
    path = Path(path)
    with atomic_output(path) as partial, partial.open("wb") as stream:
        np.savez(stream, format=np.array(FORMAT), mean=statistics.mean.numpy(),
                 covariance=statistics.covariance.numpy(), count=np.array(statistics.count),
                 description=np.array(json.dumps(description, sort_keys=True)))
    return path


def statistics_path(path: str | os.PathLike) -> Path:
    """``path`` ending in ``.npz`` (added when it does not): statistics files are recognised by it."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def is_statistics_file(path: str | os.PathLike) -> bool:
    path = Path(path)
    if not (path.is_file() and path.suffix == ".npz") or not zipfile.is_zipfile(path):
        return False  # not an archive at all: the caller says what it is not
    with np.load(path, allow_pickle=False) as loaded:
        return "format" in loaded.files and str(loaded["format"]) == FORMAT


def load_statistics(path: str | os.PathLike) -> tuple[GaussianStatistics, dict]:
    """The statistics and description saved by :func:`save_statistics`."""
    try:
        with np.load(path, allow_pickle=False) as loaded:
            statistics = GaussianStatistics(int(loaded["count"]), torch.from_numpy(loaded["mean"]),
                                            torch.from_numpy(loaded["covariance"]))
            return statistics, json.loads(str(loaded["description"]))
    except (OSError, ValueError, KeyError) as error:
        raise UserInputError(f"{path}: not a readable FVD statistics file ({error})") from None
