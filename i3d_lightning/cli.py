"""What the ``@hydra.main`` shims share: user errors as one line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from i3d_lightning.errors import UserInputError


def run_reporting_errors(task: Callable[[DictConfig], object], cfg: DictConfig) -> None:
    """Run ``task(cfg)``; a mistake in the user's input or config prints ``error: <message>`` (no
    traceback) and exits with 2."""
    try:
        task(cfg)
    except (UserInputError, OmegaConfBaseException) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except InstantiationException as error:
        # Hydra wraps what a constructor raised; a user error inside is reported as such.
        if isinstance(error.__cause__, UserInputError):
            print(f"error: {error.__cause__}", file=sys.stderr)
            sys.exit(2)
        raise


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UserInputError(f"device={name!r} is not a device (auto, cpu, cuda, cuda:N)") from error
