"""VideoClipDataset on real encoded videos: the right frames, aligned streams, bad files skipped."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i3d_lightning.data.annotations import VideoRecord
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset, collate_clips
from i3d_lightning.errors import UserInputError
from i3d_lightning.flow.stored import flow_file, read_flow
from i3d_lightning.video import decoding
from tests.conftest import run_script
from tests.videos import LEVELS, decoded_index_mod_levels, horizontal_ramp, write_frames, write_video

SMALL = {"short_side": 64, "crop_size": 48}


def _indices_mod_levels(clip: torch.Tensor) -> list[int]:
    """Frame identity of each time step of a [C, T, H, W] clip in [-1, 1]."""
    levels = ((clip.mean(dim=(0, 2, 3)) + 1) * 127.5).tolist()
    return [decoded_index_mod_levels(level) for level in levels]


@pytest.mark.parametrize(("suffix", "codec", "gop", "fps"), [
    ("mp4", "mpeg4", 12, 25), ("avi", "mpeg4", 1, 30), ("mp4", "libx264", 250, 25), ("avi", "mjpeg", 1, 15),
])
def test_decoder_returns_requested_frames(tmp_path, suffix, codec, gop, fps):
    video = write_video(tmp_path / f"v.{suffix}", 40, fps=fps, width=96, height=72, codec=codec, gop=gop)
    info = decoding.probe(video)
    assert (info.num_frames, info.width, info.height) == (40, 96, 72)
    assert info.fps == pytest.approx(fps, rel=0.01)
    wanted = [39, 3, 17, 3, 0, 55]  # unsorted, repeated, and one past the end (clamped to the last)
    frames = decoding.read_frames(video, wanted, size=(64, 48))
    assert frames.shape == (6, 48, 64, 3) and frames.dtype == np.uint8
    got = [decoded_index_mod_levels(frame.mean()) for frame in frames]
    assert got == [i % LEVELS for i in (39, 3, 17, 3, 0, 39)]


def test_training_clip_frames_follow_the_sampler(tmp_path):
    video = write_video(tmp_path / "v.mp4", 60, fps=30, width=96, height=72)  # 60 frames at 30 fps = 50 at 25
    dataset = VideoClipDataset([VideoRecord(video, 3, "v")], ClipSampling(train=True, clip_len=10, stride=2, **SMALL))
    starts = set()
    for epoch in range(20):
        dataset.epoch = epoch
        item = dataset[0]
        assert item["rgb"].shape == (3, 10, 48, 48) and item["label"] == 3 and item["video_id"] == "v"
        resampled = np.floor(np.arange(50) * 30 / 25 + 1e-6).astype(int)  # 25 fps timeline -> source frames
        ids = _indices_mod_levels(item["rgb"])
        matches = [start for start in range(50 - 18) if ids == [resampled[start + 2 * k] % LEVELS for k in range(10)]]
        assert matches, ids
        starts.add(matches[0])
    assert len(starts) > 5  # random starts


def test_augmentations_depend_only_on_seed_epoch_and_item(tmp_path):
    video = write_video(tmp_path / "v.mp4", 60, width=96, height=72)
    records = [VideoRecord(video, 0, "a"), VideoRecord(video, 0, "b")]
    first = VideoClipDataset(records, ClipSampling(train=True, clip_len=8, **SMALL), seed=3)
    again = VideoClipDataset(records, ClipSampling(train=True, clip_len=8, **SMALL), seed=3)
    assert torch.equal(first[1]["rgb"], again[1]["rgb"])
    again.epoch = 1
    assert not torch.equal(first[1]["rgb"], again[1]["rgb"])
    assert not torch.equal(first[0]["rgb"], first[1]["rgb"])  # same video, other item: other choices


def test_evaluation_views_and_whole_video(tmp_path):
    video = write_video(tmp_path / "v.mp4", 50, width=96, height=64)
    sampling = ClipSampling(train=False, clip_len=8, num_clips=3, num_crops=3, **SMALL)
    item = VideoClipDataset([VideoRecord(video, 0, "v")], sampling)[0]
    assert item["rgb"].shape == (9, 3, 8, 48, 48)  # 3 clips x 3 crops
    for view in range(9):
        start = [0, 21, 42][view // 3]
        assert _indices_mod_levels(item["rgb"][view]) == [(start + k) % LEVELS for k in range(8)]
    whole = VideoClipDataset([VideoRecord(video, 0, "v")], ClipSampling(train=False, whole_video=True, **SMALL))[0]
    assert whole["rgb"].shape == (1, 3, 50, 48, 48)
    assert _indices_mod_levels(whole["rgb"][0]) == [k % LEVELS for k in range(50)]


def _ramp_video_and_flow(tmp_path: Path, frames: int = 12) -> tuple[Path, Path]:
    """An rgb video and a flow folder showing the same left-to-right ramp (flow y = 0)."""
    ramp = horizontal_ramp(96, 64)
    video = write_frames(tmp_path / "videos" / "ramp.mp4", np.repeat(ramp[None, :, :, None], frames, 0).repeat(3, 3))
    folder = tmp_path / "flow" / "ramp"
    folder.mkdir(parents=True)
    for index in range(frames - 1):
        Image.fromarray(ramp).save(flow_file(folder, "x", index), quality=98)
        Image.fromarray(np.full_like(ramp, 128)).save(flow_file(folder, "y", index), quality=98)
    return video, tmp_path / "flow"


def test_joint_streams_share_frames_crop_and_flip(tmp_path):
    video, flow_root = _ramp_video_and_flow(tmp_path)
    dataset = VideoClipDataset([VideoRecord(video, 1, "ramp")], ClipSampling(train=True, clip_len=8, **SMALL),
                               modalities=("rgb", "flow"), flow_root=flow_root)
    flips = set()
    for epoch in range(16):
        dataset.epoch = epoch
        item = dataset[0]
        rgb, flow = item["rgb"][0], item["flow"]  # rgb red channel [T, S, S] and flow [2, T, S, S]
        assert flow.shape == (2, 8, 48, 48)
        flipped = bool(rgb[0, 0, 0] > rgb[0, 0, -1])  # the ramp rises to the right unless flipped
        flips.add(flipped)
        # Same crop: flow x shows the same ramp values as rgb; a flip mirrors both and negates flow x.
        expected_x = -rgb if flipped else rgb
        assert (flow[0] - expected_x).abs().mean() < 0.03
        assert flow[1].abs().max() < 0.03
    assert flips == {True, False}


def test_flow_jpegs_decode_to_model_range(tmp_path):
    _, flow_root = _ramp_video_and_flow(tmp_path, frames=3)
    flow = read_flow(flow_root / "ramp", [1, 0, 1])
    assert flow.shape == (3, 64, 96, 2) and flow.dtype == torch.float32
    assert flow[..., 0].min() == pytest.approx(16 / 127.5 - 1, abs=0.02)
    assert flow[..., 0].max() == pytest.approx(240 / 127.5 - 1, abs=0.02)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = write_video(tmp_path / "good.mp4", 30, width=96, height=64, gop=30)
    data = good.read_bytes()
    files = {"missing": tmp_path / "missing.mp4", "empty": tmp_path / "empty.mp4",
             "truncated": tmp_path / "truncated.mp4", "corrupt": tmp_path / "corrupt.mp4"}
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["corrupt"].write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    files["av1"] = write_video(tmp_path / "av1.mp4", 12, width=96, height=64, codec="libsvtav1")
    files["audio_only"] = _audio_only(tmp_path / "audio.m4a")
    return files


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_every_kind_of_bad_file_is_skipped_and_reported(tmp_path, capfd):
    files = _bad_files(tmp_path)
    capfd.readouterr()  # the encoders' own lines while the files were written
    records = [VideoRecord(path, 0, kind) for kind, path in files.items()]
    records.insert(2, VideoRecord(tmp_path / "good.mp4", 1, "good"))
    dataset = VideoClipDataset(records, ClipSampling(train=False, clip_len=8, **SMALL))
    batch = collate_clips([dataset[i] for i in range(len(dataset))])
    assert batch["size"] == 1 and batch["video_id"] == ["good"] and batch["label"].tolist() == [1]
    reasons = {video_id: reason for video_id, _, reason in batch["skipped"]}
    assert set(reasons) == set(files)
    assert "no such file" in reasons["missing"] and "empty file (0 bytes)" in reasons["empty"]
    for kind in ("empty", "corrupt", "av1", "audio_only", "truncated"):
        assert str(files[kind]) in reasons[kind], (kind, reasons[kind])
    # FFmpeg's and decord's own lines (written straight to file descriptor 2) are silenced: the reasons
    # above say what went wrong.
    assert capfd.readouterr().err == ""
    strict = VideoClipDataset(records, ClipSampling(train=False, clip_len=8, **SMALL), on_error="raise")
    with pytest.raises(UserInputError, match="corrupt.mp4"):
        strict[4]


def test_batch_of_only_bad_files(tmp_path):
    dataset = VideoClipDataset([VideoRecord(tmp_path / "x.mp4", 0, "x")], ClipSampling(train=True, clip_len=8, **SMALL))
    batch = collate_clips([dataset[0]])
    assert batch == {"skipped": [("x", str(tmp_path / "x.mp4"), f"{tmp_path / 'x.mp4'}: no such file")], "size": 0}


def test_forked_workers_do_not_hang_after_the_parent_decoded(tmp_path):
    for index in range(6):
        write_video(tmp_path / f"v{index}.mp4", 30, width=96, height=64)
    script = textwrap.dedent(f"""
        from pathlib import Path
        import torch
        from i3d_lightning.video import decoding
        from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset, collate_clips
        from i3d_lightning.data.annotations import VideoRecord
        paths = sorted(Path({str(tmp_path)!r}).glob("*.mp4"))
        decoding.read_frames(paths[0], [0, 5])  # the parent decodes before forking
        records = [VideoRecord(p, 0, p.stem) for p in paths] * 4
        dataset = VideoClipDataset(records, ClipSampling(train=True, clip_len=8, short_side=64, crop_size=48))
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_clips,
                                             multiprocessing_context="fork", timeout=60)
        print(sum(batch["size"] for batch in loader))
    """)
    result = run_script("-c", script, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "24"


def _rss_mb() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_memory_stays_flat_over_hundreds_of_items(tmp_path):
    videos = [write_video(tmp_path / f"v{index}.mp4", 120, width=160, height=120, gop=25) for index in range(5)]
    records = [VideoRecord(path, 0, path.stem) for path in videos] * 60  # 300 items
    dataset = VideoClipDataset(records, ClipSampling(train=True, clip_len=16, short_side=112, crop_size=96))
    for index in range(50):
        dataset[index]
    baseline = _rss_mb()
    for index in range(50, len(dataset)):
        dataset[index]
    assert _rss_mb() - baseline < 40, f"RSS grew from {baseline:.0f} MB to {_rss_mb():.0f} MB"
