"""i3d-extract-flow and i3d-check-videos on real videos."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from i3d_lightning.flow.stored import count_flow_frames, read_flow
from tests.conftest import run_script
from tests.videos import write_frames, write_video


def _run(command: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m i3d_lightning.commands.<command> *args`` (what the console command runs)."""
    return run_script("-m", f"i3d_lightning.commands.{command}", *args, timeout=300)


@pytest.mark.parametrize("backend", ["torch", "opencv"])
def test_extract_flow_measures_motion_and_resumes(tmp_path, backend):
    rng = np.random.default_rng(0)
    texture = np.repeat(np.repeat(rng.integers(0, 256, (12, 12), dtype=np.uint8), 8, 0), 8, 1)  # 96x96 blocks
    frames = np.stack([np.roll(texture, 3 * t, axis=1) for t in range(8)])  # moves right 3 px per frame
    write_frames(tmp_path / "videos" / "moving" / "right.mp4", np.repeat(frames[..., None], 3, 3))
    (tmp_path / "videos" / "moving" / "broken.avi").write_bytes(b"\x00" * 4096)
    result = _run("extract_flow", str(tmp_path / "videos"), str(tmp_path / "flow"), "--short-side", "96",
                  "--workers", "2", "--backend", backend)
    assert result.returncode == 3  # done, but one video failed (listed)
    # Progress in flow frames too (a long video would otherwise show nothing for minutes), summed over workers,
    # out of the frames of the videos started: 7 of 7.
    assert re.search(r"flow frames: 100%\|[^|]*\| 7/7 ", result.stderr), result.stderr[-2000:]
    assert count_flow_frames(tmp_path / "flow" / "moving" / "right") == 7
    flow = read_flow(tmp_path / "flow" / "moving" / "right", range(7)).numpy() * 20  # back to pixels
    assert abs(np.median(flow[..., 0]) - 3) < 0.5 and abs(np.median(flow[..., 1])) < 0.5
    with (tmp_path / "flow" / "skipped_videos.csv").open() as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["video_id", "path", "reason"]
    assert rows[1][:2] == ["moving/broken", str(tmp_path / "videos" / "moving" / "broken.avi")]
    assert len(rows) == 2
    a_file = _run("extract_flow", str(tmp_path / "videos" / "moving" / "right.mp4"), str(tmp_path / "flow"))
    assert a_file.returncode == 2 and a_file.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'videos' / 'moving' / 'right.mp4'} is a file: VIDEOS_DIR is a folder of videos "
        "(searched recursively)"]
    again = _run("extract_flow", str(tmp_path / "videos"), str(tmp_path / "flow"), "--short-side", "96")
    assert "2 videos, 1 already done, 1 to compute" in again.stdout
    assert not list((tmp_path / "flow" / "moving").glob(".*partial"))


def test_check_videos_lists_every_failure(tmp_path):
    good = write_video(tmp_path / "data" / "a" / "good.mp4", 20, width=96, height=64)
    (tmp_path / "data" / "a" / "truncated.mp4").write_bytes(good.read_bytes()[:300])
    (tmp_path / "data" / "b").mkdir()
    (tmp_path / "data" / "b" / "noise.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    out = tmp_path / "failed.csv"
    result = _run("check_videos", str(tmp_path / "data"), "--out", str(out), "--workers", "2")
    assert result.returncode == 3 and "2 inputs were skipped" in result.stderr
    assert "3 videos checked, 2 failed" in result.stdout
    with out.open() as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["video_id", "path", "reason"]  # the layout of every command's list of skipped videos
    assert [(row[0], Path(row[1]).name) for row in rows[1:]] == [("a/truncated", "truncated.mp4"),
                                                                 ("b/noise", "noise.avi")]
    assert all("VideoDecodeError" in row[2] for row in rows[1:])
    listing = tmp_path / "list.txt"
    listing.write_text(f"{good},0\n")
    assert _run("check_videos", str(listing), "--out", str(out)).returncode == 0
    one = _run("check_videos", str(good), "--out", str(out))  # one video is that video, not a list file
    assert one.returncode == 0 and "1 videos checked, 0 failed" in one.stdout, one.stderr
    noise = _run("check_videos", str(tmp_path / "data" / "b" / "noise.avi"), "--out", str(out))
    assert noise.returncode == 3 and "1 videos checked, 1 failed" in noise.stdout
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(1).bytes(3000))
    binary = _run("check_videos", str(tmp_path / "random.bin"), "--out", str(out))
    assert binary.returncode == 2 and binary.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'random.bin'} is neither a folder, a video (.mp4, .avi, .mkv, .webm, .mov, .m4v, "
        ".mpg, .mpeg) nor a text list of videos (one path[,label] per line)"]
    (tmp_path / "empty").mkdir()  # nothing to check is a mistake, not a success
    empty = _run("check_videos", str(tmp_path / "empty"), "--out", str(out))
    assert empty.returncode == 2 and empty.stderr.startswith(f"error: {tmp_path / 'empty'}: no videos found")
    (tmp_path / "a_file").write_text("")  # an output that cannot be written is refused before any video is opened
    refused = _run("check_videos", str(listing), "--out", str(tmp_path / "a_file" / "failed.csv"))
    assert refused.returncode == 2 and refused.stderr.startswith("error: --out") and not refused.stdout


def test_check_videos_says_which_videos_are_read_frame_accurately(tmp_path):
    from tests.encodings import encode

    encode(tmp_path / "data" / "ucf_like.avi", 30, "avi_mpeg4_bframes")
    encode(tmp_path / "data" / "kinetics_like.mp4", 30, "mp4_h264_closed_gop")
    encode(tmp_path / "data" / "open.mkv", 30, "mkv_h264_open_gop")
    result = _run("check_videos", str(tmp_path / "data"), "--out", str(tmp_path / "failed.csv"), "--access",
                  str(tmp_path / "access.csv"))
    assert result.returncode == 0, result.stderr
    assert ("frames read by decord's seek: 1; frame-accurately by timestamps (open GOPs, where decord's seek is "
            "off): 1; frame-accurately from the start (AVI with B-frames") in result.stdout
    with (tmp_path / "access.csv").open() as stream:
        rows = {Path(row["path"]).name: row["access"] for row in csv.DictReader(stream)}
    assert rows == {"ucf_like.avi": "sequential", "kinetics_like.mp4": "seek", "open.mkv": "timestamps"}
