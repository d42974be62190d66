"""Feature extraction in Python, as ``i3d-extract-features`` runs it::

    from i3d_lightning.data.annotations import video_files
    from i3d_lightning.features.run import extract_features
    from i3d_lightning.features.settings import ExtractionSettings

    report = extract_features(video_files("/data/thumos14/videos"), "features/",
                              ExtractionSettings.from_preset("thumos14", crops=10))

The settings say how the features are made (and are what ``conventions.json`` records); :func:`extract_features`
runs Lightning's predict loop over the videos not yet extracted and writes the files and the index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from i3d_lightning.data import segments
from i3d_lightning.data.annotations import VideoList
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset
from i3d_lightning.errors import UserInputError
from i3d_lightning.features.extraction import (
    FeatureExtractor,
    check_conventions,
    output_names,
    pending,
    record_conventions,
    write_index,
)
from i3d_lightning.features.progress import WindowProgressBar
from i3d_lightning.features.settings import ExtractionSettings
from i3d_lightning.flow.online import OnlineFlow
from i3d_lightning.runtime.skip_report import SKIPPED_VIDEOS, SkipReport
from i3d_lightning.runtime.video_inference import InferenceOptions, predict_videos, uses_cuda
from i3d_lightning.weights import WeightsSource, stream_towers


@dataclass
class ExtractionReport:
    """What :func:`extract_features` did: videos in the list, those already extracted before, the unreadable ones
    (``skipped``, listed in ``skipped_videos.csv``), and the index file (``None`` on processes other than
    the first of a multi-GPU run)."""

    videos: int
    already_extracted: int
    skipped: SkipReport
    index: Path | None


def extract_features(videos: VideoList, out: str | os.PathLike, settings: ExtractionSettings | None = None, *,
            source: WeightsSource = WeightsSource(), flow_root: str | os.PathLike | None = None,
            flow_source: str | None = None, options: InferenceOptions = InferenceOptions(),
            verbose: bool = False) -> ExtractionReport:
    """Write the features of ``videos`` under ``out`` (see :mod:`i3d_lightning.features.extraction` for
    the files). The weights come from ``source`` (a mirror folder, the cache). Flow comes from
    ``flow_root`` (``flow_source="stored"``) or is computed from the videos
    (``"online"``, the default without ``flow_root``): on the GPU when the Trainer runs on one.
    ``options``: precision, batch size, fast path, devices and decoding workers
    (:class:`~i3d_lightning.runtime.video_inference.InferenceOptions`). ``verbose``: print how many videos
    are left to do."""
    settings = settings or ExtractionSettings()
    out = Path(out)
    if not videos.records:
        raise UserInputError("no videos to extract features of")
    modalities = settings.modalities
    outputs = output_names(modalities, settings.concatenate)
    check_conventions(out, settings.conventions())
    todo = pending(videos.records, out, outputs)
    if verbose:
        print(f"{len(videos.records)} videos, {len(videos.records) - len(todo)} already extracted, {len(todo)} to do")
    skipped = SkipReport(announce=False)
    if todo:  # the weights are loaded (converted, downloaded) only when there is something to extract
        towers = stream_towers(modalities, {modality: settings.weights_of(modality) for modality in modalities},
                               source=source)
        record_conventions(out, settings.conventions())  # inputs and weights accepted: features follow
        progress = WindowProgressBar()
        trainer = options.trainer(callbacks=[progress])
        on_gpu = uses_cuda(trainer)
        # Ten crops are taken per window by the extractor, from the uncropped frames.
        sampling = ClipSampling(train=False, whole_video=True, fps=settings.fps, short_side=settings.short_side,
                                crop_size=settings.crop_size if settings.crops == 1 else None)
        online = OnlineFlow(where="device" if on_gpu else "workers")
        dataset = VideoClipDataset(todo, sampling, modalities=modalities, flow_root=flow_root,
                                   flow_source=flow_source or ("stored" if flow_root else "online"),
                                   online_flow=online, flow_on_device=online.where == "device", rgb_as_uint8=True)
        # A segment of a video per step (a whole video where it has a segment's worth of windows or fewer:
        # data/segments.py), so memory does not grow with a video's length; the extractor packs the
        # windows of consecutive items into its calls. One vector per video comes in tiles of the one pass.
        batch_size = options.batch_size_on(trainer)
        if settings.window is None:
            items = segments.one_pass_tiles(dataset)
            progress.unit = "frames"
        else:
            items = segments.window_segments(dataset, window=settings.window, stride=settings.stride,
                                             windows_per_segment=segments.windows_per_segment(
                                                 settings.window, settings.stride, batch_size))
        extractor = FeatureExtractor(towers, out, window=settings.window, stride=settings.stride,
                                     crops=settings.crops, crop_size=settings.crop_size,
                                     concatenate=settings.concatenate, precision=options.precision, fast=options.fast,
                                     batch_size=batch_size, online_flow=online)
        extractor.resume(items, keep=trainer.is_global_zero)  # a long video goes on where a run stopped
        progress.counts = [segment.frames if settings.window is None else segment.windows for segment in items.segments]
        if items.segments:  # none left: each was a video whose every segment was done
            predict_videos(trainer, extractor, items, videos_per_step=1,
                           workers=options.workers_for(decodes_files=True),
                           on_interrupt=f"the features written under {out} are kept, and the finished segments "
                                        f"of a long video; the same command goes on from there")
        skipped = extractor.skipped
        if not trainer.is_global_zero:
            return ExtractionReport(len(videos.records), len(videos.records) - len(todo), skipped, None)
    skipped.write(out / SKIPPED_VIDEOS)  # with its header alone when none was skipped
    return ExtractionReport(len(videos.records), len(videos.records) - len(todo), skipped, write_index(out, outputs))
