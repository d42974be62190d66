"""DeepMind's released I3D weights: the registry (:mod:`.registry`), where the release's files come
from (:mod:`.release`), their conversion from TensorFlow (:mod:`.conversion`) and loading them into
models (:mod:`.loading`)."""

from i3d_lightning.weights.loading import i3d, load_weights, stream_towers
from i3d_lightning.weights.registry import I3DWeights, kinetics_categories
from i3d_lightning.weights.release import WeightsSource

__all__ = ["I3DWeights", "WeightsSource", "i3d", "kinetics_categories", "load_weights", "stream_towers"]
