"""Long videos in bounded memory: a video's windows come in segments, never the whole video at once.

Feature extraction used to load each video whole (one ``[1, C, T, S, S]`` item), about 1 GB per minute
of 25 fps video at the release's 256 shorter side. :class:`VideoSegments` cuts each video into items
of at most ``windows_per_segment`` windows: a segment holds the frames its windows span (consecutive
segments overlap by ``window - stride`` frames), read and, for online flow, computed only for that
span. The windows, and so the features, are the ones the whole video gives: the same frames, the same
crops. A video shorter than one segment stays one item, exactly as before (with its looping for videos
shorter than a window). :class:`~i3d_lightning.features.extraction.FeatureExtractor` puts the segments
of a video back together, in whatever order and on whichever process they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from i3d_lightning.data.clip_dataset import VideoClipDataset
from i3d_lightning.errors import UserInputError
from i3d_lightning.features.extraction import window_starts

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
    ``stop`` of its timeline, or the whole video's item when ``stop`` is ``None``; ``windows`` in it."""

    video: int
    start: int
    stop: int | None
    number: int
    count: int
    windows: int


class VideoSegments(Dataset):
    """The whole-video items of ``videos`` (a :class:`VideoClipDataset` of ``whole_video`` sampling) cut
    into segments of at most ``windows_per_segment`` windows of ``window`` frames every ``stride``. Each
    item is the dataset's item with ``segment`` and ``segments`` added (its number and its video's count)."""

    def __init__(self, videos: VideoClipDataset, *, window: int, stride: int, windows_per_segment: int) -> None:
        if windows_per_segment < 1:
            raise ValueError(f"windows_per_segment must be at least 1, got {windows_per_segment}")
        self.videos = videos
        self.segments: list[Segment] = []
        for index, record in enumerate(videos.records):
            try:
                frames = videos.num_frames(record)
            except UserInputError:  # unreadable: one item, whose loading reports the reason
                frames = 0
            starts = window_starts(frames, window, stride) if frames >= window else [0]
            if len(starts) <= windows_per_segment:
                self.segments.append(Segment(index, 0, None, 0, 1, len(starts)))
                continue
            blocks = [starts[i:i + windows_per_segment] for i in range(0, len(starts), windows_per_segment)]
            self.segments += [Segment(index, block[0], block[-1] + window, number, len(blocks), len(block))
                              for number, block in enumerate(blocks)]

    def __len__(self) -> int:
        return len(self.segments)

    def video_of(self, index: int) -> str:
        """The video of item ``index``, as messages name it."""
        return self.videos.video_of(self.segments[index].video)

    def __getitem__(self, index: int) -> dict:
        segment = self.segments[index]
        frames = None if segment.stop is None else (segment.start, segment.stop)
        return self.videos.item(segment.video, frames) | {"segment": segment.number, "segments": segment.count}
