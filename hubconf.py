"""torch.hub entry points: ``torch.hub.load("<owner>/i3d-lightning", "i3d", weights="rgb_imagenet")``, or
``torch.hub.load("/path/to/checkout", "i3d", source="local", weights="rgb_scratch")``.

The model is :func:`i3d_lightning.weights.i3d`'s: DeepMind's converted weights by name (downloaded,
verified and converted once into the cache; the ``[tf]`` extra converts), a file, or none (random).
"""

dependencies = ["torch", "numpy", "safetensors"]

from i3d_lightning.weights import i3d  # noqa: E402  (torch.hub reads ``dependencies`` first)

__all__ = ["i3d"]
