"""The LightningDataModule that feeds I3D: video lists from a source, clips from VideoClipDataset.

* ``prepare_data`` (once per machine): what the source must fetch or generate.
* ``setup``: reads the annotations, writes the list of annotated-but-missing videos to the report
  folder, and checks before any training that the dataset is usable (videos found, some readable,
  clip not longer than every video checked).
* Training batches are shuffled by :class:`~i3d_lightning.runtime.distributed.EpochSampler`; evaluation
  batches are sharded with :class:`~i3d_lightning.runtime.distributed.UnpaddedDistributedSampler`, so that
  each video is evaluated once and metrics over N processes equal those of one. With
  ``eval_sampling.whole_video``, a long video's one pass comes in tiles (:mod:`i3d_lightning.data.segments`),
  all of a video's on one process, in order, so memory does not grow with the video.
* Unreadable videos are skipped by the dataset and collected by
  :class:`~i3d_lightning.runtime.skip_report.SkipReport`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from i3d_lightning.data.annotations import VideoList
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset, collate_clips
from i3d_lightning.data.dataset_configs import VideoSource
from i3d_lightning.data.segments import VideoSegments, one_pass_tiles
from i3d_lightning.errors import UserInputError
from i3d_lightning.flow.online import OnlineFlow, add_device_flow
from i3d_lightning.hardware import available_cpus
from i3d_lightning.runtime.distributed import EpochSampler, UnpaddedDistributedSampler, is_distributed
from i3d_lightning.runtime.skip_report import SkipReport
from i3d_lightning.runtime.termination import guard_worker_deaths
from i3d_lightning.video.sampling import clip_span

log = logging.getLogger(__name__)


def _sampling(sampling: ClipSampling | Mapping[str, Any] | None, clip: Mapping[str, Any] | None, *,
              train: bool) -> ClipSampling:
    if isinstance(sampling, ClipSampling):
        return sampling
    return ClipSampling(train=train, **{**(clip or {}), **(sampling or {})})


class VideoDataModule(pl.LightningDataModule):
    """Clips of a dataset ``source`` for the ``modalities`` of the stream (``["rgb"]``, ``["flow"]``
    or ``["rgb", "flow"]``).

    Args:
        source: a dataset source (:mod:`i3d_lightning.data.dataset_configs`).
        train_sampling / eval_sampling: how training / evaluation clips are drawn: a
            :class:`ClipSampling`, or a mapping of its fields completed by ``clip``.
        clip: the fields both samplings share when given as mappings (``clip_len``, ``stride``,
            ``fps``, ``short_side``, ``crop_size``); a key in a sampling's mapping overrides it.
        batch_size: training clips per batch (per process); ``eval_batch_size`` videos per
            evaluation batch (defaults to ``batch_size``; 1 in whole-video mode, whose lengths differ).
        num_workers: DataLoader worker processes (``None``: one per CPU core available to this process,
            at most 4); ``worker_timeout`` seconds a batch may take before the loader gives up instead
            of hanging.
        on_error: ``skip`` unreadable videos (reported) or ``raise``.
        report_dir: where the lists of missing and skipped videos are written (the run folder).
        check_videos: how many training videos ``setup`` probes to catch unusable data early.
        seed: seed of the training order and augmentations (with the epoch and the item).
        flow_source: ``stored`` (flow JPEGs under the source's ``flow_root``) or ``online`` (TV-L1
            computed from the videos, see :mod:`i3d_lightning.flow.online`, configured by
            ``online_flow``: an :class:`OnlineFlow` or a mapping of its fields).
        decoder: ``exact`` (every clip is the frames it names; :mod:`i3d_lightning.video.decoding`) or
            ``decord`` (decord's random access for every file).
    """

    def __init__(self, source: VideoSource, *, modalities: list[str] | tuple[str, ...] = ("rgb",),
                 train_sampling: ClipSampling | Mapping[str, Any] | None = None,
                 eval_sampling: ClipSampling | Mapping[str, Any] | None = None, clip: Mapping[str, Any] | None = None,
                 batch_size: int = 8, eval_batch_size: int | None = None, num_workers: int | None = None,
                 worker_timeout: float = 600.0, on_error: str = "skip", report_dir: str | None = None,
                 check_videos: int = 16, seed: int = 0, flow_source: str = "stored",
                 online_flow: OnlineFlow | Mapping[str, Any] | None = None, decoder: str = "exact") -> None:
        super().__init__()
        self.source = source
        self.modalities = tuple(modalities)
        self.train_sampling = _sampling(train_sampling, clip, train=True)
        self.eval_sampling = _sampling(eval_sampling, clip, train=False)
        self.batch_size = batch_size
        self.eval_batch_size = 1 if self.eval_sampling.whole_video else (eval_batch_size or batch_size)
        self.num_workers = min(4, available_cpus()) if num_workers is None else num_workers
        self.worker_timeout = worker_timeout
        self.on_error = on_error
        self.report_dir = Path(report_dir) if report_dir else None
        self.check_videos = check_videos
        self.seed = seed
        self.flow_source = flow_source
        self.online_flow = OnlineFlow.from_config(online_flow)
        self.decoder = decoder
        self.lists: dict[str, VideoList] = {}
        self.datasets: dict[str, VideoClipDataset] = {}
        self.one_pass_tiles: dict[str, VideoSegments] = {}  # whole_video evaluation's items, per split
        self.skipped = SkipReport()

    #: The clip settings saved in every checkpoint (``state_dict``), so that ``eval.py ckpt_path=...``
    #: evaluates on the clips the model was trained on.
    CLIP_KEYS = ("clip_len", "stride", "fps", "short_side", "crop_size")

    def state_dict(self) -> dict[str, Any]:
        """What Lightning saves of the DataModule in each checkpoint: the training clips' settings."""
        return {"clip": {key: getattr(self.train_sampling, key) for key in self.CLIP_KEYS}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore: a resumed run's config already has the run's clip settings."""

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
            self.datasets[split] = VideoClipDataset(
                videos.records, sampling, modalities=self.modalities, flow_root=self.source.flow_root,
                flow_source=self.flow_source, online_flow=self.online_flow,
                on_error=self.on_error, seed=self.seed, decoder=self.decoder)
            if split == "train":
                self._check_clip_length(videos)
        class_lists = {len(videos.classes) for videos in self.lists.values()}
        if len(class_lists) > 1:
            raise UserInputError(f"dataset={self.source.name}: the splits have different class lists")

    def _flow_on_device(self) -> bool:
        """Whether online flow is computed on the accelerator (after transfer) rather than in the workers."""
        if self.online_flow.where != "auto":
            on_device = self.online_flow.where == "device"
        else:
            on_device = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        log.info("flow computed from the videos (TV-L1) %s", "on the device, after each batch is transferred"
                 if on_device else "in the DataLoader workers")
        return on_device

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and "flow_pairs" in batch:
            return add_device_flow(batch, self.online_flow)
        return batch

    def _report_missing(self, split: str, videos: VideoList) -> None:
        if not videos.missing:
            return
        log.warning("dataset=%s (%s): %d annotated videos are missing on disk", self.source.name, split,
                    len(videos.missing))
        if self.report_dir is not None:
            missing = SkipReport(announce=False)
            missing.add([(video_id, path, "no such file") for video_id, path in videos.missing])
            path = missing.write(self.report_dir / f"missing_videos_{split}.csv")
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
                lengths.append(dataset.num_frames(record))
            except UserInputError as error:
                errors.append(str(error))
        if not lengths:
            raise UserInputError(f"none of the {len(chosen)} training videos checked could be read; first: {errors[0]}")
        span = clip_span(self.train_sampling.clip_len, self.train_sampling.stride)
        if span > max(lengths):
            raise UserInputError(f"a training clip spans {span} frames (clip_len {self.train_sampling.clip_len}, "
                                 f"stride {self.train_sampling.stride}) but the longest of {len(lengths)} videos "
                                 f"checked has {max(lengths)}: lower data.clip.clip_len or data.clip.stride")

    def _loader(self, split: str, *, batch_size: int, sampler=None, items: Dataset | None = None) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"no {split} data: call setup() for its stage first")
        workers = self.num_workers
        dataset = self.datasets[split]
        if dataset.online_flow is not None:
            # Decided here, not in setup: the Trainer (and so the device) may not be attached before.
            dataset.flow_on_device = self._flow_on_device()
        if workers:  # a worker killed by the SIGTERM that stops the run is the stop, not a failure
            guard_worker_deaths()
        # Workers are not persistent: each epoch's workers start from the dataset with the new epoch.
        return DataLoader(dataset if items is None else items, batch_size=batch_size, sampler=sampler,
                          num_workers=workers, collate_fn=collate_clips, pin_memory=torch.cuda.is_available(),
                          timeout=self.worker_timeout if workers > 0 else 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", batch_size=self.batch_size,
                            sampler=EpochSampler(self.datasets["train"], self.seed))

    def _eval_loader(self, split: str) -> DataLoader:
        if not self.eval_sampling.whole_video:
            sampler = UnpaddedDistributedSampler(self.datasets[split]) if is_distributed() else None
            return self._loader(split, batch_size=self.eval_batch_size, sampler=sampler)
        # The one pass over a long video comes in tiles, each process taking all the tiles of its
        # videos in order; the classifier adds them up (I3DClassifier.video_scores).
        if split not in self.one_pass_tiles:
            self.one_pass_tiles[split] = one_pass_tiles(self.datasets[split])
        tiles = self.one_pass_tiles[split]
        sampler = UnpaddedDistributedSampler(tiles, groups=tiles.items_by_video()) if is_distributed() else None
        return self._loader(split, batch_size=1, sampler=sampler, items=tiles)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
