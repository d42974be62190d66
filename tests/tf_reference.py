"""The release's I3D forward pass written directly with TensorFlow ops, for checking fidelity.

It reads the variables of a TensorFlow checkpoint with TensorFlow's reader and applies the same
operations as DeepMind's Sonnet graph in inference mode: ``tf.nn.conv3d`` and ``tf.nn.max_pool3d``
with ``SAME`` padding, Sonnet's batch norm (``(x - moving_mean) / sqrt(moving_variance + 1e-3) +
beta``), ReLU, ``tf.nn.avg_pool3d`` 2x7x7 ``VALID``, the logits convolution with bias, the spatial
squeeze and the mean over time. Needs TensorFlow (``pip install 'i3d-lightning[tf]'``). It lives with
the tools because only ``tools/benchmarks/measure_fidelity.py`` and the tests use it.
"""

from __future__ import annotations

import os

import numpy as np

from i3d_lightning.models.i3d import LAYERS, Conv, Pool
from i3d_lightning.weights.conversion import checkpoint_scope, import_tensorflow, unit_scopes

_EPSILON = 1e-3


class TFReferenceI3D:
    """Callable ``[B, T, H, W, C]`` float32 numpy array -> logits ``[B, classes]``."""

    def __init__(self, checkpoint_prefix: str | os.PathLike) -> None:
        tf = import_tensorflow()
        self._tf = tf
        reader = tf.train.load_checkpoint(str(checkpoint_prefix))
        scope = checkpoint_scope(list(reader.get_variable_to_shape_map()))
        self._scope_of = unit_scopes()
        self._vars = {name.removeprefix(scope): tf.constant(reader.get_tensor(name))
                      for name in reader.get_variable_to_shape_map() if name.startswith(scope)}

    def _unit(self, x, module: str, stride: tuple[int, int, int] = (1, 1, 1)):
        tf = self._tf
        scope = self._scope_of[module]
        x = tf.nn.conv3d(x, self._vars[f"{scope}/conv_3d/w"], [1, *stride, 1], "SAME")
        mean, variance, beta = (tf.reshape(self._vars[f"{scope}/batch_norm/{name}"], [-1])
                                for name in ("moving_mean", "moving_variance", "beta"))
        x = tf.nn.batch_normalization(x, mean, variance, beta, None, _EPSILON)
        return tf.nn.relu(x)

    def _max_pool(self, x, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        return self._tf.nn.max_pool3d(x, [1, *kernel, 1], [1, *stride, 1], "SAME")

    def _mixed(self, x, block: str):
        tf = self._tf
        prefix = f"blocks.{block}"
        branch0 = self._unit(x, f"{prefix}.branch0")
        branch1 = self._unit(self._unit(x, f"{prefix}.branch1.0"), f"{prefix}.branch1.1")
        branch2 = self._unit(self._unit(x, f"{prefix}.branch2.0"), f"{prefix}.branch2.1")
        branch3 = self._unit(self._max_pool(x, (3, 3, 3), (1, 1, 1)), f"{prefix}.branch3.1")
        return tf.concat([branch0, branch1, branch2, branch3], axis=4)

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        tf = self._tf
        x = tf.constant(inputs, dtype=tf.float32)
        for layer in LAYERS:
            if isinstance(layer, Conv):
                x = self._unit(x, f"blocks.{layer.name}", layer.stride)
            elif isinstance(layer, Pool):
                x = self._max_pool(x, layer.kernel, layer.stride)
            else:
                x = self._mixed(x, layer.name)
        x = tf.nn.avg_pool3d(x, [1, 2, 7, 7, 1], [1, 1, 1, 1, 1], "VALID")
        logits = tf.nn.conv3d(x, self._vars["Logits/Conv3d_0c_1x1/conv_3d/w"], [1] * 5, "VALID")
        logits = logits + self._vars["Logits/Conv3d_0c_1x1/conv_3d/b"]
        logits = tf.squeeze(logits, [2, 3])
        return tf.reduce_mean(logits, axis=1).numpy()
