"""TorchScript and ONNX exports: the same logits as PyTorch, for batches and clip lengths other than
the ones exported with, from registry weights and from a train.py checkpoint."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from i3d_lightning.data.release_clip import load_input
from i3d_lightning.export.formats import FORMATS, MIN_EXPORT_FRAMES, StreamSum, export, max_abs_difference, run_exported
from i3d_lightning.lightning.classifier import I3DClassifier
from i3d_lightning.models import InceptionI3d
from tests.conftest import IEEE, REPO_ROOT, float32_settings_at_each_convolution

SIZE = 193  # the smallest input I3D takes: keeps the test fast


def _export_tool():
    return importlib.import_module("i3d_lightning.commands.export")


def _run_tool(out, *extra: str) -> int:
    """``i3d-export OUT *extra`` in this process (its main(): argument parsing, checks, exit status)."""
    return _export_tool().main([str(out), *extra])


@pytest.mark.long
@pytest.mark.parametrize("fmt", FORMATS)
def test_joint_export_matches_pytorch_for_other_batches_and_lengths(tmp_path, fmt, user_float32_flags):
    model = StreamSum({"rgb": InceptionI3d(5, 3), "flow": InceptionI3d(5, 2)}).eval()
    path = export(model, fmt, tmp_path / f"joint.{fmt}", frames=24, size=SIZE)  # exported with 2 x 24 frames
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind
    generator = torch.Generator().manual_seed(3)
    inputs = [(torch.rand(batch, 3, rgb_frames, SIZE, SIZE, generator=generator) * 2 - 1,
               torch.rand(batch, 2, flow_frames, SIZE, SIZE, generator=generator) * 2 - 1)
              for batch, rgb_frames, flow_frames in ((1, MIN_EXPORT_FRAMES, 19), (3, 20, 18))]
    for clips in inputs:
        logits = run_exported(path, fmt, clips)
        with torch.no_grad():
            expected = model.towers["rgb"](clips[0]) + model.towers["flow"](clips[1])
        assert logits.shape == (len(clips[0]), 5)
        np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4)
    with float32_settings_at_each_convolution() as seen:  # the parity check's PyTorch side: IEEE fp32
        assert max_abs_difference(path, fmt, model, inputs[0]) < 1e-4
    assert seen and all(settings == IEEE for settings in seen)
    with pytest.raises(Exception, match="frames|time|dimension|Dimension|size"):
        run_exported(path, fmt, (torch.zeros(1, 3, 8, SIZE, SIZE), torch.zeros(1, 2, 8, SIZE, SIZE)))


@pytest.mark.long
def test_tool_exports_rgb_scratch_to_onnx_within_tolerance(tmp_path, weights_cache, release_dir):
    out = tmp_path / "export"
    assert _run_tool(out, "--weights-rgb", "rgb_scratch", "--mirror", str(release_dir),
                     "--formats", "onnx") == 0
    description = json.loads((out / "i3d_rgb.json").read_text())
    differences = description["checks"]["max_abs_logit_difference"]["onnx"]
    assert set(differences) == {"sample 1x79", f"random 3x{MIN_EXPORT_FRAMES}"}
    assert max(differences.values()) <= 1e-4
    assert description["inputs"][0]["shape"] == ["batch", 3, "frames", 224, 224]
    sample = load_input(release_dir / "v_CricketShot_g04_c01_rgb.gif", "rgb")
    logits = run_exported(out / "i3d_rgb.onnx", "onnx", (sample,))
    assert description["classes"][int(logits.argmax())] == "playing cricket"  # the release's top-1


def _train_checkpoint(path, modalities=("rgb",), *, diverged: bool = False) -> I3DClassifier:
    """A checkpoint as train.py writes it, of a 3-class model with random weights (``diverged``: a NaN
    in the rgb logits layer, as train.py never writes but a run elsewhere may)."""
    model = I3DClassifier(modalities=modalities, num_classes=3, class_names=["left", "right", "still"])
    if diverged:
        with torch.no_grad():
            model.towers["rgb"].logits.weight[0, 0] = float("nan")
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return model.eval()


@pytest.mark.long
def test_tool_exports_a_training_checkpoint_with_its_classes(tmp_path, weights_cache):
    model = _train_checkpoint(tmp_path / "best.ckpt")
    out = tmp_path / "export"
    # A check clip of one's own (--sample-rgb): an array as the release's sample is, [1, T, 224, 224, 3] in [-1, 1].
    sample = np.random.default_rng(2).uniform(-1, 1, (1, MIN_EXPORT_FRAMES, 224, 224, 3)).astype(np.float32)
    np.save(tmp_path / "sample.npy", sample)
    assert _run_tool(out, "--checkpoint", str(tmp_path / "best.ckpt"),
                     "--formats", "torchscript", "--sample-rgb", str(tmp_path / "sample.npy")) == 0
    description = json.loads((out / "i3d_rgb.json").read_text())
    assert description["classes"] == ["left", "right", "still"]
    differences = description["checks"]["max_abs_logit_difference"]["torchscript"]
    assert set(differences) == {f"sample 1x{MIN_EXPORT_FRAMES}", f"random 3x{MIN_EXPORT_FRAMES}"}
    assert max(differences.values()) <= 1e-4
    clip = torch.rand(2, 3, 20, 224, 224) * 2 - 1
    exported = StreamSum({"rgb": model.towers["rgb"]})
    assert max_abs_difference(out / "i3d_rgb.torchscript.pt", "torchscript", exported, (clip,)) <= 1e-4


def test_tool_rejects_a_stream_the_checkpoint_does_not_have(tmp_path, weights_cache, capsys):
    # In this process: the refusals are the command's main() (its one line, its exit status), nothing that
    # needs a process of its own.
    tool = _export_tool()
    _train_checkpoint(tmp_path / "best.ckpt")
    capsys.readouterr()
    assert tool.main([str(tmp_path / "export"), "--checkpoint", str(tmp_path / "best.ckpt"), "--stream", "joint"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: checkpoint {tmp_path / 'best.ckpt'} is a rgb model, not joint: leave the stream out or choose "
        f"the checkpoint's"]
    assert not (tmp_path / "export").exists()
    assert tool.main([str(tmp_path / "export"), "--checkpoint", str(tmp_path / "nope.ckpt")]) == 2
    assert "nope.ckpt: no such file" in capsys.readouterr().err
    (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
    assert tool.main([str(tmp_path / "export"), "--checkpoint", str(tmp_path / "notes.ckpt")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --checkpoint {tmp_path / 'notes.ckpt'} is not a PyTorch file (a torch.save checkpoint or state dict)"]


def test_tool_refuses_a_checkpoint_with_non_finite_weights(tmp_path, weights_cache, capsys):
    # Its export ran, and its parity check compared NaN with NaN: exit 0 over a diverged model.
    _train_checkpoint(tmp_path / "diverged.ckpt", diverged=True)
    capsys.readouterr()
    assert _run_tool(tmp_path / "export", "--checkpoint", str(tmp_path / "diverged.ckpt")) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --checkpoint {tmp_path / 'diverged.ckpt'} has non-finite weights (towers.rgb.logits.weight); it was "
        "not used or written (it comes from a training run that diverged: use a checkpoint from before)"]
    assert not (tmp_path / "export").exists()


def test_a_parity_check_that_gives_nan_fails_the_export(tmp_path, weights_cache, monkeypatch, capsys):
    tool = _export_tool()
    _train_checkpoint(tmp_path / "best.ckpt")
    monkeypatch.setattr(tool, "export", lambda model, fmt, path: path)
    monkeypatch.setattr(tool, "max_abs_difference", lambda path, fmt, model, clips: float("nan"))
    sample = np.zeros((1, MIN_EXPORT_FRAMES, 224, 224, 3), np.float32)
    np.save(tmp_path / "sample.npy", sample)
    capsys.readouterr()
    assert tool.main([str(tmp_path / "export"), "--checkpoint", str(tmp_path / "best.ckpt"), "--formats",
                      "torchscript", "--sample-rgb", str(tmp_path / "sample.npy")]) == 1
    assert "error: an export differs from PyTorch by nan" in capsys.readouterr().err


def test_export_without_the_onnx_extra_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    tool = _export_tool()
    real_find_spec = tool.importlib.util.find_spec
    monkeypatch.setattr(tool.importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxscript" else real_find_spec(name, *args))
    assert tool.main([str(tmp_path / "out")]) == 2
    # The command for this installation: an editable one, from this checkout.
    assert f"error: exporting torchscript and onnx needs onnxscript: pip install -e '{REPO_ROOT}[export]'" \
        in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_without_a_sample_clip_points_to_the_sample_option(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    from i3d_lightning.weights.loading import save_state_dict

    save_state_dict(InceptionI3d(3, 3).state_dict(), weights, {})
    assert _export_tool().main([str(tmp_path / "out"), "--weights-rgb", str(weights), "--formats", "torchscript"]) == 2
    err = capsys.readouterr().err
    assert "could not get the release file v_CricketShot_g04_c01_rgb.npy" in err
    assert "--sample-rgb PATH" in err
    assert not (tmp_path / "out").exists()


def test_the_install_hint_fits_the_installation(tmp_path, monkeypatch):
    from i3d_lightning import extras

    assert extras.install_command("export") == f"pip install -e '{REPO_ROOT}[export]'"  # this checkout
    installed = tmp_path / "site-packages" / "i3d_lightning" / "extras.py"  # a wheel's: no pyproject.toml above
    monkeypatch.setattr(extras, "__file__", str(installed))
    assert extras.install_command("tf") == "pip install 'i3d-lightning[tf]'"
