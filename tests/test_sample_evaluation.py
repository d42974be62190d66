"""The release's sample evaluation: eval.py's output format, inputs, streams and errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from i3d_lightning.data.release_clip import load_input, release_sample
from i3d_lightning.errors import UserInputError
from i3d_lightning.evaluation.release_sample import evaluate_sample, format_release_output
from i3d_lightning.evaluation.run import evaluate
from i3d_lightning.models import InceptionI3d
from i3d_lightning.weights import WeightsSource, kinetics_categories
from i3d_lightning.weights.loading import save_state_dict
from tests.conftest import compose_config, run_command, run_script
from tests.videos import decoded_index_mod_levels, write_frames, write_video

RELEASE_LINE = re.compile(r"^(\S+) (\S+) (.+)$")


def _published(release_dir: Path, stream: str) -> list[tuple[str, str, str]]:
    lines = (release_dir / "out" / f"imagenet_{stream}.txt").read_text().splitlines()
    return [RELEASE_LINE.match(line).groups() for line in lines[3:23]]


def test_format_matches_the_published_output(release_dir):
    categories = kinetics_categories(400)
    published = _published(release_dir, "rgb")
    logits = np.full(400, -50.0, dtype=np.float32)
    for _, logit, name in published:
        logits[categories.index(name)] = np.float32(logit)
    lines = format_release_output(logits, categories).splitlines()
    assert re.fullmatch(r"Norm of logits: \d+\.\d{6}", lines[0])
    assert lines[1:3] == ["", "Top classes and probabilities"]
    assert len(lines) == 23
    ours = [RELEASE_LINE.match(line).groups() for line in lines[3:]]
    assert [(logit, name) for _, logit, name in ours] == [(logit, name) for _, logit, name in published]
    probabilities = [float(p) for p, _, _ in ours]
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] > 0.9999
    assert ours[1][0] == str(np.float32(probabilities[1]))  # printed like numpy float32, e.g. 1.335354e-06


def test_eval_cli_on_the_shared_sample_prints_playing_cricket(release_dir, checkpoints_dir, tmp_path):
    gif = release_dir / "v_CricketShot_g04_c01_rgb.gif"
    # A process of its own: what it prints, native libraries' lines included, is the point.
    result = run_script("eval.py", "stream=rgb", "weights.rgb=rgb_scratch", f"sample.rgb={gif}",
                        f"hydra.run.dir={tmp_path}",
                        env={"I3D_WEIGHTS_MIRROR": str(checkpoints_dir), "I3D_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Norm of logits: ") and lines[1:3] == ["", "Top classes and probabilities"]
    assert len(lines) == 23
    probability, logit, name = RELEASE_LINE.match(lines[3]).groups()
    assert name == "playing cricket" and float(probability) > 0.9 and float(logit) > 15
    assert result.stdout.strip() in (tmp_path / "eval.log").read_text()  # the run's log holds the report too
    assert result.stderr == ""  # no library chatter (TensorFlow's conversion included)


def test_default_sample_comes_from_the_mirror(checkpoints_dir, release_dir, tmp_path):
    # The shared mirror has the sample's GIF render (the .npy is not available offline).
    mirror = WeightsSource(mirror=checkpoints_dir)
    assert release_sample("rgb", mirror) == release_dir / "v_CricketShot_g04_c01_rgb.gif"
    assert release_sample("flow", mirror) == release_dir / "v_CricketShot_g04_c01_flow.gif"
    cfg = compose_config("eval", ["stream=rgb", "weights.rgb=rgb_scratch", f"weights.source.mirror={checkpoints_dir}"])
    assert cfg.sample.rgb is None and cfg.get("dataset") is None
    # Offline and without a mirror: the error says how to go on without the release's clip.
    with pytest.raises(UserInputError, match=r"Or give the clip yourself: sample.rgb=PATH"):
        release_sample("rgb", WeightsSource(cache=tmp_path / "cache", progress=False))


def test_joint_sums_rgb_and_flow_logits(tmp_path, weights_cache, capsys):
    flow_weights = save_state_dict(InceptionI3d(400, 2).state_dict(), tmp_path / "flow_random.safetensors", {})
    generator = np.random.default_rng(0)
    inputs = {}
    for stream, channels in (("rgb", 3), ("flow", 2)):
        inputs[stream] = tmp_path / f"{stream}.npy"
        np.save(inputs[stream], generator.uniform(-1, 1, (1, 12, 224, 224, channels)).astype(np.float32))
    cfg = compose_config("eval", ["stream=joint", "weights.rgb=rgb_scratch", f"weights.flow={flow_weights}",
                                  f"sample.rgb={inputs['rgb']}", f"sample.flow={inputs['flow']}", "device=cpu"])
    report = evaluate(cfg).text
    assert capsys.readouterr().out.strip() == report
    separate = [evaluate_sample([stream], cfg.weights, cfg.sample, fast=cfg.fast)[0] for stream in ("rgb", "flow")]
    joint, categories = evaluate_sample(["rgb", "flow"], cfg.weights, cfg.sample, fast=cfg.fast)
    np.testing.assert_allclose(joint, separate[0] + separate[1], rtol=1e-6, atol=1e-5)
    top = categories[int(joint.argmax())]
    assert report.splitlines()[3].endswith(" " + top)
    assert report.splitlines()[0] == f"Norm of logits: {np.linalg.norm(joint):f}"


def test_npy_input_round_trip(tmp_path):
    array = np.linspace(-1, 1, 1 * 9 * 4 * 5 * 2, dtype=np.float32).reshape(1, 9, 4, 5, 2)
    np.save(tmp_path / "flow.npy", array)
    clip = load_input(tmp_path / "flow.npy", "flow")
    assert clip.shape == (1, 2, 9, 4, 5)
    np.testing.assert_array_equal(clip[0].permute(1, 2, 3, 0).numpy(), array[0])


def test_gif_inputs_decode_as_documented(release_dir):
    rgb = load_input(release_dir / "v_CricketShot_g04_c01_rgb.gif", "rgb")
    flow = load_input(release_dir / "v_CricketShot_g04_c01_flow.gif", "flow")
    assert rgb.shape == (1, 3, 79, 224, 224) and flow.shape == (1, 2, 79, 224, 224)
    assert -1 <= rgb.min() < -0.9 and 0.9 < rgb.max() <= 1
    assert flow.min() >= -0.5 and flow.max() <= 0.5 and abs(float(flow.mean())) < 0.1


def test_video_input_is_preprocessed_like_the_release(tmp_path):
    video = write_video(tmp_path / "clip.mp4", 45, fps=30, width=320, height=240)
    clip = load_input(video, "rgb")
    # 45 frames at 30 fps last 1.5 s: 37 frames at 25 fps; 240x320 -> 256x341 -> centre 224x224.
    assert clip.shape == (1, 3, 37, 224, 224)
    assert clip.min() >= -1 and clip.max() <= 1
    levels = ((clip[0].mean(dim=(0, 2, 3)) + 1) * 127.5).tolist()
    expected = [int(np.floor(i * 30 / 25 + 1e-6)) for i in range(37)]
    assert [decoded_index_mod_levels(level) for level in levels] == [i % 18 for i in expected]


@pytest.mark.parametrize(("content", "message"), [
    (np.zeros((1, 10, 224, 224, 2), np.float32), r"expected the release's layout \(1, T, H, W, 3\)"),
    (np.full((1, 10, 224, 224, 3), 255, np.float32), r"values span \[255, 255\], expected \[-1, 1\]"),
    (np.zeros((1, 10, 224, 224, 3), np.uint8), "expected float values"),
])
def test_malformed_npy_inputs_are_explained(tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(UserInputError, match=message):
        load_input(tmp_path / "bad.npy", "rgb")


def test_not_a_gif_or_video(tmp_path):
    (tmp_path / "clip.gif").write_bytes(b"GIF89a broken")
    with pytest.raises(UserInputError, match="not a readable GIF"):
        load_input(tmp_path / "clip.gif", "rgb")
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(UserInputError, match="cannot open as video"):
        load_input(tmp_path / "clip.mp4", "rgb")
    with pytest.raises(UserInputError, match="cannot open as video"):
        load_input(tmp_path / "clip.mp4", "flow")


def test_flow_input_from_a_video_is_tvl1_of_its_frames_the_release_way(tmp_path):
    # A texture panning right by 2 px a frame in a 128x128 video: at the release's shorter side 256
    # that is 4 px a frame, a network input of 4 / 20 in x and 0 in y.
    texture = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    video = write_frames(tmp_path / "pan.mp4", np.stack([np.roll(texture, 2 * t, axis=1) for t in range(6)]))
    clip = load_input(video, "flow")
    assert clip.shape == (1, 2, 5, 224, 224)  # a flow frame per pair of consecutive frames
    assert float(clip[0, 0].median()) == pytest.approx(0.2, abs=0.02)
    assert float(clip[0, 1].median()) == pytest.approx(0.0, abs=0.02)


def test_too_short_input_is_explained(tmp_path, weights_cache):
    np.save(tmp_path / "short.npy", np.zeros((1, 4, 224, 224, 3), np.float32))
    with pytest.raises(UserInputError, match=r"short.npy: input of 4 frames .* at least 9 frames"):
        evaluate_sample(["rgb"], {"rgb": "rgb_scratch"}, {"rgb": tmp_path / "short.npy"})


@pytest.mark.parametrize(("overrides", "expected"), [
    (["stream=rgb", "weights.rgb=rgb_scratch", "sample.rgb=/no/such/clip.gif"],
     "error: rgb input /no/such/clip.gif: no such file"),
    (["stream=rgb", "weights.rgb=rgb_scratch", "sample.rgb=/tmp"], "error: rgb input /tmp is a folder: give a file"),
    (["stream=rgb", "weights.rgb=rgb_scrach"],
     "error: I3D weights 'rgb_scrach' are neither a registry name (rgb_imagenet,"),
    (["precision=16"], "error: precision=16: choose one of 32, tf32, bf16"),
    (["device=cuda:7"], "error: device=cuda:7: this machine has"),
    (["stream=rgb", "weights.rgb=README.md"], "error: the weights file README.md is not a PyTorch file"),
])
def test_cli_user_errors_are_one_line(overrides, expected, weights_cache, checkpoints_dir, tmp_path, monkeypatch,
                                      capsys):
    # eval.py run as __main__ in this process (run_command), Hydra and all.
    monkeypatch.setenv("I3D_WEIGHTS_MIRROR", str(checkpoints_dir))
    status, _, stderr = run_command("eval.py", [*overrides, f"run_dir={tmp_path / 'run'}"], capsys, monkeypatch)
    assert status == 2
    assert stderr.strip().splitlines() == [stderr.strip().splitlines()[-1]]  # one line
    assert stderr.strip().startswith(expected)
    assert not (tmp_path / "run").exists()  # a refused command leaves no run folder behind


def test_cli_wrong_stream_lists_the_choices(tmp_path, capsys, monkeypatch):
    status, _, stderr = run_command("eval.py", ["stream=rbg", f"hydra.run.dir={tmp_path}"], capsys, monkeypatch)
    assert status != 0
    assert "Could not find 'stream/rbg'" in stderr and "flow" in stderr and "joint" in stderr


def test_categories_are_the_release_label_maps(release_dir):
    assert kinetics_categories(400) == (release_dir / "label_map.txt").read_text().splitlines()
    label_map_600 = (release_dir / "label_map_600.txt").read_text().splitlines()
    assert kinetics_categories(600, WeightsSource(mirror=release_dir)) == label_map_600
