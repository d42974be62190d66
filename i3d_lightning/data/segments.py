"""Long videos in bounded memory: a video comes in segments, never whole.

Feature extraction used to load each video whole (one ``[1, C, T, S, S]`` item), about 1 GB per minute
of 25 fps video at the release's 256 shorter side. :class:`VideoSegments` cuts each video into items
of at most ``windows_per_segment`` windows: a segment holds the frames its windows span (consecutive
segments overlap by ``window - stride`` frames), read and, for online flow, computed only for that
span. The windows, and so the features, are the ones the whole video gives: the same frames, the same
crops. A video shorter than one segment stays one item, exactly as before (with its looping for videos
shorter than a window). :class:`~i3d_lightning.features.extraction.FeatureExtractor` puts the segments
of a video back together, in whatever order and on whichever process they arrive.

The one-pass protocols (``--per-video`` features, ``data.eval_sampling.whole_video``) come in tiles
(:func:`one_pass_tiles`): spans of frames whose network outputs are exactly the one pass's
(:mod:`i3d_lightning.models.temporal_tiles`), added up per video by the extractor and the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from i3d_lightning.data.clip_dataset import VideoClipDataset
from i3d_lightning.errors import UserInputError
from i3d_lightning.models.i3d import MIN_FRAMES
from i3d_lightning.models.temporal_tiles import TILE_STEPS, TIME_STRIDE, plan_tiles
from i3d_lightning.video.sampling import window_starts

#: A segment holds this many network calls' worth of windows: the segment follows the batch size, not the
#: video. With the CPU's batch of 8, 32 windows of 16 frames every 4 (THUMOS14's convention) are 140
#: frames, about 37 MB of uint8 frames at 256x341 for one stream; the frames two segments share
#: (window - stride) are read, and their online flow computed, twice (9% more here).
SEGMENT_BATCHES = 4
#: ... and at most this many frames (or one window's, where a window is longer): 67 MB of uint8 RGB at
#: 256x341, 180 MB of float flow. Without it, a large stride made segments long (32 windows every 64
#: frames span 2,000 frames, 520 MB) while the frames between windows are never used.
SEGMENT_FRAMES = 256


def windows_per_segment(window: int, stride: int, batch_size: int) -> int:
    """The windows of a segment: :data:`SEGMENT_BATCHES` network calls' worth of ``batch_size``, fewer
    where their span would exceed :data:`SEGMENT_FRAMES`; at least one."""
    fitting = max(1, (SEGMENT_FRAMES - window) // stride + 1)
    return min(SEGMENT_BATCHES * batch_size, fitting)


@dataclass(frozen=True)
class Segment:
    """Item ``number`` of ``count`` of video ``video`` (its index in the dataset): frames ``start`` to
    ``stop`` of its timeline, or the whole video's item when ``stop`` is ``None``; ``windows`` in it, or,
    for a tile of a one-pass video, the average-pool ``steps`` (first, last) it owns and the ``frames``
    it takes the pass on by (what a progress bar counts)."""

    video: int
    start: int
    stop: int | None
    number: int
    count: int
    windows: int = 0
    steps: tuple[int, int] | None = None
    frames: int = 0


class VideoSegments(Dataset):
    """The whole-video items of ``videos`` (a :class:`VideoClipDataset` of ``whole_video`` sampling), as
    ``segments`` (:func:`window_segments`, :func:`one_pass_tiles`). Each item is the dataset's item with
    ``segment`` and ``segments`` added (its number and its video's count), ``span`` (its frames) where it
    is a part of its video, and ``steps`` for a tile."""

    def __init__(self, videos: VideoClipDataset, segments: list[Segment]) -> None:
        self.videos = videos
        self.segments = segments

    def __len__(self) -> int:
        return len(self.segments)

    def video_of(self, index: int) -> str:
        """The video of item ``index``, as messages name it."""
        return self.videos.video_of(self.segments[index].video)

    def items_by_video(self) -> list[list[int]]:
        """The items of each video, in order: a process that takes a video takes all of its items."""
        videos: dict[int, list[int]] = {}
        for index, segment in enumerate(self.segments):
            videos.setdefault(segment.video, []).append(index)
        return list(videos.values())

    def __getitem__(self, index: int) -> dict:
        segment = self.segments[index]
        frames = None if segment.stop is None else (segment.start, segment.stop)
        extra = {} if frames is None else {"span": frames}
        if segment.steps is not None:
            extra["steps"] = segment.steps
        return self.videos.item(segment.video, frames) | {"segment": segment.number, "segments": segment.count} | extra


def _frames(videos: VideoClipDataset, index: int) -> int:
    try:
        return videos.num_frames(videos.records[index])
    except UserInputError:  # unreadable: one item, whose loading reports the reason
        return 0


def window_segments(videos: VideoClipDataset, *, window: int, stride: int,
                    windows_per_segment: int) -> VideoSegments:
    """Each video's windows of ``window`` frames every ``stride``, at most ``windows_per_segment`` per item."""
    if windows_per_segment < 1:
        raise ValueError(f"windows_per_segment must be at least 1, got {windows_per_segment}")
    items: list[Segment] = []
    for index in range(len(videos.records)):
        frames = _frames(videos, index)
        starts = window_starts(frames, window, stride) if frames >= window else [0]
        if len(starts) <= windows_per_segment:
            items.append(Segment(index, 0, None, 0, 1, len(starts)))
            continue
        blocks = [starts[i:i + windows_per_segment] for i in range(0, len(starts), windows_per_segment)]
        items += [Segment(index, block[0], block[-1] + window, number, len(blocks), len(block))
                  for number, block in enumerate(blocks)]
    return VideoSegments(videos, items)


def one_pass_tiles(videos: VideoClipDataset, *, steps_per_tile: int | None = None) -> VideoSegments:
    """Each video's one pass (every frame, up to the sampling's ``max_frames``) as tiles
    (:mod:`i3d_lightning.models.temporal_tiles`); a video that fits one tile stays one whole item."""
    items: list[Segment] = []
    for index in range(len(videos.records)):
        frames = _frames(videos, index)
        if videos.sampling.max_frames is not None:
            frames = min(frames, videos.sampling.max_frames)
        tiles = plan_tiles(frames, steps_per_tile or TILE_STEPS) if frames >= MIN_FRAMES else []
        if len(tiles) <= 1:
            items.append(Segment(index, 0, None, 0, 1, frames=frames))
            continue
        ends = [tile.start + TIME_STRIDE * tile.last for tile in tiles[:-1]] + [frames]
        items += [Segment(index, tile.start, tile.stop, number, len(tiles), steps=(tile.first, tile.last),
                          frames=end - begin)
                  for number, (tile, begin, end) in enumerate(zip(tiles, [0, *ends[:-1]], ends, strict=True))]
    return VideoSegments(videos, items)
