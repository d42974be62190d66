"""I3D features of videos: pooled ``Mixed_5c`` (1024-d) per sliding window or per video.

Output, per stream, ``<out>/<stream>/<video id>.npy``: float32 ``[N, 1024]`` for N windows of
``window`` frames every ``stride`` frames (on the 25 fps timeline; windows start at 0 and end inside
the video; a video shorter than a window gives one looped window), or ``[1024]`` for the whole video
in one pass. ``<out>/index.csv`` lists every file with its shape; ``<out>/failed_videos.csv`` the
videos that could not be read. Each file is written under a temporary name and renamed when
complete, and videos whose files exist are skipped, so an interrupted extraction resumes. Frames
travel as uint8 and windows of several videos share network calls (:mod:`i3d_lightning.runtime.video_inference`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from i3d_lightning.atomic_files import atomic_output
from i3d_lightning.data.annotations import VideoRecord
from i3d_lightning.flow.online import OnlineFlow, device_flow_views
from i3d_lightning.models.i3d import InceptionI3d
from i3d_lightning.models.inference import optimize_for_inference, prepare_input, run_in_batches
from i3d_lightning.preprocessing import rgb_to_model_range
from i3d_lightning.runtime.video_inference import VideoInferenceLoop


def feature_path(out_dir: Path, modality: str, video_id: str) -> Path:
    return out_dir / modality / f"{video_id}.npy"


def pending(records: list[VideoRecord], out_dir: Path, streams: Sequence[str]) -> list[VideoRecord]:
    """The records whose features are not all written yet."""
    return [r for r in records if not all(feature_path(out_dir, s, r.video_id).is_file() for s in streams)]


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Starts of the windows that fit in the video (one window at 0 if none does)."""
    return list(range(0, num_frames - window + 1, stride)) or [0]


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_output(path) as partial, partial.open("wb") as stream:
        np.save(stream, array)


class FeatureExtractor(VideoInferenceLoop):
    """Predict loop over :class:`~i3d_lightning.data.clip_dataset.VideoClipDataset` items of whole videos
    (one view ``[1, C, T, S, S]`` per modality: rgb uint8, scaled on the device; flow float in [-1, 1]).

    The windows of consecutive videos share network calls of ``batch_size`` windows: videos wait in
    ``pending`` until they hold a batch's worth, and only one call's float windows exist at a time.
    """

    def __init__(self, towers: dict[str, InceptionI3d], out_dir: str | os.PathLike, *, window: int | None = 16,
                 stride: int = 16, precision: str = "32", fast: bool = True, batch_size: int = 8,
                 online_flow: OnlineFlow | None = None) -> None:
        super().__init__(precision, batch_size)
        self.online_flow = online_flow or OnlineFlow()
        self.towers = nn.ModuleDict({name: optimize_for_inference(tower, fast=fast) for name, tower in towers.items()})
        self.out_dir = Path(out_dir)
        self.window, self.stride, self.fast = window, stride, fast
        self.pending: list[dict[str, Any]] = []

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Flow computed on the device for the videos whose frame pairs the dataset sent (``flow_on_device``)."""
        on_device = [item for item in batch["videos"] if "flow_pairs" in item]
        if on_device:
            flows = device_flow_views([item.pop("flow_pairs") for item in on_device], self.online_flow)
            for item, flow in zip(on_device, flows, strict=True):
                item["flow"] = flow
        return batch

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> int:
        """Queue the step's readable videos; write the features of the queue once it fills a network call."""
        self.skipped.add(batch["skipped"])
        self.pending += batch["videos"]
        if self.window is None or sum(len(self._starts(item)) for item in self.pending) >= self.batch_size:
            self._write_pending()
        return len(batch["videos"])

    def on_predict_epoch_end(self) -> None:
        self._write_pending()
        super().on_predict_epoch_end()

    def _starts(self, item: dict[str, Any]) -> list[int]:
        frames = next(iter(item[stream] for stream in self.towers)).shape[2]
        return [0] if self.window is None else window_starts(frames, self.window, self.stride)

    def _write_pending(self) -> None:
        """Write the features of every pending video."""
        if not self.pending:
            return
        for stream, tower in self.towers.items():
            clips = [item[stream][0] for item in self.pending]  # [C, T, S, S] each
            for item, values in zip(self.pending, self._features(tower, clips), strict=True):
                _save(feature_path(self.out_dir, stream, item["video_id"]), values.cpu().numpy())
        self.pending = []

    def _features(self, tower: nn.Module, clips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per clip ``[C, T, S, S]``: ``[N, 1024]`` for its N windows, or ``[1024]`` for the whole clip."""
        if self.window is None:
            return [self._run(tower, 1, lambda part, clip=clip: _model_range(clip[None]))[0] for clip in clips]
        counts = [len(window_starts(clip.shape[1], self.window, self.stride)) for clip in clips]
        windows = [(clip, start) for clip in clips for start in window_starts(clip.shape[1], self.window, self.stride)]
        features = self._run(tower, len(windows), lambda part: torch.stack(
            [_model_range(_window(clip, start, self.window)) for clip, start in windows[part]]))
        return list(features.split(counts))

    def _run(self, tower: nn.Module, count: int, inputs: Any) -> torch.Tensor:
        def pooled(clips: torch.Tensor) -> torch.Tensor:
            return tower.forward_endpoints(prepare_input(clips, self.fast), ["Features"])["Features"]
        return run_in_batches(pooled, count, inputs, batch_size=self.batch_size, device=self.device,
                              precision=self.precision)


def _window(clip: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """``length`` frames of ``[C, T, S, S]`` from ``start``, looping past the end (short videos)."""
    frames = clip.shape[1]
    return clip[:, (torch.arange(length, device=clip.device) + start) % frames]


def _model_range(clips: torch.Tensor) -> torch.Tensor:
    """Float clips in [-1, 1]: uint8 rgb scaled here, on the device; flow (float) as it is."""
    return rgb_to_model_range(clips) if clips.dtype == torch.uint8 else clips


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
