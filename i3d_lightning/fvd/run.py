"""``tools/fvd.py``: embed two sides (or take saved statistics), compare them, report FVD and KVD.

Embedding runs in Lightning's predict loop, so it uses every GPU given (``devices``); each process
embeds its share of the videos, the embeddings are gathered and put back in video order before any
statistic is computed, so the value is the same on 1 or N devices and on every run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from i3d_lightning.data.distributed import UnpaddedDistributedSampler, gather_objects, is_distributed
from i3d_lightning.errors import UserInputError
from i3d_lightning.fvd.distance import GaussianStatistics, frechet_distance, kernel_distance
from i3d_lightning.fvd.embedding import VideoEmbedder
from i3d_lightning.fvd.inputs import ClipProtocol, ClipSource
from i3d_lightning.fvd.statistics_file import is_statistics_file, load_statistics, weights_fingerprint
from i3d_lightning.models.inference import autocast, check_inference_precision

log = logging.getLogger(__name__)


@dataclass
class Side:
    """One side of a comparison: its statistics, its embeddings (``None`` when read from a statistics
    file) and the videos that could not be read (video id, reason)."""

    statistics: GaussianStatistics
    embeddings: torch.Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    videos: int = 0
    frame_sizes: list[list[int]] = field(default_factory=list)  # (height, width) of the frames embedded


class EmbeddingLoop(pl.LightningModule):
    """Predict loop: each batch is a list of items of :class:`ClipSource`."""

    def __init__(self, embedder: VideoEmbedder, precision: str) -> None:
        super().__init__()
        self.embedder, self.precision = embedder, precision
        self.rows: list[tuple[int, torch.Tensor]] = []
        self.skipped: list[tuple[int, str, str]] = []
        self.frame_sizes: set[tuple[int, int]] = set()

    def on_predict_start(self) -> None:
        check_inference_precision(self.precision, self.device)
        self.rows, self.skipped, self.frame_sizes = [], [], set()

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> int:
        """Embed the batch's readable videos; returns how many there were."""
        for item in batch:
            if "error" in item:
                log.warning("skipped %s: %s", item["video_id"], item["error"])
                self.skipped.append((item["index"], item["video_id"], item["error"]))
                continue
            self.frame_sizes.add(tuple(item["clips"].shape[-3:-1]))
            with autocast(self.device, self.precision):
                embeddings = self.embedder(item["clips"].to(self.device))
            self.rows.append((item["index"], embeddings.to("cpu", torch.float64)))
        return sum("error" not in item for item in batch)

    def on_predict_epoch_end(self) -> None:
        # Gathered here, while every process is still in the loop; video order makes sums repeatable.
        self.rows = sorted(row for rank_rows in gather_objects(self.rows) for row in rank_rows)
        self.skipped = sorted(entry for rank_rows in gather_objects(self.skipped) for entry in rank_rows)
        self.frame_sizes = set().union(*gather_objects(self.frame_sizes))


def embedding_trainer(accelerator: str = "auto", devices: int | str = "auto") -> pl.Trainer:
    """A Trainer for :class:`EmbeddingLoop`'s predict loop, with nothing written to disk."""
    # Lightning's "GPU available: ..." lines would come before any refusal; the result is what matters here.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    return pl.Trainer(accelerator=accelerator, devices=devices, logger=False, enable_checkpointing=False,
                      enable_model_summary=False)


def embed_side(path: str | os.PathLike, protocol: ClipProtocol, trainer: pl.Trainer, module: EmbeddingLoop, *,
               preprocessed: bool = False, workers: int = 0) -> Side:
    """Embed the clips of ``path`` (see :class:`ClipSource`)."""
    source = ClipSource(path, protocol, preprocessed=preprocessed)
    sampler = UnpaddedDistributedSampler(source) if is_distributed() else None
    loader = DataLoader(source, batch_size=1, sampler=sampler, num_workers=workers, collate_fn=list,
                        timeout=600 if workers else 0)
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    if not module.rows:
        raise UserInputError(f"{path}: none of its {len(source)} videos could be read")
    embeddings = torch.cat([rows for _, rows in module.rows])
    if embeddings.shape[0] < 2:
        raise UserInputError(f"{path}: {embeddings.shape[0]} clip; a covariance needs at least 2")
    return Side(GaussianStatistics.from_embeddings(embeddings), embeddings,
                [(video_id, reason) for _, video_id, reason in module.skipped], len(module.rows),
                sorted(list(size) for size in module.frame_sizes))


def load_side(path: str | os.PathLike, description: dict) -> Side:
    """A statistics file, checked to have been made with ``description``'s protocol and weights."""
    statistics, saved = load_statistics(path)
    for key in ("protocol", "weights", "preprocessed"):
        if saved.get(key) != description[key]:
            raise UserInputError(f"{path} was made with {key} {saved.get(key)}, not {description[key]}: statistics of "
                                 f"different protocols cannot be compared (use the same options, or embed again)")
    return Side(statistics, videos=saved.get("videos", statistics.count), frame_sizes=saved.get("frame_sizes", []))


def description_of(protocol: ClipProtocol, model: nn.Module, preprocessed: bool) -> dict:
    """What makes two sets of statistics comparable: the protocol and the weights of ``model`` as
    loaded (not its fast inference form, so fast and plain runs share statistics)."""
    return {"protocol": protocol.describe(), "weights": weights_fingerprint(model), "preprocessed": preprocessed}


def compare(real: Side, fake: Side) -> dict[str, Any]:
    """FVD (and KVD where both sides have embeddings) of two sides, whose frames must have one size."""
    if real.frame_sizes != fake.frame_sizes:
        raise UserInputError(f"the real frames are {_sizes(real)} and the fake ones {_sizes(fake)}: give "
                             f"--resolution H W to compare them at one size")
    kvd = None
    if real.embeddings is not None and fake.embeddings is not None:
        kvd = kernel_distance(real.embeddings, fake.embeddings)
    return {"fvd": frechet_distance(real.statistics, fake.statistics), "kvd": kvd,
            "counts": {"real_clips": real.statistics.count, "fake_clips": fake.statistics.count,
                       "real_videos": real.videos, "fake_videos": fake.videos,
                       "real_skipped": len(real.skipped), "fake_skipped": len(fake.skipped)}}


def _sizes(one: Side) -> str:
    return ", ".join(f"{height}x{width}" for height, width in one.frame_sizes) or "of unknown size"


def side(path: Path, description: dict, embed: Any) -> Side:
    """A statistics file as it is, anything else embedded by ``embed(path)``."""
    return load_side(path, description) if is_statistics_file(path) else embed(path)
