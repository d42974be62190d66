"""i3d-extract-features: saved features equal the model's endpoint computed directly."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d_lightning.commands import extract_features
from i3d_lightning.data.annotations import video_files
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset
from i3d_lightning.models import InceptionI3d
from i3d_lightning.video.sampling import window_starts
from i3d_lightning.weights.loading import save_state_dict
from tests.conftest import (
    IEEE,
    files_written_under,
    float32_settings_at_each_convolution,
    record_segments,
    run_main,
    written_atomically,
)
from tests.tiny_datasets import _video
from tests.videos import write_frames


def _extract(videos, out, checkpoints_dir, capsys, *extra: str) -> tuple[int, str, str]:
    """``i3d-extract-features VIDEOS OUT ...`` in this process (its main()): (exit status, stdout, stderr)."""
    return run_main(extract_features.main, [str(videos), str(out), "--weights-rgb", "rgb_scratch", "--mirror",
                                            str(checkpoints_dir), "--short-side", "193", "--crop", "193",
                                            "--workers", "0", *extra], capsys)


def test_window_starts():
    assert window_starts(20, 9, 4) == [0, 4, 8]
    assert window_starts(32, 16, 16) == [0, 16]
    assert window_starts(5, 16, 16) == [0]


def test_window_features_equal_the_model_endpoint(tmp_path, weights_cache, checkpoints_dir, rgb_scratch_state,
                                                  capsys, user_float32_flags):
    videos = tmp_path / "videos"
    for index in range(2):
        _video(videos / "cat" / f"clip{index}.mp4", 50 + index)
    (videos / "cat" / "broken.mp4").write_bytes(b"\x01" * 3000)
    out = tmp_path / "features"
    with files_written_under(out) as written:
        status, stdout, stderr = _extract(videos, out, checkpoints_dir, capsys, "--window", "9", "--stride", "4")
    assert status == 3, stderr[-3000:]  # done, but the broken video was skipped
    # Features, conventions.json, index.csv and the list of skipped videos: each under a temporary name first.
    assert len(written) == 5 and written_atomically(written), written
    assert "3 videos, 0 already extracted, 3 to do" in stdout

    model = InceptionI3d().eval()
    model.load_state_dict(rgb_scratch_state)
    records = [r for r in video_files(videos).records if r.video_id != "cat/broken"]
    dataset = VideoClipDataset(records, ClipSampling(train=False, whole_video=True, short_side=193, crop_size=193))
    for index, record in enumerate(records):
        clip = dataset[index]["rgb"]  # [1, 3, 12, 193, 193]: all 12 frames
        saved = np.load(out / "rgb" / f"{record.video_id}.npy")
        assert saved.shape == (1, 1024)  # 12 frames: one window of 9 (the next would end at 13)
        with torch.no_grad():
            direct = model.forward_endpoints(clip[:, :, 0:9], ["Features"])["Features"][0].numpy()
        np.testing.assert_allclose(saved[0], direct, atol=1e-4)
    with (out / "index.csv").open() as stream:
        index_rows = list(csv.DictReader(stream))
    assert [(row["video_id"], row["shape"]) for row in index_rows] == [("cat/clip0", "1x1024"), ("cat/clip1", "1x1024")]
    with (out / "skipped_videos.csv").open() as stream:
        assert [row["video_id"] for row in csv.DictReader(stream)] == ["cat/broken"]

    _, stdout, _ = _extract(videos, out, checkpoints_dir, capsys, "--window", "9", "--stride", "4")
    assert "3 videos, 2 already extracted, 1 to do" in stdout
    assert not list(out.rglob(".*partial*"))

    # One window per network call (above: both videos' windows in one call), in IEEE fp32 whatever the
    # process had set: the same features.
    with float32_settings_at_each_convolution() as seen:
        status, _, _ = _extract(videos, tmp_path / "one_by_one", checkpoints_dir, capsys, "--window", "9",
                                "--stride", "4", "--batch-size", "1")
    assert status == 3 and seen and all(settings == IEEE for settings in seen)
    for record in records:
        np.testing.assert_allclose(np.load(tmp_path / "one_by_one" / "rgb" / f"{record.video_id}.npy"),
                                   np.load(out / "rgb" / f"{record.video_id}.npy"), atol=1e-5)


def test_per_video_features(tmp_path, weights_cache, checkpoints_dir, rgb_scratch_state, capsys):
    _video(tmp_path / "videos" / "a.mp4", 7)
    out = tmp_path / "features"
    status, _, stderr = _extract(tmp_path / "videos", out, checkpoints_dir, capsys, "--per-video", "--no-fast")
    assert status == 0, stderr[-3000:]
    saved = np.load(out / "rgb" / "a.npy")
    assert saved.shape == (1024,)
    np.testing.assert_allclose(saved, _one_pass_features(tmp_path / "videos", rgb_scratch_state), atol=1e-5)


def _one_pass_features(videos: Path, state: dict[str, torch.Tensor]) -> np.ndarray:
    """``[1024]``: the release network's ``Features`` of the first video's every frame, in one pass."""
    model = InceptionI3d().eval()
    model.load_state_dict(state)
    dataset = VideoClipDataset(video_files(videos).records,
                               ClipSampling(train=False, whole_video=True, short_side=193, crop_size=193))
    with torch.no_grad():
        return model.features(dataset[0]["rgb"])[0].numpy()


def test_flow_features_from_videos_alone(tmp_path, weights_cache, checkpoints_dir, capsys):
    # No flow folders: the flow is computed from the video (TV-L1), as data.flow_source=online does.
    # 4 frames of a panning texture: 3 flow frames, looped to I3D's 9 (TV-L1 runs on the 3 pairs once).
    texture = np.random.default_rng(8).integers(0, 256, (25, 25, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    write_frames(tmp_path / "videos" / "a.mp4", np.stack([np.roll(texture, 2 * t, axis=1) for t in range(4)]))
    torch.manual_seed(0)
    model = InceptionI3d(400, 2).eval()
    weights = save_state_dict(model.state_dict(), tmp_path / "flow.safetensors", {"stream": "flow"})
    out = tmp_path / "features"
    status, _, stderr = _extract(tmp_path / "videos", out, checkpoints_dir, capsys, "--stream", "flow",
                                 "--weights-flow", str(weights), "--per-video", "--no-fast")
    assert status == 0, stderr[-3000:]
    saved = np.load(out / "flow" / "a.npy")
    dataset = VideoClipDataset(video_files(tmp_path / "videos").records,
                               ClipSampling(train=False, whole_video=True, short_side=193, crop_size=193),
                               modalities=("flow",), flow_source="online")
    clip = dataset[0]["flow"]
    assert clip.shape[:3] == (1, 2, 9) and clip.abs().max() > 0
    torch.testing.assert_close(clip[:, :, 3:6], clip[:, :, :3])  # the video's 3 flow frames, looped
    with torch.no_grad():
        direct = model.features(clip)[0].numpy()
    np.testing.assert_allclose(saved, direct, atol=1e-5)


def test_a_refused_extraction_leaves_the_folder_as_it_was(tmp_path, weights_cache, checkpoints_dir, capsys):
    # Refused for its weights: exit 2, one line, and no folder (nor conventions.json) that would make the
    # corrected command refuse to "mix" features with a folder that holds none.
    _video(tmp_path / "videos" / "a.mp4", 7)
    (tmp_path / "notes.txt").write_text("not weights\n")
    out = tmp_path / "features"
    status, _, stderr = _extract(tmp_path / "videos", out, checkpoints_dir, capsys, "--weights-rgb",
                                 str(tmp_path / "notes.txt"), "--per-video")
    assert status == 2 and stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists()
    # A folder left by an older version (conventions.json of other weights, no feature) is new.
    out.mkdir()
    (out / "conventions.json").write_text('{"weights": {"rgb": "elsewhere"}}\n')
    # One video given as SOURCE is that video, not a list file.
    status, _, stderr = _extract(tmp_path / "videos" / "a.mp4", out, checkpoints_dir, capsys, "--per-video")
    assert status == 0, stderr[-3000:]
    assert np.load(out / "rgb" / "a.npy").shape == (1024,)
    assert '"rgb": "rgb_scratch"' in (out / "conventions.json").read_text()
    # Nothing to extract is a mistake, not a success with an empty index; a file that is neither a video
    # nor a text list is one line too.
    (tmp_path / "empty").mkdir()
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(3000))
    for source, message in ((tmp_path / "empty", "no videos found"),
                            (tmp_path / "random.bin", "is neither a folder, a video")):
        status, _, stderr = _extract(source, tmp_path / "new", checkpoints_dir, capsys)
        assert status == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert not (tmp_path / "new").exists()


def test_per_video_features_of_a_long_video_come_in_tiles_with_the_one_pass_value(
        tmp_path, weights_cache, checkpoints_dir, rgb_scratch_state, capsys, monkeypatch):
    # 131 frames, in tiles of 8 average-pool steps: 2 items of 123 and 115 frames (each reaching the 47
    # and 54 frames its steps read), whose sums are the one pass's mean; the bar counts frames.
    from i3d_lightning.data import segments

    frames = np.random.default_rng(3).integers(0, 256, (131, 25, 25, 3), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
    write_frames(tmp_path / "videos" / "long.mp4", frames)
    monkeypatch.setattr(segments, "TILE_STEPS", 8)
    spans = record_segments(monkeypatch)
    out = tmp_path / "features"
    status, stdout, stderr = _extract(tmp_path / "videos", out, checkpoints_dir, capsys, "--per-video")
    assert status == 0, stderr[-3000:]
    assert spans == [(0, 2, 123), (1, 2, 115)]
    assert "131/131" in stdout.replace("\r", "\n") and "frames/s" in stdout, stdout[-2000:]
    np.testing.assert_allclose(np.load(out / "rgb" / "long.npy"),
                               _one_pass_features(tmp_path / "videos", rgb_scratch_state), rtol=0, atol=1e-5)


def test_a_long_video_is_read_a_segment_at_a_time(tmp_path):
    # 127 frames, windows of 16 every 16 (7 windows), 4 windows a segment: 2 items of at most 64 frames,
    # whose frames are the whole video's windows', in order.
    from i3d_lightning.data.segments import window_segments
    from tests.encodings import encode, index_of

    encode(tmp_path / "long.mp4", 127, "mp4_h264_open_gop")  # frame indices up to 127 are written in
    sampling = ClipSampling(train=False, whole_video=True, fps=None, short_side=128, crop_size=None)
    whole = VideoClipDataset(video_files(tmp_path / "long.mp4").records, sampling, rgb_as_uint8=True)
    items = window_segments(whole, window=16, stride=16, windows_per_segment=4)
    assert [(s.start, s.stop, s.number, s.count, s.windows) for s in items.segments] == [
        (0, 64, 0, 2, 4), (64, 112, 1, 2, 3)]  # 7 windows: 4 + 3
    frames = []
    for index in range(len(items)):
        item = items[index]
        assert item["rgb"].shape[2] <= 64 and (item["segment"], item["segments"]) == (index, 2)
        frames += [index_of(item["rgb"][0][:, t].permute(1, 2, 0).numpy()) for t in range(item["rgb"].shape[2])]
    assert frames == list(range(112))  # the 7 windows' frames; the last 15 frames start no window


def test_a_segment_follows_the_batch_size_and_spans_at_most_256_frames():
    from i3d_lightning.data.segments import windows_per_segment

    assert windows_per_segment(16, 4, 8) == 32  # THUMOS14: 4 calls of 8 windows, 140 frames
    assert windows_per_segment(16, 16, 8) == 16  # ActivityNet: 256 frames
    assert windows_per_segment(16, 64, 8) == 4  # a large stride: 208 frames, not 2,000
    assert windows_per_segment(16, 4, 1) == 4 and windows_per_segment(300, 16, 8) == 1


def test_progress_counts_windows_inside_a_long_video(tmp_path, weights_cache, checkpoints_dir, capsys):
    # A 40-frame video (windows of 9 every 4: 8 windows, in 2 segments of 4 with --batch-size 1) and a
    # 12-frame one (1 window): the bar counts 9 windows, and moves inside the long video.
    videos = tmp_path / "videos"
    write_frames(videos / "long.mp4", np.random.default_rng(0).integers(0, 256, (40, 25, 25, 3), dtype=np.uint8)
                 .repeat(8, 1).repeat(8, 2))
    _video(videos / "short.mp4", 1)
    status, stdout, stderr = _extract(videos, tmp_path / "out", checkpoints_dir, capsys, "--window", "9",
                                      "--stride", "4", "--batch-size", "1")
    assert status == 0, stderr[-2000:]
    states = [line.split("|")[-1].split("[")[0].strip() for line in stdout.replace("\r", "\n").splitlines()
              if line.startswith("features:")]  # Lightning's bars write to stdout
    assert states and states[0] == "0/9" and states[-1] == "9/9" and "4/9" in states, stdout[-2000:]
    assert "windows/s" in stdout
    assert np.load(tmp_path / "out" / "rgb" / "long.npy").shape == (8, 1024)


def test_a_rerun_resumes_a_long_video_after_its_last_finished_segment(tmp_path, weights_cache, checkpoints_dir,
                                                                      capsys, monkeypatch):
    # 40 frames, windows of 9 every 4 in 2 segments of 4 (--batch-size 1). The first run stops (Ctrl-C)
    # while reading segment 2: segment 1 is kept, the rerun reads segment 2 alone and writes the
    # features a run without a stop writes; the kept segments go once the video is written.
    from i3d_lightning.data import segments

    videos = tmp_path / "videos"
    write_frames(videos / "long.mp4", np.random.default_rng(0).integers(0, 256, (40, 25, 25, 3), dtype=np.uint8)
                 .repeat(8, 1).repeat(8, 2))
    options = ("--window", "9", "--stride", "4", "--batch-size", "1")
    assert _extract(videos, tmp_path / "uninterrupted", checkpoints_dir, capsys, *options)[0] == 0
    read, stop_at = [], [1]
    original = segments.VideoSegments.__getitem__

    def stopping(self, index):
        if index in stop_at:
            stop_at.clear()
            raise KeyboardInterrupt
        read.append(self.segments[index].number)
        return original(self, index)

    monkeypatch.setattr(segments.VideoSegments, "__getitem__", stopping)
    out = tmp_path / "out"
    status, _, stderr = _extract(videos, out, checkpoints_dir, capsys, *options)
    assert status == 130 and not (out / "rgb" / "long.npy").exists(), stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith(f"interrupted: the features written under {out} are kept")
    assert [path.name for path in (out / ".segments" / "long").iterdir()] == ["0-of-2-frames-0-21.npz"]
    assert read == [0]
    read.clear()
    status, _, stderr = _extract(videos, out, checkpoints_dir, capsys, *options)
    assert status == 0, stderr[-2000:]
    assert read == [1]  # segment 2 alone
    np.testing.assert_array_equal(np.load(out / "rgb" / "long.npy"),
                                  np.load(tmp_path / "uninterrupted" / "rgb" / "long.npy"))
    assert not (out / ".segments").exists()


def _peak_memory(args: list[str]) -> int:
    """Peak resident memory (KiB, from the kernel) of ``i3d-extract-features ARGS`` run as a process of its own."""
    process = subprocess.Popen([str(Path(sys.executable).parent / "i3d-extract-features"), *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, stderr[-2000:]
    return usage.ru_maxrss


@pytest.mark.long(minutes=3)
def test_a_30_minute_video_is_extracted_in_the_memory_of_an_8_minute_one(tmp_path, weights_cache, checkpoints_dir):
    # Test-sized: 32x32 pixels at 30 fps, read at 2 fps with shorter side 256 (3,600 frames for 30 minutes:
    # 700 MB as uint8, which the whole-video item held at once), windows of 16 every 128 cropped to 193
    # (segments of 2 windows, 144 frames, at most 256). The peaks are the processes', from the kernel;
    # 8 minutes are 4 segments, past the allocator's first growth.
    texture = np.random.default_rng(0).integers(0, 256, (4, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    pan = np.stack([np.roll(texture, t, axis=1)[:, :32] for t in range(64)])
    peaks, shapes = {}, {}
    for minutes in (8, 30):
        videos = tmp_path / f"{minutes}min"
        write_frames(videos / "video.mp4", pan[np.arange(minutes * 60 * 30) % 64], fps=30)
        out = tmp_path / f"out{minutes}"
        peaks[minutes] = _peak_memory([str(videos), str(out), "--weights-rgb", "rgb_scratch", "--mirror",
                                       str(checkpoints_dir), "--short-side", "256", "--crop", "193", "--fps", "2",
                                       "--window", "16", "--stride", "128", "--workers", "0"])
        shapes[minutes] = np.load(out / "rgb" / "video.npy").shape
    assert shapes == {8: (8, 1024), 30: (29, 1024)}  # (frames - 16) // 128 + 1 windows
    assert peaks[30] <= 1.1 * peaks[8], peaks  # the whole video at once: about 1.4x
