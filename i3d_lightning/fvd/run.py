"""FVD between two sets of videos (or saved statistics): :func:`compute` is what ``i3d-fvd`` runs.

Embedding runs in Lightning's predict loop (:mod:`i3d_lightning.runtime.video_inference`), so it uses every GPU
given (``devices``); each process embeds its share of the videos, in batches of clips, the embeddings
are gathered and put back in video order before any statistic is computed, so the value is the same on
1 or N devices and with any batch size, up to float rounding.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from i3d_lightning.errors import UserInputError
from i3d_lightning.fvd.bootstrap import bootstrap_fvd
from i3d_lightning.fvd.distance import (
    GaussianStatistics,
    check_distance_choices,
    frechet_distance,
    kernel_distance,
)
from i3d_lightning.fvd.embedding import VideoEmbedder
from i3d_lightning.fvd.inputs import ClipProtocol, ClipSource
from i3d_lightning.fvd.protocols import sample_size_warning, unequal_sides_warning
from i3d_lightning.fvd.statistics_file import is_statistics_file, load_statistics, weights_fingerprint
from i3d_lightning.runtime.distributed import gather_objects
from i3d_lightning.runtime.video_inference import InferenceOptions, VideoInferenceLoop, predict_videos
from i3d_lightning.weights import WeightsSource, i3d

log = logging.getLogger(__name__)


@dataclass
class Side:
    """One side of a comparison: its statistics, its embeddings (``None`` when read from a statistics
    file), the videos that could not be read (video id, reason) and those the protocol discarded as too
    short (video ids)."""

    statistics: GaussianStatistics
    embeddings: torch.Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    videos: int = 0
    frame_sizes: list[list[int]] = field(default_factory=list)  # (height, width) of the frames embedded
    discarded: list[str] = field(default_factory=list)


class EmbeddingLoop(VideoInferenceLoop):
    """Predict loop over :class:`ClipSource` items: the clips of a step's videos that share a shape go
    through ``embedder`` together (``embedder.batch_size`` clips per network call)."""

    def __init__(self, embedder: VideoEmbedder) -> None:
        # Skipped videos are listed by the caller, with their side: not logged a second time here.
        super().__init__(embedder.precision, embedder.batch_size, announce_skips=False)
        self.embedder = embedder
        self.rows: list[tuple[int, torch.Tensor]] = []
        self.frame_sizes: set[tuple[int, int]] = set()

    def on_predict_start(self) -> None:
        super().on_predict_start()
        self.rows, self.frame_sizes = [], set()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> int:
        """Embed the step's readable videos; returns how many there were."""
        self.skipped.add(batch["skipped"])
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for item in batch["videos"]:
            groups.setdefault((tuple(item["clips"].shape), item["clips"].dtype), []).append(item)
        for items in groups.values():
            clips = torch.stack([item["clips"] for item in items])  # [n, K, T, H, W, 3]
            self.frame_sizes.add(self.embedder.frame_size(clips))
            embeddings = self.embedder(clips.flatten(0, 1)).to("cpu", torch.float64)
            for item, rows in zip(items, embeddings.unflatten(0, clips.shape[:2]), strict=True):
                self.rows.append((item["index"], rows))
        return len(batch["videos"])

    def on_predict_epoch_end(self) -> None:
        super().on_predict_epoch_end()
        # Gathered here, while every process is still in the loop; video order makes sums repeatable.
        self.rows = sorted((row for rank_rows in gather_objects(self.rows) for row in rank_rows), key=lambda r: r[0])
        self.frame_sizes = set().union(*gather_objects(self.frame_sizes))


