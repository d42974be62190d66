"""The LightningDataModule that feeds I3D: video lists from a source, clips from VideoClipDataset.

* ``prepare_data`` (once per machine): what the source must fetch or generate.
* ``setup``: reads the annotations, writes the list of annotated-but-missing videos to the report
  folder, and checks before any training that the dataset is usable (videos found, some readable,
  clip not longer than every video checked).
* Training batches are shuffled (Lightning adds its DistributedSampler on several GPUs); evaluation
  batches are sharded with :class:`UnpaddedDistributedSampler`, so that each video is evaluated once
  and metrics over N processes equal those of one.
* Unreadable videos are skipped by the dataset and collected by :class:`SkipReport`.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from i3d_lightning.data import decoding
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset, collate_clips
from i3d_lightning.data.datasets import VideoList
from i3d_lightning.data.flow import count_flow_frames
from i3d_lightning.data.sampling import clip_span, resample_indices
from i3d_lightning.data.sources import VideoSource
from i3d_lightning.errors import UserInputError

log = logging.getLogger(__name__)


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank ``r`` of ``n`` takes items ``r, r + n, r + 2n, ...``: no padding, no duplicates.

    (torch's DistributedSampler repeats items to give every rank the same count, which would count
    some test videos twice.) Ranks may get one batch more or less than each other.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(self.rank, len(dataset), self.num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))


class EpochSampler(DistributedSampler):
    """Shuffles with a permutation drawn from (seed, epoch), sharded over the processes when several run.

    Lightning calls ``set_epoch`` before each epoch; the sampler passes the epoch on to the dataset, so
    that augmentations too depend only on (seed, epoch, item) and a resumed run repeats them exactly.
    Being a DistributedSampler, Lightning uses it as it is on several GPUs instead of wrapping it.
    """

    def __init__(self, dataset: VideoClipDataset, seed: int) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(dataset, num_replicas=dist.get_world_size() if distributed else 1,
                         rank=dist.get_rank() if distributed else 0, shuffle=True, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.epoch = epoch


def is_distributed() -> bool:
    """Whether several processes run together (torch.distributed initialised, world size above 1)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_objects(value: Any) -> list[Any]:
    """``value`` from every process, in rank order (``[value]`` when one process runs). A collective:
    every process must call it."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


class SkipReport:
    """Videos that could not be read, by video id: where and why."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str]] = {}

    def add(self, skipped: list[tuple[str, str, str]]) -> None:
        for video_id, path, reason in skipped:
            if video_id not in self.entries:
                log.warning("skipped unreadable video %s: %s", video_id, reason)
            self.entries[video_id] = (path, reason)

    def __len__(self) -> int:
        return len(self.entries)

    def gathered(self) -> SkipReport:
        """The videos skipped by all processes (a collective: every process must call it)."""
        report = SkipReport()
        for entries in gather_objects(self.entries):
            report.entries.update(entries)
        return report

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``video_id,path,reason`` rows (sorted) to ``path``."""
        return _write_rows(Path(path), ("video_id", "path", "reason"),
                           [(video_id, *entry) for video_id, entry in sorted(self.entries.items())])


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _write_rows(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


class VideoDataModule(pl.LightningDataModule):
    """Clips of a dataset ``source`` for the ``modalities`` of the stream (``["rgb"]``, ``["flow"]``
    or ``["rgb", "flow"]``).

    Args:
        source: a dataset source (:mod:`i3d_lightning.data.sources`).
        train_sampling / eval_sampling: how training / evaluation clips are drawn.
        batch_size: training clips per batch (per process); ``eval_batch_size`` videos per
            evaluation batch (defaults to ``batch_size``; 1 in whole-video mode, whose lengths differ).
        num_workers: DataLoader worker processes (``None``: one per CPU core available to this process,
            at most 4); ``worker_timeout`` seconds a batch may take before the loader gives up instead
            of hanging.
        on_error: ``skip`` unreadable videos (reported) or ``raise``.
        report_dir: where the lists of missing and skipped videos are written (the run folder).
        check_videos: how many training videos ``setup`` probes to catch unusable data early.
        seed: seed of the training order and augmentations (with the epoch and the item).
    """

    def __init__(self, source: VideoSource, *, modalities: list[str] | tuple[str, ...] = ("rgb",),
                 train_sampling: ClipSampling | None = None, eval_sampling: ClipSampling | None = None,
                 batch_size: int = 8, eval_batch_size: int | None = None, num_workers: int | None = None,
                 worker_timeout: float = 600.0, on_error: str = "skip", report_dir: str | None = None,
                 check_videos: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.source = source
        self.modalities = tuple(modalities)
        self.train_sampling = train_sampling or ClipSampling(train=True)
        self.eval_sampling = eval_sampling or ClipSampling(train=False)
        self.batch_size = batch_size
        self.eval_batch_size = 1 if self.eval_sampling.whole_video else (eval_batch_size or batch_size)
        self.num_workers = min(4, available_cpus()) if num_workers is None else num_workers
        self.worker_timeout = worker_timeout
        self.on_error = on_error
        self.report_dir = Path(report_dir) if report_dir else None
        self.check_videos = check_videos
        self.seed = seed
        self.lists: dict[str, VideoList] = {}
        self.datasets: dict[str, VideoClipDataset] = {}
        self.skipped = SkipReport()

    @property
    def classes(self) -> list[str]:
        if not self.lists:
            raise RuntimeError("call setup() first")
        return next(iter(self.lists.values())).classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in stages.get(stage or "fit", ("train", "val")):
            if split in self.lists:
                continue
            videos = self.source.video_list(split).require_videos(f"dataset={self.source.name} ({split})")
            self._report_missing(split, videos)
            sampling = self.train_sampling if split == "train" else self.eval_sampling
            self.lists[split] = videos
            self.datasets[split] = VideoClipDataset(videos.records, sampling, modalities=self.modalities,
                                                    flow_root=self.source.flow_root, on_error=self.on_error,
                                                    seed=self.seed)
            if split == "train":
                self._check_clip_length(videos)
        class_lists = {len(videos.classes) for videos in self.lists.values()}
        if len(class_lists) > 1:
            raise UserInputError(f"dataset={self.source.name}: the splits have different class lists")

    def _report_missing(self, split: str, videos: VideoList) -> None:
        if not videos.missing:
            return
        log.warning("dataset=%s (%s): %d annotated videos are missing on disk", self.source.name, split,
                    len(videos.missing))
        if self.report_dir is not None:
            path = _write_rows(self.report_dir / f"missing_videos_{split}.csv", ("video_id", "expected_at"),
                               videos.missing)
            log.warning("the list of missing videos is in %s", path)

    def _check_clip_length(self, videos: VideoList) -> None:
        """Probe a few training videos (and their flow): fail early if none is readable or all are
        shorter than a clip."""
        if self.check_videos <= 0:
            return
        dataset = self.datasets["train"]
        rng = np.random.default_rng(0)
        chosen = rng.choice(len(videos.records), min(self.check_videos, len(videos.records)), replace=False)
        lengths, errors = [], []
        for index in chosen:
            record = videos.records[index]
            try:
                counts = []
                if "rgb" in self.modalities:
                    info = decoding.probe(record.path)
                    counts.append(len(resample_indices(info.num_frames, info.fps, self.train_sampling.fps)))
                if "flow" in self.modalities:
                    counts.append(count_flow_frames(dataset.flow_folder(record)))
                lengths.append(min(counts))
            except UserInputError as error:
                errors.append(str(error))
        if not lengths:
            raise UserInputError(f"none of the {len(chosen)} training videos checked could be read; first: {errors[0]}")
        span = clip_span(self.train_sampling.clip_len, self.train_sampling.stride)
        if span > max(lengths):
            raise UserInputError(f"a training clip spans {span} frames (clip_len {self.train_sampling.clip_len}, "
                                 f"stride {self.train_sampling.stride}) but the longest of {len(lengths)} videos "
                                 f"checked has {max(lengths)}: lower data.train_sampling.clip_len or .stride")

    def _loader(self, split: str, *, batch_size: int, sampler=None) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"no {split} data: call setup() for its stage first")
        workers = self.num_workers
        # Workers are not persistent: each epoch's workers start from the dataset with the new epoch.
        return DataLoader(self.datasets[split], batch_size=batch_size, sampler=sampler, num_workers=workers,
                          collate_fn=collate_clips, pin_memory=torch.cuda.is_available(),
                          timeout=self.worker_timeout if workers > 0 else 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", batch_size=self.batch_size,
                            sampler=EpochSampler(self.datasets["train"], self.seed))

    def _eval_loader(self, split: str) -> DataLoader:
        sampler = UnpaddedDistributedSampler(self.datasets[split]) if is_distributed() else None
        return self._loader(split, batch_size=self.eval_batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def steps_per_epoch(self) -> int:
        """Training batches per epoch on one process."""
        return math.ceil(len(self.datasets["train"]) / self.batch_size)
