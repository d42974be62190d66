"""Training and evaluation through the real Hydra configs: every stream x dataset runs, training
learns, resume is exact, evaluation reports are right and the same over 2 processes."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from i3d_lightning.data.annotations import custom
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset, collate_clips
from i3d_lightning.errors import UserInputError
from i3d_lightning.evaluation import reports
from i3d_lightning.evaluation.run import evaluate
from i3d_lightning.lightning.classifier import I3DClassifier
from i3d_lightning.models import InceptionI3d
from i3d_lightning.training.resume import saved_resumes
from i3d_lightning.training.run import train
from i3d_lightning.weights.loading import save_state_dict
from tests.conftest import (
    IEEE,
    REPO_ROOT,
    compose_config,
    files_written_under,
    float32_settings_at_each_convolution,
    run_command,
    run_script,
    written_atomically,
)
from tests.simulated_cpus import python_seeing
from tests.tiny_datasets import FAST, make_tiny_datasets


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, list[str]]:
    return make_tiny_datasets(tmp_path_factory.mktemp("datasets"))


class RunProbe(pl.Callback):
    """What a run did, for the fast_dev_run matrix: the shape of each head's scores on the validation
    batch, and which parameters the training step changed. The latest instance is ``RunProbe.last``."""

    last: RunProbe | None = None

    def __init__(self) -> None:
        RunProbe.last = self
        self.score_shapes: dict[str, tuple[int, ...]] = {}
        self.parameter_names: set[str] = set()
        self.trainable: set[str] = set()
        self.changed: set[str] = set()
        self._before: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._before = {name: p.detach().clone() for name, p in pl_module.named_parameters()}
        self.parameter_names = set(self._before)
        self.trainable = {name for name, p in pl_module.named_parameters() if p.requires_grad}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        with torch.no_grad():
            self.score_shapes = {head: tuple(scores.shape) for head, scores in pl_module.video_scores(batch).items()}
        self.score_shapes["labels"] = tuple(batch["label"].shape)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.changed = {name for name, p in pl_module.named_parameters()
                        if not torch.equal(p.detach(), self._before[name])}


#: Classes of each tiny dataset (tests/tiny_datasets.py); Kinetics keeps the checkpoints' label sets.
TINY_CLASSES = {"synthetic": 4, "ucf101": 2, "hmdb51": 2, "kinetics400": 400, "kinetics600": 600, "custom": 2}


@pytest.mark.parametrize("stream", ["rgb", "flow", "joint"])
@pytest.mark.parametrize("dataset", ["synthetic", "ucf101", "hmdb51", "kinetics400", "kinetics600", "custom"])
def test_every_stream_and_dataset_runs_fast_dev_run(tiny, tmp_path, dataset, stream, checkpoints_dir):
    if stream != "rgb" and dataset == "synthetic":
        tiny_overrides = [*tiny[dataset], f"dataset.flow_root={tmp_path / 'none'}"]
    else:
        tiny_overrides = tiny[dataset]
    cfg = compose_config("train", [f"dataset={dataset}", f"stream={stream}", "debug=fast", f"run_dir={tmp_path}",
                                   f"weights.source.mirror={checkpoints_dir}", "model.trainable_blocks=1",
                                   "+callbacks.probe._target_=tests.test_training.RunProbe", *FAST, *tiny_overrides])
    if stream != "rgb" and dataset == "synthetic":
        # The synthetic videos come without flow: a clear error before training, not a crash inside it.
        with pytest.raises(Exception, match="flow folder not found|no flow"):
            train(cfg)
        return
    with float32_settings_at_each_convolution() as seen:
        results = train(cfg)
    # On the CPU float32 is IEEE fp32 (tf32=true applies to CUDA GPUs alone), set for the run and undone after.
    assert results["float32_mode"] == "ieee" and seen and all(settings == IEEE for settings in seen)
    probe = RunProbe.last
    assert results["global_step"] == 1  # one optimizer step
    heads = ["rgb", "flow", "joint"] if stream == "joint" else [stream]
    # Every head scores each validation video over the dataset's classes.
    (videos,) = probe.score_shapes.pop("labels")
    assert probe.score_shapes == {head: (videos, TINY_CLASSES[dataset]) for head in heads}
    metrics = results["metrics"]
    for head in heads:  # one validation batch, scored for every head
        # Top-5 is measured only with more than 5 classes (with fewer it is always 1).
        expected_keys = {f"val/{head}/{key}" for key in ("top1", "mean_class_accuracy")}
        top5 = {f"val/{head}/top5"}
        assert expected_keys <= metrics.keys()
        assert top5 <= metrics.keys() if TINY_CLASSES[dataset] > 5 else not top5 & metrics.keys()
        assert f"train/{head}/top1" in metrics and 0 <= metrics[f"val/{head}/top1"] <= 1
    assert np.isfinite(metrics["train/loss"])
    # trainable_blocks=1: the step moved Mixed_5c and the logits layer of each tower, and nothing else.
    towers = [head for head in heads if head != "joint"]
    expected = {name for name in probe.parameter_names  # batch norm's gamma is the release's constant 1
                if (".blocks.Mixed_5c." in name and not name.endswith(".bn.weight")) or ".logits." in name}
    assert {name.split(".")[1] for name in expected} == set(towers)
    assert probe.trainable == expected
    assert probe.changed == expected
    assert list(tmp_path.rglob("*.ckpt")) == []  # fast_dev_run writes no checkpoint


def _learning_config(tmp_path: Path, checkpoints_dir: Path, extra: list[str]):
    return compose_config("train", [
        f"run_dir={tmp_path / 'run'}", "experiment=quickstart", f"dataset.root={tmp_path / 'synthetic'}",
        f"weights.source.mirror={checkpoints_dir}", "weights.rgb=rgb_scratch", "dataset.train_per_class=12",
        "dataset.val_per_class=6", "data.num_workers=2",
        "trainer.enable_progress_bar=false", "logger=[]", *extra])


@pytest.mark.long(minutes=6)
def test_the_quick_start_learns_the_synthetic_motion_classes(tmp_path, checkpoints_dir):
    # experiment=quickstart (in fp32, as precision auto gives it without AMX, on every CPU) on a smaller
    # synthetic set: 48 training
    # videos, 4 epochs of 12 steps, the last two blocks and the logits trained (the whole network's
    # backward took about 3x as long on 2 cores; that every block trains by default is checked in
    # test_freezing_and_learning_rate_groups). Measured on the AMD EPYC (AVX2, fp32): 0.96 validation
    # and test top-1 after 4 epochs, 0.81 after 3, too close to the bar; the 4th epoch gives the margin.
    # Validation after the last epoch only, and no sanity check before training: the network's passes are
    # this test's time (a validation pass is an eighth of it), and the others would not change what it
    # asserts (the best validation top-1 is the last epoch's, 0.96).
    cfg = _learning_config(tmp_path, checkpoints_dir, ["data.batch_size=4", "trainer.max_epochs=4",
                                                       "trainer.precision=32", "model.trainable_blocks=2",
                                                       "+trainer.check_val_every_n_epoch=4",
                                                       "+trainer.num_sanity_val_steps=0"])
    results = train(cfg)
    assert results["best_val_top1"] >= 0.75  # chance is 0.25
    assert results["test"]["test/rgb/top1"] >= 0.75
    assert np.isfinite(results["metrics"]["train/loss"]) and results["skipped_steps"] == 0
    checkpoints = sorted(path.name for path in (tmp_path / "run" / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(name.startswith("best-") for name in checkpoints)
    model = I3DClassifier.load_from_checkpoint(results["best_checkpoint"], map_location="cpu")
    assert model.hparams.class_names == ["left", "right", "up", "down"] and model.hparams.num_classes == 4
    # eval.py with the checkpoint alone: the stream and the clips it was trained on (16 frames, 193 crops of a
    # 224 resize, not eval's 64 / 224 / 256), said in the report.
    videos = tmp_path / "synthetic" / "val"
    eval_overrides = ["dataset=custom", f"dataset.val={videos}", f"ckpt_path={results['best_checkpoint']}",
                      "data.num_workers=0", "trainer.enable_progress_bar=false"]
    with pytest.raises(UserInputError, match=r"add dataset.classes=\[left,right,up,down\]"):  # folders sort
        evaluate(compose_config("eval", [*eval_overrides, f"run_dir={tmp_path / 'refused'}"]))
    eval_overrides.append("dataset.classes=[left,right,up,down]")
    report = evaluate(compose_config("eval", [*eval_overrides, f"run_dir={tmp_path / 'eval'}"])).text
    assert report.splitlines()[0] == ("from the checkpoint's training: stream=rgb, data.clip.clip_len=16, "
                                      "data.clip.short_side=224, data.clip.crop_size=193")
    protocol = json.loads((tmp_path / "eval" / "metrics.json").read_text())["protocol"]
    assert (protocol["clip_len"], protocol["crop_size"], protocol["short_side"]) == (16, 193, 224)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["rgb"]["top1"] >= 0.75


def _resume_overrides(tmp_path: Path, run: str, epochs: int) -> list[str]:
    return [*FAST, f"run_dir={tmp_path / run}", "dataset=custom", f"dataset.train={tmp_path / 'videos'}",
            f"dataset.val={tmp_path / 'videos'}", f"trainer.max_epochs={epochs}", "trainer.precision=32",
            "model.trainable_blocks=1", "logger=[]", "test_after_fit=false"]


class CtrlC(pl.Callback):
    """Presses Ctrl-C (raises KeyboardInterrupt, as the SIGINT handler does) at the first step of the
    epoch that ``I3D_TEST_CTRL_C_EPOCH`` names; nothing without it (so the resumed run, whose config
    holds this callback too, goes on)."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        if os.environ.get("I3D_TEST_CTRL_C_EPOCH") == str(trainer.current_epoch) and batch_idx == 0:
            raise KeyboardInterrupt


