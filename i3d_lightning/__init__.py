"""i3d-lightning: DeepMind's Kinetics-trained I3D in PyTorch, with Lightning and Hydra."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: The installed package's version: pyproject.toml is the one place it is written (CHANGELOG.md says
    #: what each version added).
    __version__ = version("i3d-lightning")
except PackageNotFoundError:  # a checkout used from its source tree, not installed (PYTHONPATH)
    __version__ = "unknown"
