"""I3D features of videos: pooled ``Mixed_5c`` (1024-d) per sliding window or per video.

Output, per stream, ``<out>/<stream>/<video id>.npy``: float32 ``[N, 1024]`` for N windows of
``window`` frames every ``stride`` frames (on the 25 fps timeline; windows start at 0 and end inside
the video; a video shorter than a window gives one looped window), or ``[1024]`` for the whole video
in one pass. ``<out>/index.csv`` lists every file with its shape; ``<out>/failed_videos.csv`` the
videos that could not be read. Each file is written under a temporary name and renamed when
complete, and videos whose files exist are skipped, so an interrupted extraction resumes.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from i3d_lightning.atomic_files import atomic_output
from i3d_lightning.data.annotations import VideoRecord
from i3d_lightning.data.online_flow import OnlineFlow, add_device_flow
from i3d_lightning.data.skip_report import SkipReport
from i3d_lightning.models.i3d import InceptionI3d
from i3d_lightning.models.inference import autocast, check_inference_precision, optimize_for_inference, prepare_input


def feature_path(out_dir: Path, stream: str, video_id: str) -> Path:
    return out_dir / stream / f"{video_id}.npy"


def pending(records: list[VideoRecord], out_dir: Path, streams: Sequence[str]) -> list[VideoRecord]:
    """The records whose features are not all written yet."""
    return [r for r in records if not all(feature_path(out_dir, s, r.video_id).is_file() for s in streams)]


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Starts of the windows that fit in the video (one window at 0 if none does)."""
    return list(range(0, num_frames - window + 1, stride)) or [0]


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_output(path) as partial, partial.open("wb") as stream:
        np.save(stream, array)


class FeatureExtractor(pl.LightningModule):
    """Predict-loop module: each batch item is a whole video ``[1, C, T, S, S]`` per stream."""

    def __init__(self, towers: dict[str, InceptionI3d], out_dir: str | os.PathLike, *, window: int | None = 16,
                 stride: int = 16, precision: str = "32", fast: bool = True, chunk: int = 8,
                 online_flow: OnlineFlow | None = None) -> None:
        super().__init__()
        self.online_flow = online_flow or OnlineFlow()
        self.towers = nn.ModuleDict({name: optimize_for_inference(tower, fast=fast) for name, tower in towers.items()})
        self.out_dir = Path(out_dir)
        self.window, self.stride, self.precision, self.fast, self.chunk = window, stride, precision, fast, chunk
        self.skipped = SkipReport()

    def _features(self, stream: str, clip: torch.Tensor) -> torch.Tensor:
        """``[C, T, S, S]`` -> ``[N, 1024]`` (windows) or ``[1024]`` (whole video)."""
        tower = self.towers[stream]
        with autocast(self.device, self.precision):
            if self.window is None:
                whole = prepare_input(clip[None], self.fast)
                return tower.forward_endpoints(whole, ["Features"])["Features"][0].float()
            frames = clip.shape[1]
            windows = torch.stack([clip[:, (torch.arange(self.window) + start) % frames]
                                   for start in window_starts(frames, self.window, self.stride)])
            parts = [tower.forward_endpoints(prepare_input(part, self.fast), ["Features"])["Features"].float()
                     for part in windows.split(self.chunk)]
            return torch.cat(parts)

    def on_predict_start(self) -> None:
        check_inference_precision(self.precision, self.device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Flow computed on the device when the dataset sent frame pairs (``flow_on_device``)."""
        if isinstance(batch, dict) and "flow_pairs" in batch:
            return add_device_flow(batch, self.online_flow)
        return batch

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> int:
        """Write the features of the batch's videos; returns how many videos were written."""
        self.skipped.add(batch["skipped"])
        for row in range(batch["size"]):
            for stream in self.towers:
                features = self._features(stream, batch[stream][row, 0])
                _save(feature_path(self.out_dir, stream, batch["video_id"][row]), features.cpu().numpy())
        return batch["size"]

    def on_predict_epoch_end(self) -> None:
        self.skipped = self.skipped.gathered()


def write_index(out_dir: Path, streams: Sequence[str]) -> Path:
    """``index.csv``: stream, video id, file and array shape of every feature file under ``out_dir``."""
    rows = []
    for stream in streams:
        for path in sorted((out_dir / stream).rglob("*.npy")):
            if path.name.startswith("."):
                continue
            shape = np.load(path, mmap_mode="r").shape
            video_id = str(path.relative_to(out_dir / stream).with_suffix(""))
            rows.append((stream, video_id, str(path.relative_to(out_dir)), "x".join(map(str, shape))))
    index = out_dir / "index.csv"
    with index.open("w", newline="") as stream_file:
        writer = csv.writer(stream_file)
        writer.writerow(("stream", "video_id", "file", "shape"))
        writer.writerows(rows)
    return index
