"""The TensorFlow -> PyTorch converter: every release variable mapped, misfits refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from i3d_lightning.commands import convert as convert_command
from i3d_lightning.models import InceptionI3d
from i3d_lightning.weights import i3d
from i3d_lightning.weights.conversion import (
    CheckpointMismatchError,
    check_variables,
    import_tensorflow,
    read_tf_checkpoint,
    variable_map,
)
from tests.conftest import run_main
from tests.tf_checkpoints import release_like_variables, write_tf_checkpoint

RELEASE_LAYOUTS = {
    "rgb_imagenet": ("RGB/inception_i3d/", 3, 400),
    "flow_imagenet": ("Flow/inception_i3d/", 2, 400),
    "rgb_scratch": ("RGB/inception_i3d/", 3, 400),
    "flow_scratch": ("Flow/inception_i3d/", 2, 400),
    "rgb_scratch_kin600": ("", 3, 600),
}


@pytest.mark.parametrize("name", list(RELEASE_LAYOUTS))
def test_every_variable_of_every_release_checkpoint_is_mapped(checkpoints_dir, name):
    tf = import_tensorflow()
    shapes = tf.train.load_checkpoint(str(checkpoints_dir / name / "model.ckpt")).get_variable_to_shape_map()
    layout = check_variables(shapes)
    scope, in_channels, num_classes = RELEASE_LAYOUTS[name]
    assert (layout.scope, layout.in_channels, layout.num_classes) == (scope, in_channels, num_classes)
    model_variables = {v for v in shapes if not v.endswith("/Momentum")}
    assert model_variables == {scope + v for v in variable_map()}
    # kin600 carries optimizer momentum for every trainable variable; nothing else is skipped.
    skipped = set(shapes) - model_variables
    assert len(skipped) == (116 if name == "rgb_scratch_kin600" else 0)


def test_mapping_covers_every_learned_tensor_once():
    keys = list(variable_map().values())
    assert len(keys) == len(set(keys)) == 230
    state = InceptionI3d().state_dict()
    # gamma is a constant 1 (not in the release) and num_batches_tracked is PyTorch bookkeeping.
    unmapped = {k for k in state if not k.endswith((".bn.weight", "num_batches_tracked"))} - set(keys)
    assert unmapped == set()
    assert variable_map()["Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"] == "blocks.Mixed_5b.branch2.1.conv.weight"
    assert "Mixed_5c/Branch_2/Conv3d_0b_3x3/conv_3d/w" in variable_map()


def test_rgb_scratch_converts_with_transposed_kernels(checkpoints_dir, rgb_scratch_state):
    tf = import_tensorflow()
    reader = tf.train.load_checkpoint(str(checkpoints_dir / "rgb_scratch" / "model.ckpt"))
    kernel = reader.get_tensor("RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w")  # [t,h,w,in,out]
    converted = rgb_scratch_state["blocks.Mixed_5b.branch2.1.conv.weight"]  # [out,in,t,h,w]
    assert converted.shape == (128, 32, 3, 3, 3)
    np.testing.assert_array_equal(converted.numpy(), kernel.transpose(4, 3, 0, 1, 2))
    mean = reader.get_tensor("RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/moving_mean")
    np.testing.assert_array_equal(rgb_scratch_state["blocks.Conv3d_1a_7x7.bn.running_mean"].numpy(), mean)
    assert torch.all(rgb_scratch_state["blocks.Conv3d_1a_7x7.bn.weight"] == 1)
    InceptionI3d().load_state_dict(rgb_scratch_state)  # strict: nothing missing or unexpected


def test_kinetics600_layout_converts(tmp_path):
    variables = release_like_variables("", 3, 600, bn_5d=True, momentum=True)
    state, layout = read_tf_checkpoint(write_tf_checkpoint(tmp_path / "model.ckpt", variables))
    assert (layout.scope, layout.num_classes) == ("", 600)
    np.testing.assert_array_equal(state["blocks.Mixed_4c.branch1.0.bn.bias"].numpy(),
                                  variables["Mixed_4c/Branch_1/Conv3d_0a_1x1/batch_norm/beta"].reshape(-1))


def test_misfit_checkpoint_is_refused_with_every_problem_listed(tmp_path):
    variables = release_like_variables("RGB/inception_i3d/", 3, 400)
    del variables["RGB/inception_i3d/Mixed_4d/Branch_3/Conv3d_0b_1x1/batch_norm/beta"]
    variables["RGB/inception_i3d/Mixed_4d/Branch_4/Conv3d_0a_1x1/conv_3d/w"] = np.zeros((1, 1, 1, 512, 8), np.float32)
    variables["RGB/inception_i3d/Mixed_3c/Branch_1/Conv3d_0b_3x3/conv_3d/w"] = np.zeros((3, 3, 3, 128, 191),
                                                                                       np.float32)
    prefix = write_tf_checkpoint(tmp_path / "model.ckpt", variables)
    with pytest.raises(CheckpointMismatchError) as caught:
        read_tf_checkpoint(prefix)
    message = str(caught.value)
    assert "missing (1):\n    RGB/inception_i3d/Mixed_4d/Branch_3/Conv3d_0b_1x1/batch_norm/beta" in message
    assert "unexpected (1):\n    RGB/inception_i3d/Mixed_4d/Branch_4/Conv3d_0a_1x1/conv_3d/w" in message
    assert "Mixed_3c/Branch_1/Conv3d_0b_3x3/conv_3d/w: checkpoint [3, 3, 3, 128, 191], model [3, 3, 3, 128, 192]" \
        in message


def test_non_i3d_checkpoint_is_refused(tmp_path):
    prefix = write_tf_checkpoint(tmp_path / "model.ckpt", {"dense/kernel": np.zeros((4, 4), np.float32)})
    with pytest.raises(CheckpointMismatchError, match="no Conv3d_1a_7x7/conv_3d/w"):
        read_tf_checkpoint(prefix)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_data_is_refused(tmp_path, checkpoints_dir, damage):
    copy = tmp_path / "rgb_scratch"
    shutil.copytree(checkpoints_dir / "rgb_scratch", copy)
    data = copy / "model.ckpt.data-00000-of-00001"
    data.chmod(0o644)
    with data.open("r+b") as stream:
        if damage == "truncate":
            stream.truncate(data.stat().st_size // 2)
        else:  # one flipped byte: TensorFlow's CRC32C check catches it
            stream.seek(data.stat().st_size // 2)
            byte = stream.read(1)[0]
            stream.seek(-1, 1)
            stream.write(bytes([byte ^ 0xFF]))
    with pytest.raises(CheckpointMismatchError, match="truncated or corrupt"):
        read_tf_checkpoint(copy / "model.ckpt")


def test_missing_checkpoint_is_refused(tmp_path, checkpoints_dir):
    with pytest.raises(CheckpointMismatchError, match="could not open"):
        read_tf_checkpoint(tmp_path / "nothing" / "model.ckpt")
    (tmp_path / "index_only").mkdir()  # the .index copied, its data file forgotten
    shutil.copy(checkpoints_dir / "rgb_scratch" / "model.ckpt.index", tmp_path / "index_only")
    with pytest.raises(CheckpointMismatchError, match=r"has its .index but no data file \(model.ckpt.data-00000-of"):
        read_tf_checkpoint(tmp_path / "index_only" / "model.ckpt")


def test_converter_cli_writes_loadable_weights(tmp_path, checkpoints_dir, rgb_scratch_state, capsys):
    output = tmp_path / "rgb_scratch.safetensors"
    status, out, err = run_main(convert_command.main, [str(checkpoints_dir / "rgb_scratch"), str(output)], capsys)
    assert status == 0, err
    assert "(rgb, 400 classes, 344 tensors)" in out  # 230 converted + 57 gammas + 57 counters
    model = i3d(weights=output)
    for key, value in model.state_dict().items():
        assert torch.equal(value, rgb_scratch_state[key]), key


def test_converter_cli_reports_a_misfit_in_one_message(tmp_path, capsys):
    variables = release_like_variables("RGB/inception_i3d/", 3, 400)
    del variables["RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/w"]
    prefix = write_tf_checkpoint(tmp_path / "model.ckpt", variables)
    status, _, err = run_main(convert_command.main, [str(prefix), str(tmp_path / "out.safetensors")], capsys)
    assert status == 2
    assert "error: the checkpoint does not fit I3D" in err and "Traceback" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_converter_cli_checks_its_output_before_converting(tmp_path, checkpoints_dir, capsys):
    convert = convert_command.main
    (tmp_path / "a_file").write_text("")
    checkpoint = str(checkpoints_dir / "rgb_scratch")
    assert convert([checkpoint, str(tmp_path / "a_file" / "w.pt")]) == 2
    in_the_way = f"error: OUTPUT {tmp_path / 'a_file'}: a file is in the way of that folder"
    assert capsys.readouterr().err.strip() == in_the_way
    # A folder that exists but takes no new files (/proc here) is not "No such file or directory".
    assert convert([checkpoint, "/proc/w.pt"]) == 2
    assert capsys.readouterr().err.strip() == ("error: OUTPUT /proc: cannot write there (the folder exists, but its "
                                               "file system takes no new files)")
    assert convert([checkpoint, str(tmp_path / "w.npz")]) == 2
    assert capsys.readouterr().err.strip() == f"error: OUTPUT {tmp_path / 'w.npz'}: name a .safetensors or .pt file"
