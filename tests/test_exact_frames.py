"""Every frame read is the frame it names: ``read_frames`` and the dataset's clips against a full
sequential decode, on the containers and codecs datasets use (tests/encodings.py), for every kind of
request. Each frame carries its own index, so one frame off fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i3d_lightning.data.annotations import VideoRecord
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset
from i3d_lightning.video import decoding, sampling
from tests.encodings import ENCODINGS, HEIGHT, WIDTH, encode, index_of, sequential_decode

FRAMES = 60
#: What each encoding is read with (tests/encodings.py says why; docs/data.md, "Exact frames").
EXPECTED_ACCESS = {
    "avi_mpeg4_bframes": "sequential", "avi_mpeg4": "seek", "avi_h264_bframes": "sequential",
    "avi_h264": "sequential", "mp4_h264_closed_gop": "seek", "mp4_h264_open_gop": "timestamps",
    "mp4_h264_b_pyramid": "seek", "mp4_hevc": "timestamps", "mp4_mpeg4_bframes": "timestamps",
    "webm_vp9": "seek", "webm_vp8": "seek", "mkv_h264_open_gop": "timestamps",
}
#: A variable frame rate: frame i shown for 20, 40 or 80 ms.
VFR_MS = np.cumsum([0] + [(20, 40, 80)[i % 3] for i in range(FRAMES - 1)]).tolist()
VIDEOS = {name: dict(encoding=name) for name in ENCODINGS} | {
    "mp4_h264_open_gop_vfr": dict(encoding="mp4_h264_open_gop", timestamps_ms=VFR_MS),
    "mp4_h264_closed_gop_vfr": dict(encoding="mp4_h264_closed_gop", timestamps_ms=VFR_MS),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """``videos(name)``: the path of :data:`VIDEOS`' ``name`` (FRAMES frames) and its sequential decode,
    encoded once per test process."""
    root = tmp_path_factory.mktemp("encodings")
    made: dict[str, tuple] = {}

    def get(name: str, frames: int = FRAMES):
        key = (name, frames)
        if key not in made:
            settings = dict(VIDEOS[name])
            encoding = settings.pop("encoding")
            if "timestamps_ms" in settings:
                settings["timestamps_ms"] = settings["timestamps_ms"][:frames]
            path = encode(root / f"{name}_{frames}{ENCODINGS[encoding][0]}", frames, encoding, **settings)
            made[key] = path, sequential_decode(path)
        return made[key]

    return get


def _requests(count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "random sorted": np.sort(rng.choice(count, min(count, 20), replace=False)),
        "start": np.arange(0, min(16, count)),
        "middle": np.arange(count // 2 - 8, count // 2 + 8),
        "end": np.arange(count - 16, count),
        "strided (25 to 15 fps)": sampling.resample_indices(count, 25, 15),
        "unsorted with repeats": rng.integers(0, count, 24),
        "whole video": np.arange(count),
    }


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_read_frames_are_the_sequential_decodes_frames(name, videos):
    path, decoded = videos(name)
    assert [index_of(frame) for frame in decoded] == list(range(FRAMES))  # the reference itself
    assert decoding.probe(path).num_frames == len(decoded) == FRAMES
    assert decoding.access_mode(path) == EXPECTED_ACCESS[name.removesuffix("_vfr")]
    for request, indices in _requests(FRAMES).items():
        frames = decoding.read_frames(path, indices)
        assert [index_of(frame) for frame in frames] == indices.tolist(), request
        # The same pixels (decord and PyAV both convert with FFmpeg's swscale: equal here).
        assert np.abs(frames.astype(int) - decoded[indices].astype(int)).max() <= 2, request
        half = decoding.read_frames(path, indices, size=(WIDTH // 2, HEIGHT // 2))  # resized at decode
        assert half.shape[1:] == (HEIGHT // 2, WIDTH // 2, 3)
        assert [index_of(frame) for frame in half] == indices.tolist(), request


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_frames_streamed_in_chunks_are_the_sequential_decodes_frames(name, videos):
    # iter_frames (flow extraction's reader): one decoder through the file, 7 frames at a time, from
    # the middle (a seek first) and from the start, with repeats (a short video's loop, fps upsampling).
    path, decoded = videos(name)
    for indices in (np.arange(FRAMES // 2, FRAMES), np.repeat(np.arange(0, FRAMES, 3), 2)):
        chunks = list(decoding.iter_frames(path, indices, chunk=7))
        assert [len(chunk) for chunk in chunks[:-1]] == [7] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= 7
        frames = np.concatenate(chunks)
        assert [index_of(frame) for frame in frames] == indices.tolist()
        assert np.abs(frames.astype(int) - decoded[indices].astype(int)).max() <= 2


@pytest.mark.parametrize("name", ["avi_mpeg4_bframes", "avi_h264", "mp4_h264_open_gop", "mp4_h264_closed_gop",
                                  "webm_vp9"])
def test_a_video_shorter_than_a_clip_is_read_whole_and_looped(name, videos):
    path, decoded = videos(name, frames=5)
    assert decoding.probe(path).num_frames == len(decoded) == 5
    dataset = VideoClipDataset([VideoRecord(path, 0, "short")], _sampling(train=False, fps=None, stride=1),
                               rgb_as_uint8=True, on_error="raise")
    assert _frame_indices(dataset[0]["rgb"]) == [[0, 1, 2, 3, 4, 0, 1, 2, 3]]  # 9 frames: looped


def _sampling(**settings) -> ClipSampling:
    # No resize (the shorter side is the video's) and a square crop of the full height: the index bands stay.
    return ClipSampling(**{"clip_len": 9, "stride": 2, "fps": 15, "short_side": HEIGHT, "crop_size": HEIGHT,
                           "flip": False} | settings)


def _frame_indices(views: torch.Tensor) -> list[list[int]]:
    """The index of every frame of ``[V, 3, T, S, S]`` (or one training clip's ``[3, T, S, S]``) uint8 views."""
    views = views if views.dim() == 5 else views[None]
    return [[index_of(view[:, t].permute(1, 2, 0).numpy()) for t in range(view.shape[1])] for view in views]


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_dataset_clips_are_the_frames_they_name(name, videos):
    path, _ = videos(name)
    record = VideoRecord(path, 0, name)
    info = decoding.probe(path)
    timeline = sampling.resample_indices(info.num_frames, info.fps, 15)  # the source frame of each 15 fps frame
    # Multi-view evaluation: 3 uniformly spaced clips of 9 frames, every 2nd frame at 15 fps.
    evaluation = VideoClipDataset([record], _sampling(train=False, num_clips=3), rgb_as_uint8=True, on_error="raise")
    expected = timeline[sampling.uniform_clips(len(timeline), 9, 2, 3)]
    assert _frame_indices(evaluation[0]["rgb"]) == expected.tolist()
    # Training: random clips (the same frames whatever the crop), each 9 frames 2 apart on the timeline.
    training = VideoClipDataset([record], _sampling(train=True), rgb_as_uint8=True, on_error="raise")
    for epoch in range(3):
        training.epoch = epoch
        (clip,) = _frame_indices(training[0]["rgb"])
        start = int(np.flatnonzero(timeline == clip[0])[0])
        assert clip == timeline[start:start + 18:2].tolist(), epoch
    # The whole video (whole-video evaluation and features): every frame of the timeline, in order.
    whole = VideoClipDataset([record], _sampling(train=False, whole_video=True), rgb_as_uint8=True, on_error="raise")
    assert _frame_indices(whole[0]["rgb"]) == [timeline.tolist()]
    # A part of it (a long video's segment or tile, data/segments.py): those frames of the timeline alone.
    start, stop = len(timeline) // 3, len(timeline) - 2
    assert _frame_indices(whole.item(0, (start, stop))["rgb"]) == [timeline[start:stop].tolist()]


def test_decord_stays_selectable_and_is_what_exact_reading_fixes(videos):
    # data.decoder=decord: decord's seek for every file, today's speed, and on an AVI with B-frames the
    # frames of other parts of the video: the failure the default reading exists for.
    path, _ = videos("avi_mpeg4_bframes")
    record = VideoRecord(path, 0, "avi")
    settings = dict(train=False, num_clips=3, fps=None, stride=1)
    exact = VideoClipDataset([record], _sampling(**settings), rgb_as_uint8=True, on_error="raise")
    plain = VideoClipDataset([record], _sampling(**settings), rgb_as_uint8=True, on_error="raise", decoder="decord")
    expected = sampling.uniform_clips(FRAMES, 9, 1, 3).tolist()
    assert _frame_indices(exact[0]["rgb"]) == expected
    assert _frame_indices(plain[0]["rgb"]) != expected


def test_the_datamodules_batches_hold_the_frames_they_name(tmp_path):
    # Through VideoDataModule's own loaders (the config's path): UCF101-like AVIs with B-frames and
    # open-GOP MP4s in class folders, validation clips of the multi-view protocol.
    from i3d_lightning.data.datamodule import VideoDataModule
    from i3d_lightning.data.dataset_configs import Custom

    for folder, encoding in (("avi", "avi_mpeg4_bframes"), ("mp4", "mp4_h264_open_gop")):
        encode(tmp_path / "videos" / folder / f"clip{ENCODINGS[encoding][0]}", FRAMES, encoding)
    datamodule = VideoDataModule(Custom(train=str(tmp_path / "videos"), val=str(tmp_path / "videos")),
                                 clip={"clip_len": 9, "stride": 2, "fps": 15, "short_side": HEIGHT,
                                       "crop_size": HEIGHT},
                                 eval_sampling={"num_clips": 3}, eval_batch_size=2, num_workers=0, check_videos=0)
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    timeline = sampling.resample_indices(FRAMES, 25, 15)
    expected = timeline[sampling.uniform_clips(len(timeline), 9, 2, 3)].tolist()
    for views in batch["rgb"]:  # [V, 3, T, S, S] in [-1, 1]
        assert _frame_indices(((views + 1) * 127.5).round().to(torch.uint8)) == expected
