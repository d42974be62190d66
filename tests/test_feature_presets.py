"""Action-localization feature presets: T by the formula, each window the model's endpoint, RGB first,
ten crops the mean of the single crops, and the presets' options refused when they contradict it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from i3d_lightning.commands import extract_features
from i3d_lightning.data.annotations import video_files
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset
from i3d_lightning.features import run
from i3d_lightning.features.presets import FEATURE_PRESETS
from i3d_lightning.features.settings import ExtractionSettings
from i3d_lightning.models import InceptionI3d
from i3d_lightning.preprocessing import ten_crops
from i3d_lightning.video.sampling import window_starts
from i3d_lightning.weights import WeightsSource
from i3d_lightning.weights.loading import save_state_dict
from tests.conftest import record_segments
from tests.videos import write_frames

SHORT_SIDE, CROP = 200, 193


def _panning_video(path, frames: int, fps: int, seed: int) -> None:
    """A texture sliding right 2 pixels a frame, 200x240: TV-L1 finds motion, and the corners differ."""
    texture = np.random.default_rng(seed).integers(0, 256, (25, 40, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    write_frames(path, np.stack([np.roll(texture, 2 * t, axis=1)[:, :240] for t in range(frames)]), fps=fps)


@pytest.fixture(scope="module")
def towers(tmp_path_factory, rgb_scratch_state):
    """The rgb_scratch RGB tower, and a flow tower made from it (the flow checkpoints are not in shared/,
    and a randomly initialised tower's features are too small, ~1e-7, for a comparison to mean much):
    the first convolution keeps the weights of two of the three colour channels."""
    rgb = InceptionI3d().eval()
    rgb.load_state_dict(rgb_scratch_state)
    first = "blocks.Conv3d_1a_7x7.conv.weight"
    flow_state = rgb_scratch_state | {first: rgb_scratch_state[first][:, :2].contiguous()}
    flow = InceptionI3d(400, 2).eval()
    flow.load_state_dict(flow_state)
    path = save_state_dict(flow_state, tmp_path_factory.mktemp("flow") / "flow.safetensors", {"stream": "flow"})
    return {"rgb": rgb, "flow": flow, "flow_file": str(path)}


def _extract(videos, out, towers, checkpoints_dir, *extra: str) -> int:
    return extract_features.main([str(videos), str(out), "--weights-rgb", "rgb_scratch",
                                  "--weights-flow", towers["flow_file"], "--mirror", str(checkpoints_dir),
                                  "--short-side", str(SHORT_SIDE), "--crop", str(CROP), "--workers", "0", *extra])


def _both_streams(videos, fps: float | None, crop_size: int | None):
    """The whole videos as the extractor sees them: ``{"rgb": [1, 3, N, H, W], "flow": [1, 2, N, H, W]}``."""
    dataset = VideoClipDataset(video_files(videos).records,
                               ClipSampling(train=False, whole_video=True, fps=fps, short_side=SHORT_SIDE,
                                            crop_size=crop_size),
                               modalities=("rgb", "flow"), flow_source="online")
    return {record.video_id: dataset[index] for index, record in enumerate(dataset.records)}


def _features(model: InceptionI3d, clips: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_endpoints(clips, ["Features"])["Features"]


def test_windows_follow_the_formula():
    thumos, activitynet = FEATURE_PRESETS["thumos14"], FEATURE_PRESETS["activitynet"]
    for frames in (16, 17, 19, 20, 39, 100, 1001):
        assert thumos.num_windows(frames) == (frames - 16) // 4 + 1 == len(window_starts(frames, 16, 4))
        assert activitynet.num_windows(frames) == (frames - 16) // 16 + 1 == len(window_starts(frames, 16, 16))
    assert thumos.num_windows(9) == len(window_starts(9, 16, 4)) == 1  # shorter than a window: one, looped
    assert thumos.fps is None and activitynet.fps == 25


@pytest.mark.long(minutes=2)
def test_presets_write_one_rgb_first_file_per_video(tmp_path, towers, weights_cache, checkpoints_dir):
    videos = tmp_path / "videos"
    # Native rates of 30 and 24 fps: thumos14 keeps every frame (N - 1 flow frames: T = (N - 1 - 16) // 4 + 1).
    _panning_video(videos / "a.mp4", 25, fps=30, seed=1)
    _panning_video(videos / "b.mp4", 21, fps=24, seed=2)
    assert _extract(videos, tmp_path / "thumos", towers, checkpoints_dir, "--preset", "thumos14") == 0
    expected = {"a": (25 - 1 - 16) // 4 + 1, "b": (21 - 1 - 16) // 4 + 1}  # 3 and 2
    streams = _both_streams(videos, fps=None, crop_size=CROP)
    for video_id, windows in expected.items():
        saved = np.load(tmp_path / "thumos" / f"{video_id}.npy")
        assert saved.shape == (windows, 2048) and saved.dtype == np.float32
        rgb, flow = streams[video_id]["rgb"], streams[video_id]["flow"]
        assert rgb.shape[2] == flow.shape[2] == {"a": 24, "b": 20}[video_id]  # frames both streams have
        starts = [4 * k for k in range(windows)]
        direct_rgb = _features(towers["rgb"], torch.cat([rgb[:, :, s:s + 16] for s in starts]))
        direct_flow = _features(towers["flow"], torch.cat([flow[:, :, s:s + 16] for s in starts]))
        assert min(direct_rgb.abs().max(), direct_flow.abs().max()) > 0.1  # features large enough to compare
        np.testing.assert_allclose(saved[:, :1024], direct_rgb.numpy(), atol=1e-4)  # rgb first
        np.testing.assert_allclose(saved[:, 1024:], direct_flow.numpy(), atol=1e-4)
    conventions = json.loads((tmp_path / "thumos" / "conventions.json").read_text())
    assert (conventions["preset"], conventions["fps"], conventions["window"], conventions["stride"]) == \
        ("thumos14", None, 16, 4)

    # activitynet: 25 fps. 42 frames at 30 fps are 35 at 25 fps, 34 flow frames: (34 - 16) // 16 + 1 = 2.
    _panning_video(tmp_path / "anet" / "c.mp4", 42, fps=30, seed=3)
    assert _extract(tmp_path / "anet", tmp_path / "anet_features", towers, checkpoints_dir,
                    "--preset", "activitynet") == 0
    saved = np.load(tmp_path / "anet_features" / "c.npy")
    assert saved.shape == (2, 2048)
    streams = _both_streams(tmp_path / "anet", fps=25, crop_size=CROP)["c"]
    assert streams["rgb"].shape[2] == 34
    np.testing.assert_allclose(saved[1, 1024:], _features(towers["flow"], streams["flow"][:, :, 16:32])[0].numpy(),
                               atol=1e-4)


@pytest.mark.long
def test_ten_crops_average_the_single_crops(tmp_path, towers, weights_cache, checkpoints_dir):
    videos = tmp_path / "videos"
    _panning_video(videos / "a.mp4", 17, fps=30, seed=4)  # 16 flow frames: one window
    assert _extract(videos, tmp_path / "out", towers, checkpoints_dir, "--preset", "thumos14", "--crops", "10") == 0
    saved = np.load(tmp_path / "out" / "a.npy")
    assert saved.shape == (1, 2048)
    frames = _both_streams(videos, fps=None, crop_size=None)["a"]  # uncropped [1, C, 16, 200, 240]
    for modality, half in (("rgb", saved[0, :1024]), ("flow", saved[0, 1024:])):
        clip = frames[modality][0][:, :16]
        height, width = clip.shape[-2:]
        corners = [(0, 0), (0, width - CROP), (height - CROP, 0), (height - CROP, width - CROP),
                   ((height - CROP) // 2, (width - CROP) // 2)]
        crops = [clip[..., top:top + CROP, left:left + CROP] for top, left in corners]
        mirrored = [crop.flip(-1) for crop in crops]
        if modality == "flow":
            mirrored = [torch.cat([-crop[:1], crop[1:]]) for crop in mirrored]
        singles = [_features(towers[modality], crop[None])[0] for crop in crops + mirrored]
        assert not torch.allclose(singles[0], singles[1], atol=1e-3)  # the crops do see different pixels
        np.testing.assert_allclose(half, torch.stack(singles).mean(0).numpy(), atol=1e-4)


def test_ten_crops_are_the_corners_the_centre_and_their_mirror_images():
    clips = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)  # [C, T, H, W]
    crops = ten_crops(clips, 3, flow=True)
    assert crops.shape == (10, 2, 3, 3, 3)
    torch.testing.assert_close(crops[0], clips[..., :3, :3])
    torch.testing.assert_close(crops[3], clips[..., 2:, 4:])
    torch.testing.assert_close(crops[4], clips[..., 1:4, 2:5])
    torch.testing.assert_close(crops[5, 1], crops[0, 1].flip(-1))
    torch.testing.assert_close(crops[5, 0], -crops[0, 0].flip(-1))  # mirrored flow: x reverses
    torch.testing.assert_close(ten_crops(clips, 3, flow=False)[5], crops[0].flip(-1))


def test_preset_options_are_refused_when_they_contradict_it(tmp_path, towers, weights_cache, checkpoints_dir,
                                                            monkeypatch, capsys):
    _panning_video(tmp_path / "videos" / "a.mp4", 17, fps=30, seed=5)
    assert _extract(tmp_path / "videos", tmp_path / "out", towers, checkpoints_dir, "--preset", "thumos14",
                    "--window", "32", "--fps", "25") == 2
    assert "--preset thumos14 fixes --fps, --window" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # The same extraction in Python; the command then finds it done (the same conventions).
    settings = ExtractionSettings.from_preset("thumos14", short_side=SHORT_SIDE, crop_size=CROP,
                                              weights={"rgb": "rgb_scratch", "flow": towers["flow_file"]})
    report = run.extract_features(video_files(tmp_path / "videos"), tmp_path / "out", settings,
                                  source=WeightsSource(mirror=checkpoints_dir))
    assert (report.videos, report.already_extracted, len(report.skipped)) == (1, 0, 0)
    made = (tmp_path / "out" / "a.npy").read_bytes()
    assert np.load(tmp_path / "out" / "a.npy").shape == (1, 2048)
    capsys.readouterr()
    with monkeypatch.context() as nothing_to_do:  # and loads no weights for it
        nothing_to_do.setattr(run, "stream_towers", lambda *args, **kwargs: pytest.fail("weights loaded"))
        assert _extract(tmp_path / "videos", tmp_path / "out", towers, checkpoints_dir, "--preset", "thumos14") == 0
    assert "1 videos, 1 already extracted, 0 to do" in capsys.readouterr().out
    # A folder of centre-crop features does not take ten-crop ones: the set would mix two conventions.
    assert _extract(tmp_path / "videos", tmp_path / "out", towers, checkpoints_dir, "--preset", "thumos14",
                    "--crops", "10") == 2
    assert "holds features made another way (crops: 1 there, 10 now)" in capsys.readouterr().err
    assert (tmp_path / "out" / "a.npy").read_bytes() == made


@pytest.mark.long(minutes=2)
def test_long_videos_come_in_segments_with_the_features_of_the_whole(tmp_path, towers, weights_cache,
                                                                      checkpoints_dir, monkeypatch):
    # THUMOS14's convention (joint, TV-L1 flow computed from the videos, 16 frames every 4), once with each
    # window a segment of its own (the way a long video is read, memory bounded by a segment) and once
    # whole: the same windows, the same features. (Crops are taken per window, whatever the segments:
    # test_ten_crops_average_the_single_crops checks them.)
    from i3d_lightning.data import segments

    _panning_video(tmp_path / "videos" / "a.mp4", 22, fps=30, seed=6)  # 21 flow frames: 2 windows
    assert _extract(tmp_path / "videos", tmp_path / "whole", towers, checkpoints_dir, "--preset", "thumos14",
                    "--batch-size", "1") == 0  # 4 windows a segment: the 2 in one
    monkeypatch.setattr(segments, "SEGMENT_BATCHES", 1)  # with --batch-size 1: a window per segment
    sizes = record_segments(monkeypatch)
    assert _extract(tmp_path / "videos", tmp_path / "segments", towers, checkpoints_dir, "--preset", "thumos14",
                    "--batch-size", "1") == 0
    assert sizes == [(0, 2, 16), (1, 2, 16)]  # a window's frames per item, not 21
    whole, segmented = np.load(tmp_path / "whole" / "a.npy"), np.load(tmp_path / "segments" / "a.npy")
    assert whole.shape == segmented.shape == (2, 2048)
    np.testing.assert_allclose(segmented, whole, rtol=0, atol=1e-6)
