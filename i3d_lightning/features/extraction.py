"""I3D features of videos: pooled ``Mixed_5c`` (1024-d) per sliding window or per video.

Output, per modality, ``<out>/<modality>/<video id>.npy``: float32 ``[N, 1024]`` for N windows of
``window`` frames every ``stride`` frames (on the video's timeline at the chosen frame rate; windows
start at 0 and end inside the video; a video shorter than a window gives one looped window), or
``[1024]`` for the whole video in one pass; with ``concatenate``, one ``<out>/<video id>.npy`` of
``[N, 2048]`` (rgb's 1024 values, then flow's). Each window's feature is the centre crop's, or the mean
of the 10 crops' (:func:`~i3d_lightning.preprocessing.ten_crops`). ``<out>/index.csv`` lists every
file with its shape; ``<out>/skipped_videos.csv`` the videos that could not be read;
``<out>/conventions.json`` how the features were made (an extraction into a folder made otherwise is
refused). Each file is written under a temporary name and renamed when
complete, and videos whose files exist are skipped, so an interrupted extraction resumes. Frames
travel as uint8 and windows of several videos share network calls (:mod:`i3d_lightning.runtime.video_inference`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from i3d_lightning.atomic_files import atomic_output, write_csv, write_json
from i3d_lightning.data.annotations import VideoRecord
from i3d_lightning.data.segments import VideoSegments
from i3d_lightning.errors import UserInputError
from i3d_lightning.features.settings import CROP_COUNTS
from i3d_lightning.flow.online import OnlineFlow, device_flow_views
from i3d_lightning.models.i3d import InceptionI3d
from i3d_lightning.models.inference import optimize_for_inference, prepare_input, run_in_batches
from i3d_lightning.models.temporal_tiles import tile_feature_sum
from i3d_lightning.preprocessing import RELEASE_CROP_SIZE, center_crop, rgb_to_model_range, ten_crops
from i3d_lightning.runtime.distributed import gather_objects
from i3d_lightning.runtime.video_inference import VideoInferenceLoop
from i3d_lightning.video.sampling import window_starts

#: The output name of files that hold both modalities' features, rgb's first.
CONCATENATED = "rgb+flow"
#: A one-pass network call holds at most the frames of ``batch_size`` clips of 64 frames (the release's
#: clip length), in crops of the same video (at least one).
ONE_PASS_CALL_FRAMES = 64


def feature_path(out_dir: Path, output: str, video_id: str) -> Path:
    """Where the features of ``output`` (a modality, or :data:`CONCATENATED`) of a video are written."""
    return out_dir / f"{video_id}.npy" if output == CONCATENATED else out_dir / output / f"{video_id}.npy"


def output_names(modalities: Sequence[str], concatenate: bool) -> tuple[str, ...]:
    """The outputs (see :func:`feature_path`) each video gets: one per modality, or the concatenated one."""
    return (CONCATENATED,) if concatenate else tuple(modalities)


def pending(records: list[VideoRecord], out_dir: Path, outputs: Sequence[str]) -> list[VideoRecord]:
    """The records whose features are not all written yet."""
    return [r for r in records if not all(feature_path(out_dir, o, r.video_id).is_file() for o in outputs)]


def check_conventions(out_dir: Path, conventions: dict[str, Any]) -> None:
    """Refuse to add features made another way than ``conventions.json`` says to a folder that holds
    features (a folder of mixed features would be read as one set). A folder without features is new,
    whatever its ``conventions.json`` says (a start that was refused or stopped before any feature)."""
    path = out_dir / "conventions.json"
    if not path.is_file() or not any(not p.name.startswith(".") for p in out_dir.rglob("*.npy")):
        return
    recorded = json.loads(path.read_text())
    if recorded != conventions:
        differ = ", ".join(f"{key}: {recorded.get(key)!r} there, {value!r} now"
                           for key, value in conventions.items() if recorded.get(key) != value)
        raise UserInputError(f"{out_dir} holds features made another way ({differ}); extract into a new "
                             f"folder, or give the same options to resume")


def record_conventions(out_dir: Path, conventions: dict[str, Any]) -> None:
    """Write ``conventions.json``: once the inputs and weights are accepted, before the first feature."""
    write_json(out_dir / "conventions.json", conventions)


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_output(path) as partial, partial.open("wb") as stream:
        np.save(stream, array)


class SavedSegments:
    """The finished segments of videos that are not written whole yet, under ``<out>/.segments/<video id>/``
    (one ``.npz`` per segment: its features per modality and its tile's steps), so that a rerun resumes a
    long video from its last finished segment. A segment is known by its number, its video's count and
    its frames, which the options (kept equal by ``conventions.json``) and the batch size decide."""

    def __init__(self, out_dir: Path) -> None:
        self.folder = out_dir / ".segments"

    def _path(self, video_id: str, number: int, count: int, span: tuple[int, int]) -> Path:
        return self.folder / video_id / f"{number}-of-{count}-frames-{span[0]}-{span[1]}.npz"

    def save(self, video_id: str, number: int, count: int, span: tuple[int, int],
             features: dict[str, torch.Tensor], steps: int) -> None:
        with atomic_output(self._path(video_id, number, count, span)) as partial, partial.open("wb") as stream:
            np.savez(stream, steps=np.array(steps), **{modality: value.numpy() for modality, value in features.items()})

    def load(self, video_id: str, number: int, count: int,
             span: tuple[int, int]) -> tuple[dict[str, torch.Tensor], int] | None:
        path = self._path(video_id, number, count, span)
        if not path.is_file():
            return None
        with np.load(path) as saved:
            return {k: torch.from_numpy(saved[k]) for k in saved.files if k != "steps"}, int(saved["steps"])

    def remove(self, video_id: str) -> None:
        """Forget a video's segments (it is written): its files, then its folders while they are empty."""
        folder = self.folder / video_id
        for path in folder.glob("*.npz"):
            path.unlink()
        while folder != self.folder.parent:
            try:
                folder.rmdir()
            except OSError:  # not empty (other videos), or never made
                return
            folder = folder.parent


class FeatureExtractor(VideoInferenceLoop):
    """Predict loop over :class:`~i3d_lightning.data.clip_dataset.VideoClipDataset` items of whole videos
    (one view ``[1, C, T, S, S]`` per modality: rgb uint8, scaled on the device; flow float in [-1, 1]).

    The windows of consecutive videos share network calls of ``batch_size`` windows: videos wait in
    ``pending`` until they hold a batch's worth, and only one call's float windows exist at a time.
    """

    def __init__(self, towers: dict[str, InceptionI3d], out_dir: str | os.PathLike, *, window: int | None = 16,
                 stride: int = 16, crops: int = 1, crop_size: int = RELEASE_CROP_SIZE, concatenate: bool = False,
                 precision: str = "32", fast: bool = True, batch_size: int = 8,
                 online_flow: OnlineFlow | None = None) -> None:
        super().__init__(precision, batch_size)
        if crops not in CROP_COUNTS:
            raise UserInputError(f"crops must be 1 or 10, got {crops}")
        if concatenate and set(towers) != {"rgb", "flow"}:
            raise UserInputError("concatenated features need both the rgb and the flow tower")
        self.online_flow = online_flow or OnlineFlow()
        # rgb before flow: the order of a concatenated file's halves.
        self.towers = nn.ModuleDict({name: optimize_for_inference(towers[name], fast=fast)
                                     for name in sorted(towers, key=("rgb", "flow").index)})
        self.out_dir = Path(out_dir)
        self.window, self.stride, self.fast = window, stride, fast
        self.crops, self.crop_size, self.concatenate = crops, crop_size, concatenate
        self.pending: list[dict[str, Any]] = []
        #: Features of videos whose segments (data/segments.py) are not all in yet: video id -> (segment
        #: count, {segment number: ({modality: [n, 1024] or a tile's [1024] sum}, the tile's steps or 0)}).
        self.unfinished: dict[str, tuple[int, dict[int, tuple[dict[str, torch.Tensor], int]]]] = {}
        self.saved_segments = SavedSegments(self.out_dir)

    def resume(self, items: VideoSegments, *, keep: bool) -> None:
        """Drop from ``items`` the segments an earlier run finished (:class:`SavedSegments`); ``keep``: add
        their features (the first process does, where the segments of a video meet)."""
        remaining = []
        for segment in items.segments:
            video_id = items.videos.records[segment.video].video_id
            saved = None if segment.stop is None else self.saved_segments.load(
                video_id, segment.number, segment.count, (segment.start, segment.stop))
            if saved is None:
                remaining.append(segment)
            elif keep:
                self._add_segment(video_id, segment.number, segment.count, *saved)
        items.segments = remaining

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
        # Segments of a video that went to several processes meet on the first one. A video whose
        # segments are not all there (one could not be read; it is listed as skipped) is not written.
        gathered = gather_objects(self.unfinished)
        self.unfinished = {}
        if self.trainer.is_global_zero and len(gathered) > 1:
            for unfinished in gathered:
                for video_id, (count, parts) in unfinished.items():
                    for number, (features, steps) in parts.items():
                        self._add_segment(video_id, number, count, features, steps)
        self.unfinished = {}
        super().on_predict_epoch_end()

    def _starts(self, item: dict[str, Any]) -> list[int]:
        frames = next(iter(item[stream] for stream in self.towers)).shape[2]
        return [0] if self.window is None else window_starts(frames, self.window, self.stride)

    def _write_pending(self) -> None:
        """Write the features of every pending video."""
        if not self.pending:
            return
        features = {modality: self._features(tower, self.pending, modality)
                    for modality, tower in self.towers.items()}  # per item, [N, 1024] or [1024]
        for position, item in enumerate(self.pending):
            steps = 0 if item.get("steps") is None else item["steps"][1] - item["steps"][0]
            own = {modality: per_item[position].cpu() for modality, per_item in features.items()}
            number, count = item.get("segment", 0), item.get("segments", 1)
            if count > 1:  # kept until the video is written: a rerun starts after it
                self.saved_segments.save(item["video_id"], number, count, item["span"], own, steps)
            self._add_segment(item["video_id"], number, count, own, steps)
        self.pending = []

    def _add_segment(self, video_id: str, number: int, count: int, features: dict[str, torch.Tensor],
                     steps: int = 0) -> None:
        """Keep segment ``number`` of ``count`` of a video (a tile's ``steps``: its features are their sum);
        write the video's files once all are in."""
        _, parts = self.unfinished.setdefault(video_id, (count, {}))
        parts[number] = (features, steps)
        if len(parts) < count:
            return
        del self.unfinished[video_id]
        self._write_video(video_id, count, parts)
        self.saved_segments.remove(video_id)

    def _write_video(self, video_id: str, count: int,
                     parts: dict[int, tuple[dict[str, torch.Tensor], int]]) -> None:
        if count == 1:
            whole = parts[0][0]
        elif self.window is None:  # a one-pass vector: the tiles' sums over all their steps
            total = sum(parts[n][1] for n in range(count))
            whole = {modality: sum(parts[n][0][modality] for n in range(count)) / total for modality in self.towers}
        else:  # windows in video order ([N, 1024])
            whole = {modality: torch.cat([parts[n][0][modality] for n in range(count)]) for modality in self.towers}
        if self.concatenate:
            values = torch.cat([whole[modality] for modality in self.towers], dim=-1)
            _save(feature_path(self.out_dir, CONCATENATED, video_id), values.numpy())
            return
        for modality, values in whole.items():
            _save(feature_path(self.out_dir, modality, video_id), values.numpy())

    def _features(self, tower: nn.Module, items: list[dict[str, Any]], modality: str) -> list[torch.Tensor]:
        """Per item's clip ``[1, C, T, H, W]``: ``[N, 1024]`` for its N windows, or ``[1024]`` for the whole
        clip (for a tile of a one-pass video, the sum over the steps it owns)."""
        clips = [item[modality][0] for item in items]
        if self.window is None:  # whole clips differ in length: a call of their own each
            return [self._crop_averages(tower, [(clip, 0, clip.shape[1])], modality, item.get("steps"))[0]
                    for clip, item in zip(clips, items, strict=True)]
        windows = [[(clip, start, self.window) for start in window_starts(clip.shape[1], self.window, self.stride)]
                   for clip in clips]
        features = self._crop_averages(tower, [window for video in windows for window in video], modality)
        return list(features.split([len(video) for video in windows]))

    def _crop_averages(self, tower: nn.Module, windows: list[tuple[torch.Tensor, int, int]],
                       modality: str, steps: tuple[int, int] | None = None) -> torch.Tensor:
        """``[W, 1024]``: each (clip, start, length) window's feature, averaged over its crops. The
        network sees ``batch_size`` crops per call, whichever windows they come from; a one-pass clip, as
        many as hold the frames of ``batch_size`` 64-frame clips. ``steps``: the window is a tile that
        owns these average-pool steps, whose features are summed (:mod:`~i3d_lightning.models.temporal_tiles`)."""
        views: dict[int, torch.Tensor] = {}  # window -> its crops [crops, C, L, S, S], while a call needs them

        def inputs(part: slice) -> torch.Tensor:
            batch = []
            for index in range(part.start, part.stop):
                window, crop = divmod(index, self.crops)
                if window not in views:
                    views.clear()
                    views[window] = self._crops_of(*windows[window], flow=modality == "flow")
                batch.append(views[window][crop])
            return torch.stack(batch)

        batch_size = self.batch_size
        if self.window is None:
            batch_size = max(1, self.batch_size * ONE_PASS_CALL_FRAMES // max(length for _, _, length in windows))
        features = self._run(tower, len(windows) * self.crops, inputs, batch_size, steps)
        return features.view(len(windows), self.crops, -1).mean(dim=1)

    def _crops_of(self, clip: torch.Tensor, start: int, length: int, *, flow: bool) -> torch.Tensor:
        """``[crops, C, length, S, S]`` float in [-1, 1]: the crops of ``length`` frames of ``clip`` from ``start``."""
        window = _window(clip, start, length)
        if self.crops == 10:
            return _model_range(ten_crops(window, self.crop_size, flow=flow))
        return _model_range(center_crop(window, self.crop_size)[None])

    def _run(self, tower: nn.Module, count: int, inputs: Any, batch_size: int,
             steps: tuple[int, int] | None = None) -> torch.Tensor:
        def pooled(clips: torch.Tensor) -> torch.Tensor:
            clips = prepare_input(clips, self.fast)
            if steps is not None:
                return tile_feature_sum(tower, clips, steps)
            return tower.forward_endpoints(clips, ["Features"])["Features"]
        return run_in_batches(pooled, count, inputs, batch_size=batch_size, device=self.device,
                              precision=self.precision)


def _window(clip: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """``length`` frames of ``[C, T, S, S]`` from ``start``, looping past the end (short videos)."""
    frames = clip.shape[1]
    return clip[:, (torch.arange(length, device=clip.device) + start) % frames]


def _model_range(clips: torch.Tensor) -> torch.Tensor:
    """Float clips in [-1, 1]: uint8 rgb scaled here, on the device; flow (float) as it is."""
    return rgb_to_model_range(clips) if clips.dtype == torch.uint8 else clips


def write_index(out_dir: Path, outputs: Sequence[str]) -> Path:
    """``index.csv``: output (modality or :data:`CONCATENATED`), video id, file and array shape of every
    feature file under ``out_dir``."""
    rows = []
    for output in outputs:
        folder = out_dir if output == CONCATENATED else out_dir / output
        for path in sorted(folder.rglob("*.npy")):
            if path.name.startswith("."):
                continue
            shape = np.load(path, mmap_mode="r").shape
            video_id = str(path.relative_to(folder).with_suffix(""))
            rows.append((output, video_id, str(path.relative_to(out_dir)), "x".join(map(str, shape))))
    return write_csv(out_dir / "index.csv", ("stream", "video_id", "file", "shape"), rows)
