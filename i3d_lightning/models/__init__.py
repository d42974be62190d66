"""The I3D network and DeepMind's released weights."""

from i3d_lightning.models.i3d import ENDPOINTS, FEATURE_DIM, InceptionI3d
from i3d_lightning.models.weights import I3DWeights, i3d, load_state_dict

__all__ = ["ENDPOINTS", "FEATURE_DIM", "I3DWeights", "InceptionI3d", "i3d", "load_state_dict"]
