"""i3d-lightning: DeepMind's Kinetics-trained I3D in PyTorch, with Lightning and Hydra."""

__version__ = "0.1.0"
