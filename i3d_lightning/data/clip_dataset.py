"""A map-style dataset of video clips: decode, sample, crop, flip, scale.

Items are dicts: ``rgb`` / ``flow`` clips, ``label``, ``index`` (position in the dataset) and
``video_id``. Training items hold one clip ``[C, T, S, S]``; evaluation items hold every view of the
video, ``[V, C, T, S, S]`` with V = clips x crops (whole-video mode: one view of all frames). RGB
values are in [-1, 1]; flow is (x, y) in [-1, 1], stored or computed from the frames. Both streams of
a joint item come from the same frames, the same crop and the same flip (which negates flow x).

A video that cannot be read becomes ``{"index", "video_id", "path", "error"}`` (``on_error="skip"``)
for :func:`collate_clips` to set aside and report, or raises (``on_error="raise"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from i3d_lightning.data.annotations import VideoRecord
from i3d_lightning.errors import UserInputError
from i3d_lightning.flow.online import OnlineFlow
from i3d_lightning.flow.stored import count_flow_frames, read_flow
from i3d_lightning.flow.tvl1 import grey_from_rgb
from i3d_lightning.models.i3d import MIN_FRAMES
from i3d_lightning.models.streams import check_modalities
from i3d_lightning.preprocessing import RELEASE_CROP_SIZE, RELEASE_FPS, RELEASE_SHORT_SIDE, crop_views, resize_flow
from i3d_lightning.settings import check_settings, setting
from i3d_lightning.video import decoding, sampling

#: Where flow comes from: JPEGs under ``flow_root``, or TV-L1 of the decoded frames.
FLOW_SOURCES = ("stored", "online")
#: What a video that cannot be read does: set aside and reported, or stop the run.
ON_ERROR = ("skip", "raise")


@dataclass(frozen=True)
class ClipSampling:
    """How clips are drawn from a video.

    ``train=True``: one random clip of ``clip_len`` frames every ``stride`` frames, a random
    ``crop_size`` crop and (``flip``) a random horizontal flip. ``train=False``: ``num_clips`` uniformly
    spaced clips x ``num_crops`` crops (1 centre, 3 along the longer side), or with ``whole_video``
    every frame (up to ``max_frames``) in one centre-cropped view (``crop_size=None``: not cropped, for
    crops taken later, such as the feature extractor's ten). Frames are first resampled to ``fps``
    (``None`` keeps the video's rate) and resized so the shorter side is ``short_side``.
    """

    train: bool
    clip_len: int = setting(64, minimum=1)
    stride: int = setting(1, minimum=1)
    fps: float | None = setting(RELEASE_FPS, above=0)
    short_side: int = setting(RELEASE_SHORT_SIDE, minimum=1)
    crop_size: int | None = setting(RELEASE_CROP_SIZE, minimum=1)
    flip: bool = True
    num_clips: int = setting(1, minimum=1)
    num_crops: int = setting(1, choices=(1, 3))
    whole_video: bool = False
    max_frames: int | None = setting(None, minimum=1)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.crop_size is None and not self.whole_video:
            raise UserInputError("crop_size=None (frames not cropped) is for whole-video sampling only")
        if self.crop_size is not None and self.crop_size > self.short_side:
            raise UserInputError(f"crop_size {self.crop_size} is larger than short_side {self.short_side}")

    @property
    def views(self) -> int:
        return 1 if self.whole_video else self.num_clips * self.num_crops


class VideoClipDataset(Dataset):
    """Clips of ``records`` for the ``modalities`` (``rgb``, ``flow`` or both).

    Flow is read from ``flow_root / video_id`` (``flow_source="stored"``, see
    :mod:`i3d_lightning.flow.stored`) or computed from the decoded frames (``"online"``, see
    :mod:`i3d_lightning.flow.online`): here, or, with ``flow_on_device``, after the batch reaches
    the accelerator (items then carry ``flow_pairs`` instead of ``flow``).
    Decoders are opened inside ``__getitem__`` and closed before it returns; the dataset object holds
    no reader, so it is safe to fork into DataLoader workers.
    """

    def __init__(self, records: list[VideoRecord], sampling: ClipSampling, *, modalities: tuple[str, ...] = ("rgb",),
                 flow_root: str | Path | None = None, flow_source: str = "stored",
                 online_flow: OnlineFlow | None = None, flow_on_device: bool = False, on_error: str = "skip",
                 seed: int = 0, rgb_as_uint8: bool = False, decoder: str = "exact") -> None:
        modalities = check_modalities(modalities)
        if flow_source not in FLOW_SOURCES:
            raise UserInputError(f"flow_source must be one of {', '.join(FLOW_SOURCES)}, got {flow_source!r}")
        if "flow" in modalities and flow_source == "stored" and flow_root is None:
            raise UserInputError("the flow stream needs precomputed flow: set dataset.flow_root "
                                 "(i3d-extract-flow writes it), or compute it from the videos with "
                                 "data.flow_source=online")
        if on_error not in ON_ERROR:
            raise UserInputError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        self.records = records
        self.sampling = sampling
        self.modalities = modalities
        self.flow_root = Path(flow_root) if flow_root is not None else None
        self.online_flow = (online_flow or OnlineFlow()) if "flow" in modalities and flow_source == "online" else None
        self.flow_on_device = flow_on_device and self.online_flow is not None
        self.on_error = on_error
        self.seed = seed
        self.rgb_as_uint8 = rgb_as_uint8
        self.decoder = decoder  # i3d_lightning.video.decoding.DECODERS
        #: Set by :class:`~i3d_lightning.data.datamodule.EpochSampler` before each epoch's workers start.
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.item(index)

    def video_of(self, index: int) -> str:
        """The video file of item ``index``, as messages name it."""
        return str(self.records[index].path)

    def item(self, index: int, frames: tuple[int, int] | None = None) -> dict:
        """The item of video ``index``: its clips as the sampling draws them, or, with ``frames`` =
        (start, stop), those frames of its timeline as one view (a segment of a long video, as the whole
        video's view would hold them)."""
        record = self.records[index]
        try:
            item = self._load(record, index, frames)
        except UserInputError as error:
            if self.on_error == "raise":
                raise
            return {"index": index, "video_id": record.video_id, "path": str(record.path), "error": str(error)}
        return item | {"label": record.label, "index": index, "video_id": record.video_id}

    def flow_folder(self, record: VideoRecord) -> Path:
        assert self.flow_root is not None
        return self.flow_root / record.video_id

    def num_frames(self, record: VideoRecord) -> int:
        """Frames a clip of ``record`` can be drawn from (the resampled timeline; flow has one frame
        fewer than the video when it is computed here, a frame per pair)."""
        return self._num_frames(record, self._timeline(record))

    def _timeline(self, record: VideoRecord) -> tuple[decoding.VideoInfo, np.ndarray] | None:
        """The video's info and its frames resampled to the dataset's rate, if frames are decoded."""
        if "rgb" not in self.modalities and self.online_flow is None:
            return None
        info = decoding.probe(record.path, decoder=self.decoder)
        return info, sampling.resample_indices(info.num_frames, info.fps, self.sampling.fps)

    def _num_frames(self, record: VideoRecord, timeline: tuple[decoding.VideoInfo, np.ndarray] | None) -> int:
        lengths = []
        if timeline is not None:
            lengths.append(len(timeline[1]) - (self.online_flow is not None))
        if "flow" in self.modalities and self.online_flow is None:
            lengths.append(count_flow_frames(self.flow_folder(record)))
        return min(lengths)

    def _load(self, record: VideoRecord, index: int, frames: tuple[int, int] | None = None) -> dict:
        # Random choices are a function of (seed, epoch, item) alone: the same with any number of
        # workers, and the same when a run resumes from a checkpoint.
        rng = np.random.default_rng((self.seed, self.epoch, index))
        timeline = self._timeline(record)
        if frames is not None:
            clips = np.arange(*frames)[None]
        else:
            clips = self._clip_indices(self._num_frames(record, timeline), rng)  # [K, T] on the resampled timeline
        frames = clips.reshape(-1)
        streams: dict[str, torch.Tensor] = {}  # each [K * T, H, W, C]: rgb uint8, flow float
        pairs = None
        if timeline is not None:
            info, source_frames = timeline
            size = sampling.short_side_size(info.width, info.height, self.sampling.short_side)
            # Online flow needs each frame's successor too: one decode for both streams. Flow is computed
            # once per distinct frame (clips may overlap, a short video loops) and then repeated.
            distinct, order = np.unique(frames, return_inverse=True)
            needed = np.union1d(distinct, distinct + 1) if self.online_flow is not None else distinct
            decoded = torch.from_numpy(decoding.read_frames(record.path, source_frames[needed], size=size,
                                                            decoder=self.decoder))
            if "rgb" in self.modalities:
                streams["rgb"] = decoded[np.searchsorted(needed, frames)]
            if self.online_flow is not None:
                grey = grey_from_rgb(decoded)
                pairs = grey[np.searchsorted(needed, distinct)], grey[np.searchsorted(needed, distinct + 1)]
                if not self.flow_on_device:
                    streams["flow"] = self.online_flow.model_input(*pairs)[order]
        if "flow" in self.modalities and self.online_flow is None:
            flow = read_flow(self.flow_folder(record), frames)
            target = streams["rgb"].shape[1:3] if "rgb" in streams else None
            streams["flow"] = self._resize_flow(flow, target)
        height, width = (next(iter(streams.values())) if streams else pairs[0]).shape[1:3]
        boxes, flip = self._crops(height, width, rng)
        s = self.sampling
        item: dict = {name: crop_views(name, frames, clips.shape, boxes, flip, s.crop_size, s.train,
                                       rgb_as_uint8=self.rgb_as_uint8)
                      for name, frames in streams.items()}
        if pairs is not None and self.flow_on_device:
            item["flow_pairs"] = {"first": pairs[0], "second": pairs[1], "order": torch.from_numpy(order),
                                  "clips": clips.shape, "boxes": boxes, "flip": flip, "crop_size": s.crop_size,
                                  "train": s.train}
        return item

    def _clip_indices(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        s = self.sampling
        if s.train:
            return sampling.random_clip(num_frames, s.clip_len, s.stride, rng)[None]
        if s.whole_video:
            return sampling.whole_video(num_frames, MIN_FRAMES, s.max_frames)[None]
        return sampling.uniform_clips(num_frames, s.clip_len, s.stride, s.num_clips)

    def _resize_flow(self, flow: torch.Tensor, size: torch.Size | None) -> torch.Tensor:
        """Resize ``[T, H, W, 2]`` flow to ``size`` (or to the configured shorter side), scaling the
        vectors with the image so that they stay in (resized) pixels."""
        height, width = flow.shape[1:3]
        if size is None:
            new_width, new_height = sampling.short_side_size(width, height, self.sampling.short_side)
            size = torch.Size((new_height, new_width))
        if tuple(size) == (height, width):
            return flow
        return resize_flow(flow.permute(0, 3, 1, 2), tuple(size)).clamp(-1, 1).permute(0, 2, 3, 1)

    def _crops(self, height: int, width: int, rng: np.random.Generator) -> tuple[list[tuple[int, int]], bool]:
        """Where the views are cropped (top, left) and whether they are mirrored."""
        s = self.sampling
        if s.train:
            return [sampling.random_crop_box(height, width, s.crop_size, rng)], s.flip and rng.random() < 0.5
        if s.crop_size is None:
            return [(0, 0)], False
        return sampling.crop_boxes(height, width, s.crop_size, 1 if s.whole_video else s.num_crops), False


def collate_clips(items: list[dict]) -> dict:
    """Batch the readable items; unreadable ones go to ``batch["skipped"]`` as (video id, path, reason).

    A batch whose items all failed has only ``skipped`` (and ``size`` 0).
    """
    good = [item for item in items if "error" not in item]
    # Frame pairs for flow on the device keep each video's own frame size: a list, not a stack.
    flow_pairs = [item.pop("flow_pairs") for item in good if "flow_pairs" in item]
    batch = default_collate(good) if good else {}
    if flow_pairs:
        batch["flow_pairs"] = flow_pairs
    batch["skipped"] = [(item["video_id"], item["path"], item["error"]) for item in items if "error" in item]
    batch["size"] = len(good)
    return batch
