"""Writing TensorFlow checkpoints with chosen variable names, for converter tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from i3d_lightning.models.i3d import InceptionI3d
from i3d_lightning.weights.conversion import _tf_shape, import_tensorflow, variable_map


def release_like_variables(scope: str, in_channels: int, num_classes: int, *, seed: int = 0,
                           bn_5d: bool = False, momentum: bool = False) -> dict[str, np.ndarray]:
    """Random variables named and shaped as in a release checkpoint (scope e.g. ``"Flow/inception_i3d/"``).

    ``bn_5d`` shapes batch-norm variables ``[1, 1, 1, 1, C]`` and ``momentum`` adds SGD momentum
    slots, as in rgb_scratch_kin600.
    """
    rng = np.random.default_rng(seed)
    state = InceptionI3d(num_classes, in_channels).state_dict()
    variables: dict[str, np.ndarray] = {}
    for name, key in variable_map().items():
        shape = _tf_shape(tuple(state[key].shape))
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("conv_3d/w"):
            value = rng.normal(0, (2 / np.prod(shape[:-1])) ** 0.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        if bn_5d and "batch_norm" in name:
            value = value.reshape(1, 1, 1, 1, -1)
        variables[scope + name] = value.astype(np.float32)
        if momentum and not name.endswith(("moving_mean", "moving_variance")):
            variables[f"{scope}{name}/Momentum"] = np.zeros_like(variables[scope + name])
    return variables


def write_tf_checkpoint(prefix: Path, variables: dict[str, np.ndarray]) -> Path:
    """Save ``variables`` as a TensorFlow V2 checkpoint at ``prefix``; returns the prefix."""
    tf = import_tensorflow()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = list(variables)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[name]) for name in names])
    return prefix
