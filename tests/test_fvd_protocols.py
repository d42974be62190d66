"""The paper protocols by name (StyleGAN-V's clip selection), the distance's explicit choices and the
command's ``--protocol``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i3d_lightning.commands import fvd as fvd_tool
from i3d_lightning.errors import UserInputError
from i3d_lightning.fvd import inputs
from i3d_lightning.fvd.inputs import ClipSource
from i3d_lightning.fvd.protocols import PAPER_CLIPS, paper_protocol
from tests.videos import write_frames

#: Frame folders of these lengths; frame i of every video is filled with the value i.
LENGTHS = {"a": 20, "b": 15, "c": 16, "d": 40, "e": 10, "f": 130}


@pytest.fixture(scope="module")
def frame_folders(tmp_path_factory) -> object:
    root = tmp_path_factory.mktemp("frame_folders")
    for name, length in LENGTHS.items():
        (root / name).mkdir()
        for index in range(length):
            Image.fromarray(np.full((8, 8, 3), index, np.uint8)).save(root / name / f"{index:04d}.png")
    return root


def _frame_indices(source: ClipSource) -> dict[str, list[int]]:
    """The frame indices of each video's one clip (read back from the pixel values)."""
    items = [source[index] for index in range(len(source))]
    return {item["video_id"]: item["clips"][0, :, 0, 0, 0].tolist() for item in items}


def test_fvd2048_16f_discards_short_videos_and_starts_real_clips_at_random(frame_folders):
    protocol = paper_protocol("fvd2048_16f", seed=3)
    assert (protocol.frames, protocol.stride, protocol.max_videos, protocol.min_frames) == (16, 1, PAPER_CLIPS, 16)
    real = ClipSource(frame_folders, protocol, side="real")
    assert real.discarded == ["b", "e"]  # fewer than 16 frames: left out, counted
    clips = _frame_indices(real)
    assert list(clips) == ["a", "c", "d", "f"]  # sorted order
    for video, frames in clips.items():
        start = frames[0]
        assert frames == list(range(start, start + 16)) and 0 <= start <= LENGTHS[video] - 16
    assert any(frames[0] > 0 for frames in clips.values())  # random starts (c has only 0)
    assert _frame_indices(ClipSource(frame_folders, protocol, side="real")) == clips  # seeded
    other_seed = _frame_indices(ClipSource(frame_folders, paper_protocol("fvd2048_16f", seed=4), side="real"))
    assert other_seed != clips
    fake = _frame_indices(ClipSource(frame_folders, protocol, side="fake"))
    assert fake == {video: list(range(16)) for video in clips}  # generated clips: from the first frame
    # The first N videos are counted after the short ones are discarded.
    two = ClipSource(frame_folders, dataclasses.replace(protocol, max_videos=2), side="real")
    assert two.ids == ["a", "c"] and two.discarded == ["b", "e"]


def test_each_video_is_probed_once(tmp_path, monkeypatch):
    # min_frames needs every video's length before any clip is read; the clips do not probe again.
    for name, length in (("long", 17), ("short", 12)):
        write_frames(tmp_path / f"{name}.mp4", np.full((length, 24, 32, 3), 100, np.uint8))
    probed = []
    real_probe = inputs.decoding.probe
    monkeypatch.setattr(inputs.decoding, "probe", lambda path: probed.append(Path(path).name) or real_probe(path))
    source = ClipSource(tmp_path, paper_protocol("fvd2048_16f"), side="real")
    assert source.discarded == ["short.mp4"] and source[0]["clips"].shape == (1, 16, 24, 32, 3)
    assert sorted(probed) == ["long.mp4", "short.mp4"]


def test_the_128_frame_protocols_take_128_frames_of_time(frame_folders):
    subsampled = ClipSource(frame_folders, paper_protocol("fvd2048_128f_subsample8f", seed=1), side="real")
    assert subsampled.discarded == ["a", "b", "c", "d", "e"]  # StyleGAN-V keeps videos of 16 x 8 frames or more
    (frames,) = _frame_indices(subsampled).values()
    assert frames == list(range(frames[0], frames[0] + 128, 8)) and frames[0] <= 130 - 121
    consecutive = ClipSource(frame_folders, paper_protocol("fvd2048_128f"), side="fake")
    assert _frame_indices(consecutive) == {"f": list(range(128))}


def test_an_unknown_protocol_and_too_short_sets_are_refused(frame_folders, tmp_path):
    with pytest.raises(UserInputError, match="unknown FVD protocol 'fvd16'"):
        paper_protocol("fvd16")
    np.save(tmp_path / "short.npy", np.zeros((2, 12, 8, 8, 3), np.uint8))
    with pytest.raises(UserInputError, match="its videos have 12 frames, fewer than the protocol's 16"):
        ClipSource(tmp_path / "short.npy", paper_protocol("fvd2048_16f"))


def test_fvd_tool_protocol_option(tmp_path, frame_folders, weights_cache, monkeypatch, capsys):
    monkeypatch.setenv("I3D_WEIGHTS_MIRROR", str(tmp_path / "no-mirror"))
    rng = np.random.default_rng(1)
    np.save(tmp_path / "real.npy", rng.integers(0, 256, (3, 18, 8, 8, 3), dtype=np.uint8))
    common = [str(tmp_path / "real.npy"), str(frame_folders), "--devices", "1", "--accelerator", "cpu"]
    # --protocol fixes the clips: a clip option beside it is refused before any work.
    assert fvd_tool.main([*common, "--protocol", "fvd2048_16f", "--frames", "9", "--stride", "2"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --protocol fvd2048_16f fixes the clips: leave out --frames, "
                                               "--stride")
    status = fvd_tool.main([*common, "--protocol", "kvd2048_16f", "--covariance", "biased", "--json",
                            str(tmp_path / "kvd.json")])
    assert status == 0  # discarded videos are the protocol's rule, not unreadable ones
    out, err = capsys.readouterr()
    report = json.loads((tmp_path / "kvd.json").read_text())
    assert report["protocol"]["name"] == "kvd2048_16f" and report["distance"]["covariance"] == "biased"
    assert report["counts"] == {"real_clips": 3, "fake_clips": 4, "real_videos": 3, "fake_videos": 4,
                               "real_skipped": 0, "fake_skipped": 0, "real_discarded": 0, "fake_discarded": 2}
    assert "discarded 2 fake videos shorter than 16 frames (kvd2048_16f's rule)" in out
    assert f"kvd2048_16f: {report['kvd']:.6f}" in out.splitlines() and out.splitlines()[-1].startswith("FVD: ")
    warnings = [line for line in err.splitlines() if line.startswith("warning: kvd2048_16f calls for 2048 clips")]
    unequal = [line for line in err.splitlines() if line.startswith("warning: the sides have 3 real and 4 fake")]
    assert len(warnings) == 2 and len(unequal) == 1  # both sides, each said once; and 3 against 4 clips
    assert report["warnings"] == warnings + unequal
