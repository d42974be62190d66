"""The Trainer and the DataModule of a run, built from their config groups (``trainer``, ``data``).

Shared by ``train.py`` (which adds its loggers and callbacks) and ``eval.py``; each passes only the
groups it uses, so neither depends on the other's keys.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from i3d_lightning.data.datamodule import VideoDataModule
from i3d_lightning.errors import UserInputError, first_line
from i3d_lightning.hardware import resolve_trainer_precision

log = logging.getLogger(__name__)


def build_datamodule(data: DictConfig) -> VideoDataModule:
    """The DataModule of the ``data`` group, prepared (``prepare_data``) and ready for ``setup``."""
    datamodule = instantiate(data, _convert_="object")
    datamodule.prepare_data()
    return datamodule


def build_trainer(trainer: DictConfig, *, precision: tuple[str, str] | None = None, loggers: Sequence[Any] = (),
                  callbacks: Sequence[Any] = (), **extra: Any) -> pl.Trainer:
    """The Trainer of the ``trainer`` group with ``loggers`` and ``callbacks``, its precision resolved
    (``auto``: :func:`~i3d_lightning.hardware.auto_precision`), or ``precision`` (Lightning's value and
    the reason to log) where the caller chose it. A setting Lightning refuses is one line (exit 2)."""
    chosen, reason = precision or resolve_trainer_precision(trainer.get("precision", "auto"),
                                                            str(trainer.get("accelerator", "auto")))
    log.info("precision %s: %s", chosen, reason)
    try:
        return instantiate(trainer, logger=list(loggers) or False, callbacks=list(callbacks), precision=chosen,
                           **extra)
    except InstantiationException as error:
        # Lightning refusing a setting (a strategy or device count it cannot honour) is the user's to fix.
        if isinstance(error.__cause__, MisconfigurationException | ValueError | TypeError):
            raise UserInputError(f"trainer: {first_line(error.__cause__)}") from None
        raise
