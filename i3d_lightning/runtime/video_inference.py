"""The predict loop that runs I3D over a set of videos: shared by FVD's embedding (:mod:`i3d_lightning.fvd.run`)
and feature extraction (:mod:`i3d_lightning.features.extraction`).

* DataLoader workers decode and send uint8 frames (4x less to copy between processes and to the GPU
  than float32), into pinned memory when the accelerator is a CUDA GPU; Lightning copies each batch
  to the device without blocking.
* The resize and the [-1, 1] scaling run on the accelerator, and the network sees up to
  ``batch_size`` clips per call (:func:`default_batch_size`: 32 on a CUDA GPU, 8 on the CPU).
* A video that cannot be read is an item with ``error`` (from the dataset), set aside by
  :func:`collate_videos`, listed in one :class:`~i3d_lightning.runtime.skip_report.SkipReport` gathered
  from every process, and never stops the run.
* Each process runs its share of the videos (no video twice, none padded in); results are put back in
  video order, so batch size and device count change a value only by float rounding.
* No timeout on an item: a worker that makes progress is never declared hung, however long its item
  takes; one that stops making progress, or dies, is (:mod:`i3d_lightning.runtime.worker_watch`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from i3d_lightning.errors import InterruptedByUserError, Terminated, UserInputError
from i3d_lightning.hardware import INFERENCE_PRECISIONS, available_cpus, check_inference_precision
from i3d_lightning.models.inference import check_batch_size
from i3d_lightning.runtime.distributed import UnpaddedDistributedSampler, is_distributed
from i3d_lightning.runtime.skip_report import SkipReport
from i3d_lightning.runtime.termination import guard_worker_deaths
from i3d_lightning.runtime.worker_watch import WorkerWatch
from i3d_lightning.settings import check_settings, setting

#: Clips per network call when none is given: a CUDA GPU needs large batches to be busy (32 clips of
#: 16x224x224 take about 2 GB in fp32 inference); on the CPU larger batches gain nothing and cost memory.
DEFAULT_BATCH_SIZES = {"cuda": 32, "cpu": 8}
#: Batches each worker prepares ahead of the accelerator.
PREFETCH_BATCHES = 4


#: DataLoader workers decoding video files when none are given, at most: one clip decoded ahead per
#: core keeps the network busy on a CPU; more take memory (a GPU run asks for more with ``workers``).
DEFAULT_WORKERS = 2

#: Lightning's ``devices``: a count, ``auto``, or indices.
Devices = int | str | list


def default_batch_size(device_type: str) -> int:
    """Clips per network call on a device of ``device_type`` (``cuda``, ``cpu``)."""
    return DEFAULT_BATCH_SIZES.get(device_type, DEFAULT_BATCH_SIZES["cpu"])


@dataclass(frozen=True)
class InferenceOptions:
    """How a predict loop over videos runs (FVD's embedding, feature extraction): the network's
    ``precision`` (:data:`~i3d_lightning.hardware.INFERENCE_PRECISIONS`), clips per network call
    (``batch_size``; ``None``: :func:`default_batch_size` of the device), the ``fast`` inference path,
    Lightning's ``accelerator`` and ``devices``, and the DataLoader ``workers`` that decode (``None``: one
    per core, at most :data:`DEFAULT_WORKERS`, where there are files to decode; none for an array
    already in memory)."""

    precision: str = setting("32", choices=INFERENCE_PRECISIONS)
    batch_size: int | None = setting(None, minimum=1)
    fast: bool = True
    accelerator: str = "auto"
    devices: Devices = "auto"
    workers: int | None = setting(None, minimum=0)

    def __post_init__(self) -> None:
        check_settings(self)

    def trainer(self, callbacks: Sequence[Callback] = ()) -> pl.Trainer:
        """The Trainer of a predict loop: ``accelerator`` and ``devices``, nothing written to disk."""
        # Lightning's "GPU available: ..." lines would come before any refusal; the result is what matters here.
        logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
        return pl.Trainer(accelerator=self.accelerator, devices=self.devices, logger=False,
                          enable_checkpointing=False, enable_model_summary=False, callbacks=list(callbacks))

    def batch_size_on(self, trainer: pl.Trainer) -> int:
        """``batch_size``, or the default of the Trainer's device."""
        return self.batch_size or default_batch_size("cuda" if uses_cuda(trainer) else "cpu")

    def workers_for(self, *, decodes_files: bool) -> int:
        """``workers``, or the default for a dataset that decodes files (or reads an array in memory)."""
        if self.workers is not None:
            return self.workers
        return min(DEFAULT_WORKERS, available_cpus()) if decodes_files else 0


