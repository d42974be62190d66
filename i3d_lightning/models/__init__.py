"""The I3D network (:mod:`.i3d`), its fast inference form (:mod:`.inference`) and the streams built
from it (:mod:`.streams`). Weights live in :mod:`i3d_lightning.weights`."""

from i3d_lightning.models.i3d import ENDPOINTS, FEATURE_DIM, InceptionI3d

__all__ = ["ENDPOINTS", "FEATURE_DIM", "InceptionI3d"]