@pytest.mark.long
def test_resume_continues_the_run_and_ends_as_the_uninterrupted_run(tmp_path, capsys, monkeypatch):
    # train.py itself: the resumed command names only the checkpoint (and a change it may make), and
    # the run goes on in its own folder with its own config, best score and log. The commands run in
    # this process; the CtrlC callback raises what the SIGINT handler raises.
    from tests.tiny_datasets import _video

    for name in ("walk", "run"):
        for index in range(3):
            _video(tmp_path / "videos" / name / f"{name}{index}.mp4", index + 10 * len(name))
    common = [override for override in _resume_overrides(tmp_path, "x", 2) if not override.startswith("run_dir=")]
    common += ["+callbacks.ctrl_c._target_=tests.test_training.CtrlC", "data.check_videos=0"]
    monkeypatch.chdir(tmp_path)
    status, _, stderr = run_command("train.py", [*common, f"run_dir={tmp_path / 'straight'}"], capsys, monkeypatch)
    assert status == 0, stderr[-3000:]
    monkeypatch.setenv("I3D_TEST_CTRL_C_EPOCH", "0")
    status, _, stderr = run_command("train.py", [*common, f"run_dir={tmp_path / 'early'}"], capsys, monkeypatch)
    assert status == 130 and stderr.strip().splitlines()[-1] == (
        "interrupted: no checkpoint was written yet (one is saved at the end of each epoch); the run folder is "
        f"{tmp_path / 'early'}")
    # Ctrl-C in the second epoch: the checkpoint of the first is where to go on from.
    monkeypatch.setenv("I3D_TEST_CTRL_C_EPOCH", "1")
    status, _, stderr = run_command("train.py", [*common, f"run_dir={tmp_path / 'first'}"], capsys, monkeypatch)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert status == 130 and stderr.strip().splitlines()[-1] == (
        f"interrupted: the last checkpoint is {last}; resume with: python train.py ckpt_path={last}")
    monkeypatch.delenv("I3D_TEST_CTRL_C_EPOCH")
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3
    # Refused: a change that contradicts the checkpoint (one line, no folder left).
    status, _, stderr = run_command("train.py", [f"ckpt_path={last}", "stream=flow"], capsys, monkeypatch)
    assert status == 2 and stderr.strip().splitlines() == [stderr.strip()]
    assert "made with stream=rgb; stream=flow contradicts it" in stderr
    assert not (tmp_path / "outputs").exists()
    status, _, stderr = run_command("train.py", [f"ckpt_path={last}", "trainer.log_every_n_steps=5"], capsys,
                                    monkeypatch)
    assert status == 0, stderr[-3000:]
    assert not (tmp_path / "outputs").exists()  # no new run folder: the run went on in its own
    log = (tmp_path / "first" / "train.log").read_text()
    assert "resuming the run in" in log and "trainer.log_every_n_steps=5" in log
    assert '\n "best_val_top1": 0.' in log  # the results, one per line
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(last, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    for key in ("optimizer_states", "lr_schedulers"):
        assert str(a[key]) == str(b[key])
    best = {run: sorted(path.name for path in (tmp_path / run / "checkpoints").glob("best-*.ckpt"))
            for run in ("straight", "first")}
    assert best["straight"] == best["first"] and len(best["first"]) == 1  # the same best epoch ...
    scores = [_best_score(tmp_path / run / "checkpoints" / "last.ckpt") for run in ("straight", "first")]
    assert scores[0] == scores[1]  # ... and its score, remembered across the interruption
    # Train on to 4 epochs, Ctrl-C in the third: the printed command, run as it is, ends at epoch 4.
    monkeypatch.setenv("I3D_TEST_CTRL_C_EPOCH", "2")
    status, _, stderr = run_command("train.py", [f"ckpt_path={last}", "trainer.max_epochs=4"], capsys, monkeypatch)
    printed = stderr.strip().splitlines()[-1]
    assert status == 130 and printed == (
        f"interrupted: the last checkpoint is {last}; resume with: python train.py ckpt_path={last}")
    monkeypatch.delenv("I3D_TEST_CTRL_C_EPOCH")
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6
    status, _, stderr = run_command("train.py", printed.split("python train.py ")[1].split(), capsys, monkeypatch)
    assert status == 0, stderr[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 12  # 4 epochs of 3 steps
    resumes = [entry["overrides"] for entry in saved_resumes(tmp_path / "first")]
    assert resumes == [["trainer.log_every_n_steps=5"], ["trainer.max_epochs=4"], []]
    assert "kept from earlier resumes: trainer.log_every_n_steps=5 trainer.max_epochs=4" in (
        tmp_path / "first" / "train.log").read_text()


def _best_score(checkpoint: Path) -> float:
    states = torch.load(checkpoint, map_location="cpu", weights_only=True)["callbacks"]
    return next(float(state["best_model_score"]) for key, state in states.items()
                if key.startswith("ModelCheckpoint{'monitor': 'val/"))


def _random_weights(path: Path, num_classes: int, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = InceptionI3d(num_classes, 3)
    return save_state_dict(model.state_dict(), path, {"stream": "rgb"})


@pytest.fixture(scope="module")
def eval_dataset(tmp_path_factory) -> Path:
    from tests.tiny_datasets import _video

    root = tmp_path_factory.mktemp("eval_videos")
    for name, count in (("a", 3), ("b", 2)):  # 5 videos: not divisible by 2 processes
        for index in range(count):
            _video(root / name / f"{name}{index}.mp4", 100 + index + 7 * len(name) * ord(name))
    (root / "b" / "broken.mp4").write_bytes(b"\x00" * 2048)
    return root


def _eval_overrides(root: Path, run_dir: Path, weights: Path) -> list[str]:
    return [*FAST, "dataset=custom", f"dataset.val={root}", "stream=rgb", f"weights.rgb={weights}",
            f"run_dir={run_dir}", "data.eval_sampling.num_clips=2", "data.eval_sampling.num_crops=1",
            "data.eval_batch_size=2", "trainer.precision=32", "model.aggregate=mean_softmax"]


def test_eval_writes_reports_with_the_right_numbers(tmp_path, eval_dataset, user_float32_flags, capsys, monkeypatch):
    weights = _random_weights(tmp_path / "w.safetensors", 2)
    run = tmp_path / "run"
    # The summary is printed before the first report file is written (a file that cannot be written loses nothing).
    printed_before_files = []
    write_metrics = reports.write_metrics
    monkeypatch.setattr(reports, "write_metrics", lambda *args: (
        printed_before_files.append(capsys.readouterr().out), write_metrics(*args))[1])
    fast_paths = []  # eval.yaml's fast=true: the towers take the fast path once, when the test loop starts
    use_fast_path = I3DClassifier.use_fast_inference_path
    monkeypatch.setattr(I3DClassifier, "use_fast_inference_path",
                        lambda model: (fast_paths.append(model.trainer.testing), use_fast_path(model))[1])
    with float32_settings_at_each_convolution() as seen, files_written_under(run) as written:
        # precision=32: IEEE fp32 whatever the process had set
        evaluation = evaluate(compose_config("eval", _eval_overrides(eval_dataset, run, weights)))
    assert seen and all(settings == IEEE for settings in seen)
    assert fast_paths == [True]
    # Every report is written under a temporary name and renamed: none is ever seen half-written.
    assert len(written) == 5 and written_atomically(written), written
    assert {path.name for path in run.iterdir()} == {"metrics.json", "predictions.csv", "per_class_accuracy.csv",
                                                     "confusion_matrix.png", "skipped_videos.csv"}
    report = evaluation.text
    assert (evaluation.skipped, evaluation.skipped_list) == (1, run / "skipped_videos.csv")
    assert len(printed_before_files) == 1 and report.split("\nreports written")[0] in printed_before_files[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["videos_evaluated"] == 5 and metrics["videos_skipped"] == 1
    assert "skipped (unreadable): 1 - metrics are over the videos that could be read" in report
    # 2 classes: top-5 would always be 1, so it is neither measured nor shown.
    assert set(metrics["rgb"]) == {"top1", "mean_class_accuracy"}
    assert report.splitlines()[-3].split()[2] == "-"
    # Predictions computed directly: the model on the same views, softmax averaged over views.
    model = InceptionI3d(2, 3).eval()
    model.load_state_dict(load_file(str(weights)))
    videos = custom(eval_dataset)
    dataset = VideoClipDataset(videos.records, ClipSampling(train=False, clip_len=9, short_side=193, crop_size=193,
                                                            num_clips=2))
    batch = collate_clips([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        views = model(batch["rgb"].flatten(0, 1)).view(5, 2, 2)
    scores = views.softmax(-1).mean(1)
    expected_top1 = float((scores.argmax(1) == batch["label"]).float().mean())
    assert metrics["rgb"]["top1"] == pytest.approx(expected_top1)
    with (run / "predictions.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["video_id"] for row in rows] == batch["video_id"]
    for row, video_scores, label in zip(rows, scores, batch["label"], strict=True):
        assert row["label"] == videos.classes[label]
        assert row["top1_class"] == videos.classes[int(video_scores.argmax())]
        assert float(row["top1_probability"]) == pytest.approx(float(video_scores.max()), rel=1e-4)
    with (run / "per_class_accuracy.csv").open() as stream:
        per_class = list(csv.DictReader(stream))
    assert [int(row["videos"]) for row in per_class] == [3, 2]
    predicted = scores.argmax(1)
    for index, row in enumerate(per_class):
        assert int(row["correct"]) == int(((predicted == index) & (batch["label"] == index)).sum())
    assert (run / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    with (run / "skipped_videos.csv").open() as stream:
        assert [row["video_id"] for row in csv.DictReader(stream)] == ["b/broken"]


def test_whole_video_evaluation_of_a_long_video_adds_up_tiles_to_the_one_pass_scores(tmp_path, rgb_scratch_state,
                                                                                     monkeypatch):
    # A 131-frame video in 2 tiles of 8 average-pool steps, and a 20-frame one whole: each video's
    # scores are the one pass's (the release's backbone, so the frames a tile reads matter).
    from i3d_lightning.data import segments
    from tests.videos import write_frames

    rng = np.random.default_rng(5)
    for name, frames in (("a/long", 131), ("b/short", 20)):
        write_frames(tmp_path / "videos" / f"{name}.mp4",
                     rng.integers(0, 256, (frames, 25, 25, 3), dtype=np.uint8).repeat(8, 1).repeat(8, 2))
    model = InceptionI3d(2).eval()
    model.load_state_dict({k: v for k, v in rgb_scratch_state.items() if not k.startswith("logits.")}, strict=False)
    weights = save_state_dict(model.state_dict(), tmp_path / "w.safetensors", {"stream": "rgb"})
    tiles = []
    original = segments.VideoSegments.__getitem__
    monkeypatch.setattr(segments, "TILE_STEPS", 8)
    monkeypatch.setattr(segments.VideoSegments, "__getitem__",
                        lambda self, index: tiles.append(index) or original(self, index))
    overrides = [*FAST, "dataset=custom", f"dataset.val={tmp_path / 'videos'}", "stream=rgb", f"weights.rgb={weights}",
                 f"run_dir={tmp_path / 'run'}", "data.eval_sampling.whole_video=true", "model.aggregate=mean_softmax"]
    evaluate(compose_config("eval", overrides))
    assert tiles == [0, 1, 2]  # long: 2 tiles; short: whole
    dataset = VideoClipDataset(custom(tmp_path / "videos").records,
                               ClipSampling(train=False, whole_video=True, short_side=193, crop_size=193))
    with (tmp_path / "run" / "predictions.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["video_id"] for row in rows] == ["a/long", "b/short"]
    for index, row in enumerate(rows):
        with torch.no_grad():
            probabilities = model(dataset[index]["rgb"]).softmax(-1)[0]
        assert float(row["top1_probability"]) == pytest.approx(float(probabilities.max()), abs=1e-6)


@pytest.mark.long
def test_evaluation_over_two_processes_equals_one(tmp_path, eval_dataset):
    # One process: evaluate() here. Two: eval.py, whose DDP launcher starts the second process.
    weights = _random_weights(tmp_path / "w.safetensors", 2, seed=1)
    evaluate(compose_config("eval", _eval_overrides(eval_dataset, tmp_path / "devices1", weights)))
    overrides = [*_eval_overrides(eval_dataset, tmp_path / "devices2", weights), "trainer=ddp",
                 "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32", "trainer.benchmark=false"]
    result = run_script("eval.py", *overrides, env={"MASTER_PORT": str(29500 + os.getpid() % 1000)})
    assert result.returncode == 3, result.stderr[-3000:]  # done; the set's broken video skipped (and listed once)
    assert result.stderr.count("done, but 1 input was skipped") == 1
    # Really two processes, each evaluating its share: Lightning's lines are in the run's logs (eval.log and
    # the second process's), not on the terminal, which eval keeps to warnings.
    logs = "".join(path.read_text() for path in (tmp_path / "devices2").glob("*.log"))
    assert "MEMBER: 1/2" in logs and "MEMBER: 2/2" in logs
    outputs = {devices: (json.loads((tmp_path / f"devices{devices}" / "metrics.json").read_text()),
                         (tmp_path / f"devices{devices}" / "predictions.csv").read_text()) for devices in (1, 2)}
    assert outputs[1][0]["videos_evaluated"] == 5
    assert outputs[1][0] == outputs[2][0]
    assert outputs[1][1] == outputs[2][1]


SMALL_SYNTHETIC = ["dataset=synthetic", "dataset.train_per_class=1", "dataset.val_per_class=1", "dataset.num_frames=20"]


@pytest.mark.parametrize(("overrides", "expected"), [
    (["dataset=ucf101"], "error: dataset=ucf101 needs dataset.root=PATH"),
    (["weights.rgb=rgb_imagenette", *SMALL_SYNTHETIC], "error: I3D weights 'rgb_imagenette' are neither a registry"),
    ([], "error: no dataset chosen: add dataset=ucf101|hmdb51|kinetics400|kinetics600|custom|synthetic"),
    (["data.clip.crop_size=300", *SMALL_SYNTHETIC], "error: crop_size 300 is larger than short_side 256"),
])
def test_train_cli_config_mistakes_are_one_line(tmp_path, overrides, expected, capsys, monkeypatch):
    if "dataset.train_per_class=1" in overrides:
        overrides = [*overrides, f"dataset.root={tmp_path / 'synthetic'}"]
    status, _, stderr = run_command("train.py", [*overrides, f"run_dir={tmp_path / 'run'}"], capsys, monkeypatch)
    assert status == 2, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith(expected)
    assert "Traceback" not in stderr
    assert not (tmp_path / "run").exists()  # a refused command leaves no run folder behind


def test_train_cli_wrong_group_option_lists_choices(tmp_path, capsys, monkeypatch):
    status, _, stderr = run_command("train.py", ["schedule=adam", f"hydra.run.dir={tmp_path}"], capsys, monkeypatch)
    assert status == 1
    assert "Could not find 'schedule/adam'" in stderr
    for choice in ("adamw", "cosine", "finetune", "release_sgd"):
        assert choice in stderr


def test_a_model_on_the_fast_inference_path_refuses_to_train():
    with pytest.raises(ValueError, match="fast_inference=True is for evaluation"):
        I3DClassifier(num_classes=2, fast_inference=True).setup("fit")


def test_freezing_and_learning_rate_groups():
    model = I3DClassifier(num_classes=5, trainable_blocks=2, head_lr_scale=10.0,
                          optimizer=lambda groups: torch.optim.SGD(groups, lr=0.01))
    tower = model.towers["rgb"]
    trainable = {name.split(".")[1] for name, p in tower.named_parameters()
                 if p.requires_grad and name.startswith("blocks.")}
    assert trainable == {"Mixed_5b", "Mixed_5c"}
    assert all(p.requires_grad for p in tower.logits.parameters())
    model.trainer = type("T", (), {"estimated_stepping_batches": 10})()
    optimizer = model.configure_optimizers()
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lrs == {"backbone": 0.01, "head": pytest.approx(0.1)}
    model.train()
    model._fix_batch_norm_statistics()
    assert not tower.blocks["Mixed_4f"].branch0.bn.training and tower.blocks["Mixed_5c"].branch0.bn.training
    # trainable_blocks=None (the default): every weight trains but batch norm's gamma, the release's constant 1.
    frozen = {name for name, p in I3DClassifier(num_classes=5).named_parameters() if not p.requires_grad}
    assert frozen and all(name.endswith(".bn.weight") for name in frozen)


def test_joint_model_trains_each_tower_on_its_own_loss():
    model = I3DClassifier(modalities=["rgb", "flow"], num_classes=3, dropout=0.0)
    batch = {"rgb": torch.rand(2, 3, 9, 193, 193) * 2 - 1, "flow": torch.rand(2, 2, 9, 193, 193) * 2 - 1,
             "label": torch.tensor([0, 2]), "skipped": [], "size": 2}
    model.log = model.log_dict = lambda *args, **kwargs: None
    logits = model(batch)
    torch.testing.assert_close(logits["joint"], logits["rgb"] + logits["flow"])
    loss = model.training_step(batch, 0)
    expected = (torch.nn.functional.cross_entropy(logits["rgb"], batch["label"])
                + torch.nn.functional.cross_entropy(logits["flow"], batch["label"]))
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)
    empty = model.training_step({"skipped": [("x", "/x.mp4", "corrupt")], "size": 0}, 1)
    assert empty.item() == 0 and empty.requires_grad and len(model.skipped) == 1


def test_eval_refuses_weights_of_other_classes_without_a_fine_tuned_checkpoint(tmp_path, eval_dataset):
    weights = _random_weights(tmp_path / "kinetics_like.safetensors", 400)  # 400 classes; the data has 2
    cfg = compose_config("eval", _eval_overrides(eval_dataset, tmp_path / "run", weights))
    with pytest.raises(UserInputError, match=r"were not trained on the 2 classes of dataset=custom: pass the "
                                             r"checkpoint of a model fine-tuned on them \(ckpt_path="):
        evaluate(cfg)


def _checkpoint_by_hand(path: Path, model: I3DClassifier) -> Path:
    """A Lightning checkpoint written without Lightning (whose own writer refuses non-finite weights)."""
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return path


def test_eval_refuses_a_checkpoint_with_non_finite_weights(tmp_path, eval_dataset):
    model = I3DClassifier(num_classes=2)
    with torch.no_grad():
        model.towers["rgb"].logits.weight[1, 3] = float("nan")
    checkpoint = _checkpoint_by_hand(tmp_path / "diverged.ckpt", model)
    overrides = [*_eval_overrides(eval_dataset, tmp_path / "run", "null"), f"ckpt_path={checkpoint}"]
    with pytest.raises(UserInputError, match=r"diverged.ckpt has non-finite weights \(towers.rgb.logits.weight\)"):
        evaluate(compose_config("eval", overrides))


def test_eval_refuses_a_checkpoint_trained_on_other_classes(tmp_path, eval_dataset):
    # As many classes as the data (2), but not the same ones: scores would go to unrelated labels.
    checkpoint = _checkpoint_by_hand(tmp_path / "other.ckpt", I3DClassifier(num_classes=2, class_names=["x", "y"]))
    overrides = [*_eval_overrides(eval_dataset, tmp_path / "run", "null"), f"ckpt_path={checkpoint}"]
    with pytest.raises(UserInputError, match=r"other.ckpt was trained on other classes \(x, y\) than "
                                             r"dataset=custom has \(a, b\)"):
        evaluate(compose_config("eval", overrides))


def test_predictions_and_confusion_matrix_agree_on_ties_and_nan():
    model = I3DClassifier(num_classes=3)
    model.log_dict = lambda *args, **kwargs: None
    scores = torch.tensor([[1.0, 1.0, 0.0], [float("nan"), 0.0, 5.0], [0.0, 2.0, 2.0]])
    model.video_scores = lambda batch: {"rgb": scores}
    model.on_test_epoch_start()
    model.test_step({"skipped": [], "size": 3, "label": torch.tensor([0, 1, 2]), "index": torch.arange(3),
                     "video_id": ["a", "b", "c"]}, 0)
    confusion = model.confusion.compute()
    predicted_by_confusion = [int(confusion[label].argmax()) for label in range(3)]  # one video per class
    predicted_by_rows = [row["top_classes"][0] for row in model.predictions]
    assert predicted_by_rows == predicted_by_confusion == [0, 0, 1]


def test_a_run_folder_holds_everything_the_run_wrote(tmp_path):
    # run_dir=... moves Hydra's .hydra/ and train.log too; skipped_videos.csv exists, with its header,
    # when nothing was skipped. The process sees an AMD EPYC with avx512_bf16, whichever CPU runs the
    # suite: there the project's own precision line names oneDNN, and only native libraries' lines
    # (not the project's loggers') count as chatter.
    run_dir = tmp_path / "my_run"
    args = [*FAST, f"run_dir={run_dir}", "debug=fast", f"dataset.root={tmp_path / 'synth'}", *SMALL_SYNTHETIC,
            "logger=[tensorboard]", "trainer.precision=auto"]
    result = run_script(*python_seeing("avx512_bf16", str(REPO_ROOT / "train.py"), args), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()
    assert (run_dir / "skipped_videos.csv").read_text().strip() == "video_id,path,reason"
    assert not (tmp_path / "outputs").exists()
    lines = (result.stdout + result.stderr).splitlines()
    own = [line for line in lines if re.match(r"\[[^]]*\]\[i3d_lightning[.\]]", line)]
    assert any("precision 32-true: CPU AMD EPYC 9B14 (family 25, model 17) has AVX-512 bf16 but no AMX" in line
               and "oneDNN" in line for line in own)
    others = "\n".join(line for line in lines if line not in own)
    for chatter in ("LeafSpec", "litlogger", "oneDNN", "absl", "tensorflow", "worker processes", "FLOPs",
                    "already configured with model summary"):
        assert chatter not in others, chatter
    assert "parameters: 12.3 M (12.3 M trainable" in "\n".join(lines)  # the summary, without a FLOPs count of 0


@pytest.mark.long
def test_sigterm_stops_training_as_ctrl_c_does(tmp_path):
    # SIGTERM to the whole process group (as a scheduler, `timeout` or `docker stop` send it), DataLoader
    # workers included, once the first epoch's checkpoint is written: one line naming the checkpoint and
    # the command to resume, exit status 143, no traceback from the workers. With its output going to a
    # file, the run prints (and train.log keeps) one line per finished epoch.
    run_dir = tmp_path / "run"
    args = [*FAST, f"run_dir={run_dir}", f"dataset.root={tmp_path / 'synth'}", *SMALL_SYNTHETIC,
            "data.num_workers=2", "trainer.max_epochs=1000", "logger=[]", "test_after_fit=false"]
    last = run_dir / "checkpoints" / "last.ckpt"
    with (tmp_path / "out.txt").open("w") as out, (tmp_path / "err.txt").open("w") as err:
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=tmp_path, stdout=out,
                                   stderr=err, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert last.is_file(), (tmp_path / "err.txt").read_text()[-3000:]
            time.sleep(1)  # into the next epoch, workers running
            os.killpg(process.pid, signal.SIGTERM)
            status = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    stderr, stdout = (tmp_path / "err.txt").read_text(), (tmp_path / "out.txt").read_text()
    assert status == 143, stderr[-3000:]
    for noise in ("Traceback", "Error", "race condition", "Received SIGTERM", "Detected KeyboardInterrupt"):
        assert noise not in stderr + stdout, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"terminated (SIGTERM): the last checkpoint is {last}; resume with: python train.py ckpt_path={last}")
    epoch_line = r"epoch 1/1000: train loss \d+\.\d{4}, val top-1 [01]\.\d{4}, \d+\.\d s"
    assert re.search(epoch_line, stdout), stdout[-3000:]
    assert re.search(epoch_line, (run_dir / "train.log").read_text())
    # The printed command resumes it (for one more epoch here) without Lightning's notes on the folder it
    # goes on in.
    epochs = torch.load(last, map_location="cpu", weights_only=True)["epoch"] + 2
    resumed = run_script("train.py", f"ckpt_path={last}", f"trainer.max_epochs={epochs}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for noise in ("exists and is not empty", "already configured with model summary", "Traceback"):
        assert noise not in resumed.stdout + resumed.stderr, noise
    assert f"epoch {epochs}/{epochs}: train loss" in resumed.stdout


def test_tensorboard_logging_does_not_import_tensorflow(tmp_path):
    script = ("import sys; from pytorch_lightning.loggers import TensorBoardLogger;"
              "from i3d_lightning.training.run import _tensorboard_without_tensorflow;"
              "_tensorboard_without_tensorflow();"
              f"logger = TensorBoardLogger({str(tmp_path)!r}); logger.log_metrics({{'a': 1.0}}, 0);"
              "logger.finalize('ok');"
              "print('tensorflow' in sys.modules)")
    result = run_script("-c", script, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
    assert list(tmp_path.rglob("events.out.tfevents.*"))


def test_data_workers_default_to_the_cpus_available(tmp_path):
    from i3d_lightning.data.datamodule import VideoDataModule
    from i3d_lightning.data.dataset_configs import Custom
    from i3d_lightning.hardware import available_cpus

    datamodule = VideoDataModule(Custom(train=str(tmp_path)))
    assert datamodule.num_workers == min(4, available_cpus())
    assert compose_config("train", [f"run_dir={tmp_path}"]).data.num_workers is None


def test_train_cli_that_skipped_a_video_exits_3_after_its_results(tmp_path, eval_dataset, capsys, monkeypatch):
    # README: "3 done, but some inputs were skipped", for train.py as for the tools. One batch holds all six
    # videos of the set, its broken one too; the results are logged before the list is written.
    run_dir = tmp_path / "run"
    status, _, stderr = run_command("train.py", [
        *FAST, "dataset=custom", f"dataset.train={eval_dataset}", f"dataset.val={eval_dataset}", "debug=fast",
        "data.batch_size=6", "data.eval_batch_size=6", "stream=rgb", "data.check_videos=0", f"run_dir={run_dir}"],
        capsys, monkeypatch)
    listed = run_dir / "skipped_videos.csv"
    assert status == 3, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == f"done, but 1 input was skipped (listed in {listed}): exit status 3"
    with listed.open() as stream:
        assert [row["video_id"] for row in csv.DictReader(stream)] == ["b/broken"]
    log = (run_dir / "train.log").read_text()
    assert log.index("results:") < log.index("1 unreadable videos were skipped")


def test_eval_with_a_checkpoint_takes_its_clips_unless_told_otherwise(tmp_path, eval_dataset, capsys, monkeypatch):
    # eval.py itself (in this process): the checkpoint says 10-frame clips; a clip length given on the
    # command line wins, with a warning naming both.
    model = I3DClassifier(num_classes=2, class_names=["a", "b"])
    checkpoint = tmp_path / "trained.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__,
                "VideoDataModule": {"clip": {"clip_len": 10, "stride": 1, "fps": 25, "short_side": 193,
                                             "crop_size": 193}}}, checkpoint)
    common = ["dataset=custom", f"dataset.val={eval_dataset}", f"ckpt_path={checkpoint}", "data.num_workers=0",
              "trainer.enable_progress_bar=false", "data.eval_batch_size=2"]
    status, _, stderr = run_command("eval.py", [*common, f"run_dir={tmp_path / 'taken'}"], capsys, monkeypatch)
    assert status == 3, stderr[-3000:]  # done; the set's broken video was skipped
    protocol = json.loads((tmp_path / "taken" / "metrics.json").read_text())["protocol"]
    assert (protocol["clip_len"], protocol["short_side"], protocol["crop_size"]) == (10, 193, 193)
    status, _, stderr = run_command("eval.py", [*common, "data.clip.clip_len=12", f"run_dir={tmp_path / 'told'}"],
                                 capsys, monkeypatch)
    assert status == 3 and "data.clip.clip_len=12 (trained with 10)" in stderr
    assert json.loads((tmp_path / "told" / "metrics.json").read_text())["protocol"]["clip_len"] == 12


def test_eval_names_its_run_after_the_checkpoints_stream(tmp_path, eval_dataset, capsys, monkeypatch):
    # eval.yaml's stream is joint; an rgb checkpoint is evaluated as rgb, and the run folder, the log
    # and the report say so: the folder is <dataset>-rgb, the log gives the precision's real source, and
    # the report (Lightning's own table left out) opens with what was taken from the checkpoint.
    model = I3DClassifier(num_classes=2, class_names=["a", "b"])
    checkpoint = tmp_path / "trained.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, checkpoint)
    monkeypatch.chdir(tmp_path)
    status, stdout, stderr = run_command("eval.py", [
        "dataset=custom", f"dataset.val={eval_dataset}", f"ckpt_path={checkpoint}", "data.num_workers=0",
        "trainer.enable_progress_bar=false", "data.eval_batch_size=2", "data.eval_sampling.num_clips=1",
        "data.clip.clip_len=9", "data.clip.short_side=193", "data.clip.crop_size=193"], capsys, monkeypatch)
    (run,) = (tmp_path / "outputs" / "eval" / "custom-rgb").iterdir()
    # Done, but the broken video of the set was skipped: exit status 3, as the tools give, and one line.
    assert status == 3, stderr[-3000:]
    listed = run.relative_to(tmp_path) / "skipped_videos.csv"  # the run folder as Hydra names it, relative
    assert stderr.strip().splitlines()[-1] == f"done, but 1 input was skipped (listed in {listed}): exit status 3"
    assert [path.name for path in (tmp_path / "outputs" / "eval").iterdir()] == ["custom-rgb"]
    assert (run / "metrics.json").is_file() and json.loads((run / "metrics.json").read_text())["stream"] == "rgb"
    log = (run / "eval.log").read_text()
    assert "precision 32-true: from precision=32" in log and "set explicitly" not in log
    assert stdout.startswith("from the checkpoint's training: stream=rgb"), stdout[:500]


def test_evaluation_composes_the_checkpoints_settings_without_changing_its_config(tmp_path):
    # eval.py with a checkpoint: a new config with the checkpoint's stream and clips; the one it was given is
    # left as it was (the builders get the composed one, nothing is rewritten in flight).
    from i3d_lightning.evaluation.run import _with_trained_settings

    checkpoint = tmp_path / "trained.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"modalities": ["rgb"]}, "pytorch-lightning_version": "2.6",
                "VideoDataModule": {"clip": {"clip_len": 16, "stride": 1, "fps": 25, "short_side": 224,
                                             "crop_size": 193}}}, checkpoint)
    given = compose_config("eval", ["dataset=custom", f"ckpt_path={checkpoint}"])
    before = OmegaConf.to_container(given)
    evaluated, said = _with_trained_settings(given)
    assert OmegaConf.to_container(given) == before
    assert (evaluated.stream.name, list(evaluated.data.clip.values())) == ("rgb", [16, 1, 25, 224, 193])
    assert "/custom-rgb/" in evaluated.run_dir and evaluated.data.report_dir == evaluated.run_dir
    assert said == ("from the checkpoint's training: stream=rgb, data.clip.clip_len=16, data.clip.short_side=224, "
                    "data.clip.crop_size=193")