def collate_videos(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A step's videos as they are (they may differ in length and size): ``{"videos": [readable items],
    "skipped": [(video id, path, reason)]}``."""
    return {"videos": [item for item in items if "error" not in item],
            "skipped": [(item["video_id"], item["path"], item["error"]) for item in items if "error" in item]}


def predict_videos(trainer: pl.Trainer, module: pl.LightningModule, dataset: Dataset, *, videos_per_step: int,
                   workers: int, on_interrupt: str = "stopped before every video was done") -> None:
    """Run ``module``'s predict loop over ``dataset``'s videos (items as :func:`collate_videos` takes them),
    ``workers`` DataLoader processes decoding them. No timeout depends on how long an item takes: a
    worker is stopped only when it stops making progress (:mod:`~i3d_lightning.runtime.worker_watch`), and
    a worker stopped or dead is reported in one line naming its video. Ctrl-C (or SIGTERM) raises
    :class:`~i3d_lightning.errors.InterruptedByUserError` with ``on_interrupt`` (what was kept)."""
    if workers < 0:
        raise UserInputError(f"workers={workers}: give 0 (decode in the main process) or more")
    watch = WorkerWatch(dataset, workers)
    if workers:  # a worker killed by the SIGTERM that stops the run is the stop, not a failure
        guard_worker_deaths()
    sampler = UnpaddedDistributedSampler(watch.items) if is_distributed() else None
    loader = DataLoader(watch.items, batch_size=videos_per_step, sampler=sampler, num_workers=workers,
                        collate_fn=collate_videos, pin_memory=uses_cuda(trainer), worker_init_fn=watch.worker_init_fn,
                        prefetch_factor=PREFETCH_BATCHES if workers else None)
    try:
        with watch.watching():
            trainer.predict(module, dataloaders=loader, return_predictions=False)
    except SystemExit as stop:
        if trainer.interrupted:  # Lightning's graceful shutdown on Ctrl-C (SIGTERM too, cli.py) ends in exit(1)
            raise InterruptedByUserError(on_interrupt, terminated=isinstance(stop.__context__, Terminated)) from None
        raise


def uses_cuda(trainer: pl.Trainer) -> bool:
    """Whether ``trainer`` runs on a CUDA GPU (then batches are worth pinning)."""
    return trainer.strategy.root_device.type == "cuda"


class VideoInferenceLoop(pl.LightningModule):
    """Base of the predict loops over videos: the precision checked once the device is known, the
    unreadable videos collected (``self.skipped``, gathered from every process at the end).
    Subclasses implement ``predict_step`` over :func:`collate_videos` batches, call
    ``self.skipped.add(batch["skipped"])`` and run their network through
    :func:`~i3d_lightning.models.inference.run_in_batches` with ``self.batch_size`` and ``self.precision``."""

    def __init__(self, precision: str, batch_size: int, *, announce_skips: bool = True) -> None:
        super().__init__()
        self.precision, self.batch_size = precision, check_batch_size(batch_size)
        self.announce_skips = announce_skips
        self.skipped = SkipReport(announce=announce_skips)

    def on_predict_start(self) -> None:
        check_inference_precision(self.precision, self.device)
        self.skipped = SkipReport(announce=self.announce_skips)

    def on_predict_epoch_end(self) -> None:
        self.skipped = self.skipped.gathered()