def embed_side(source: ClipSource, trainer: pl.Trainer, module: EmbeddingLoop, *, workers: int = 0) -> Side:
    """Embed the clips of ``source`` (``workers`` DataLoader processes reading them)."""
    path, protocol = source.path, source.protocol
    videos_per_step = max(1, module.batch_size // protocol.clips_per_video)
    predict_videos(trainer, module, source, videos_per_step=videos_per_step, workers=workers)
    if not module.rows:
        raise UserInputError(f"{path}: none of its {len(source)} videos could be read")
    embeddings = torch.cat([rows for _, rows in module.rows])
    if embeddings.shape[0] < 2:
        raise UserInputError(f"{path}: {embeddings.shape[0]} clip; a covariance needs at least 2")
    skipped = [(video_id, reason) for video_id, (_, reason) in sorted(module.skipped.entries.items())]
    return Side(GaussianStatistics.from_embeddings(embeddings), embeddings, skipped, len(module.rows),
                sorted(list(size) for size in module.frame_sizes), list(source.discarded))


def load_side(path: str | os.PathLike, description: dict) -> Side:
    """A statistics file, checked to have been made with ``description``'s protocol and weights."""
    statistics, saved = load_statistics(path)
    for key in ("protocol", "weights", "preprocessed"):
        if saved.get(key) != description[key]:
            raise UserInputError(f"{path} was made with {key} {_sorted(saved.get(key))}, not "
                                 f"{_sorted(description[key])}: statistics of different protocols cannot be "
                                 f"compared (use the same options, or embed again)")
    return Side(statistics, videos=saved.get("videos", statistics.count), frame_sizes=saved.get("frame_sizes", []),
                discarded=saved.get("discarded", []))


def _sorted(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)


def description_of(protocol: ClipProtocol, model: nn.Module, preprocessed: bool) -> dict:
    """What makes two sets of statistics comparable: the protocol and the weights of ``model`` as
    loaded (not its fast inference form, so fast and plain runs share statistics)."""
    return {"protocol": protocol.describe(), "weights": weights_fingerprint(model), "preprocessed": preprocessed}


def compare(real: Side, fake: Side, *, covariance: str = "unbiased", square_root: str = "svd") -> dict[str, Any]:
    """FVD (and KVD where both sides have embeddings) of two sides, whose frames must have one size;
    ``covariance`` and ``square_root`` as :func:`~i3d_lightning.fvd.distance.frechet_distance` takes them."""
    if real.frame_sizes != fake.frame_sizes:
        raise UserInputError(f"the real frames are {_sizes(real)} and the fake ones {_sizes(fake)}: give "
                             f"--resolution H W to compare them at one size")
    kvd = None
    if real.embeddings is not None and fake.embeddings is not None:
        kvd = kernel_distance(real.embeddings, fake.embeddings)
    fvd = frechet_distance(real.statistics, fake.statistics, covariance=covariance, square_root=square_root)
    return {"fvd": fvd, "kvd": kvd, "distance": {"covariance": covariance, "square_root": square_root},
            "counts": {"real_clips": real.statistics.count, "fake_clips": fake.statistics.count,
                       "real_videos": real.videos, "fake_videos": fake.videos,
                       "real_skipped": len(real.skipped), "fake_skipped": len(fake.skipped),
                       "real_discarded": len(real.discarded), "fake_discarded": len(fake.discarded)}}


def _sizes(one: Side) -> str:
    return ", ".join(f"{height}x{width}" for height, width in one.frame_sizes) or "of unknown size"


def open_side(path: Path, protocol: ClipProtocol, preprocessed: bool, side: str) -> ClipSource | Path:
    """``path`` as a statistics file (returned as it is) or a :class:`ClipSource` of ``side`` (its videos
    listed): one line now if it is neither, before anything is embedded."""
    return path if is_statistics_file(path) else ClipSource(path, protocol, preprocessed=preprocessed, side=side)


@dataclass
class Comparison:
    """What :func:`compute` measured: ``report`` (``fvd``, ``kvd`` or ``None``, clip and video counts,
    the protocol, the distance's choices, the precision, ``warnings``, the inputs, the weights (name and
    SHA-256 of the loaded state), the ``skipped`` videos with their reasons and the ``discarded`` ones, and
    ``bootstrap`` when asked), each
    side, and the ``description`` a statistics file of it carries."""

    report: dict[str, Any]
    real: Side
    fake: Side
    description: dict


def compute(real: str | os.PathLike, fake: str | os.PathLike, protocol: ClipProtocol | None = None, *,
            weights: str | os.PathLike = "rgb_scratch", source: WeightsSource = WeightsSource(),
            preprocessed: bool = False, options: InferenceOptions = InferenceOptions(), bootstrap: int = 0,
            covariance: str = "unbiased", square_root: str = "svd",
            announce: Callable[[str], None] | None = None) -> Comparison | None:
    """FVD (and KVD) between ``real`` and ``fake``: each a folder of videos or frame folders, a
    ``.npy``/``.npz`` array of videos ``[N, T, H, W, 3]`` (0..255, or network-ready [-1, 1] with
    ``preprocessed``), or a statistics file. Both sides are checked before anything is embedded;
    ``announce`` is told which side is being embedded. Returns ``None`` on every process but the first
    of a multi-device run (the first has the gathered result). ``protocol``: the default is 16 frames
    from the first of each video, one clip per video; a paper's protocol by name is
    :func:`~i3d_lightning.fvd.protocols.paper_protocol`. ``bootstrap``: that many resamples of the
    embeddings (seeded with ``protocol.seed``) give the value's spread, ``report["bootstrap"]``
    (:mod:`i3d_lightning.fvd.bootstrap`). ``covariance`` / ``square_root``: TF-GAN's distance
    (``unbiased`` / ``svd``) or other ports' (``biased`` / ``scipy``). ``options``: precision, batch size,
    fast path, devices and decoding workers (:class:`~i3d_lightning.runtime.video_inference.InferenceOptions`)."""
    protocol = protocol or ClipProtocol()
    check_distance_choices(covariance, square_root)
    sides = {side: open_side(Path(path), protocol, preprocessed, side) for side, path in (("real", real),
                                                                                         ("fake", fake))}
    if bootstrap and all(isinstance(opened, Path) for opened in sides.values()):
        raise UserInputError("--bootstrap resamples embeddings, and both sides are statistics files: give the "
                             "videos of at least one side")
    model = i3d(weights=weights, in_channels=3, source=source)
    trainer = options.trainer()
    embedder = VideoEmbedder(model, preprocessed=preprocessed, fast=options.fast,
                             batch_size=options.batch_size_on(trainer), precision=options.precision,
                             resolution=protocol.resolution)
    description = description_of(protocol, model, preprocessed)
    module = EmbeddingLoop(embedder)
    results: dict[str, Side] = {}
    for name, opened in sides.items():
        if isinstance(opened, Path):
            results[name] = load_side(opened, description)
            continue
        if announce is not None and trainer.is_global_zero:
            announce(f"embedding {name.upper()} {opened.path}: {len(opened)} videos")
        results[name] = embed_side(opened, trainer, module,
                                   workers=options.workers_for(decodes_files=opened.array is None))
    if not trainer.is_global_zero:
        return None
    report = compare(results["real"], results["fake"], covariance=covariance, square_root=square_root)
    warnings = [sample_size_warning(protocol, name, side.statistics.count, side.statistics.mean.numel())
                for name, side in results.items()]
    warnings.append(unequal_sides_warning(results["real"].statistics.count, results["fake"].statistics.count))
    report |= {"protocol": protocol.describe(), "precision": options.precision, "warnings": [w for w in warnings if w],
               "inputs": {"real": str(real), "fake": str(fake)},
               "weights": {"name": str(weights), "sha256": description["weights"]},
               "skipped": {name: [{"video": video, "reason": reason} for video, reason in side.skipped]
                           for name, side in results.items()},
               "discarded": {name: list(side.discarded) for name, side in results.items()}}
    if bootstrap:
        resampled = [side.statistics if side.embeddings is None else side.embeddings for side in results.values()]
        report["bootstrap"] = bootstrap_fvd(*resampled, resamples=bootstrap, seed=protocol.seed,
                                            covariance=covariance, square_root=square_root).as_dict()
    return Comparison(report, results["real"], results["fake"], description)
