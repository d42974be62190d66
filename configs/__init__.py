"""The Hydra configs, installed as the package ``i3d_lightning.configs`` (pyproject.toml maps it to this
folder: one copy, in the checkout and in the wheel); Hydra finds them as ``pkg://i3d_lightning.configs``."""
