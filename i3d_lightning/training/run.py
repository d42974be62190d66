"""``train.py``: fit I3D as the config says, then test the best checkpoint."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor, ModelSummary

from i3d_lightning.config_checks import check_config
from i3d_lightning.data.datamodule import VideoDataModule
from i3d_lightning.errors import InterruptedByUserError, Terminated, UserInputError
from i3d_lightning.hardware import float32_mode, float32_mode_on
from i3d_lightning.lightning.builders import build_datamodule, build_trainer
from i3d_lightning.lightning.classifier import I3DClassifier
from i3d_lightning.runtime.skip_report import SKIPPED_VIDEOS
from i3d_lightning.training.divergence import NonFiniteGuard
from i3d_lightning.training.resume import check_checkpoint_fits, resumed_config
from i3d_lightning.training.summary import EpochLine, ParameterSummary

log = logging.getLogger(__name__)


def _tensorboard_without_tensorflow() -> None:
    """Make TensorBoard's writer use its own TensorFlow stub even where TensorFlow is installed:
    importing TensorFlow there would only print its banner and take seconds. TensorBoard looks for
    the module ``tensorboard.compat.notf`` to decide this."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


def build_training_trainer(cfg: DictConfig) -> pl.Trainer:
    """The Trainer of ``cfg.trainer`` with the configured loggers and callbacks, and those training
    always has: the divergence guard, one line per epoch, the parameter summary."""
    _tensorboard_without_tensorflow()  # before a TensorBoard logger is made
    loggers = [instantiate(logger) for logger in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(callback) for callback in (cfg.get("callbacks") or {}).values()]
    if not loggers:  # the learning-rate monitor writes to a logger and refuses to run without one
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    if not any(isinstance(callback, NonFiniteGuard) for callback in callbacks):
        callbacks.append(NonFiniteGuard())  # never train unguarded, even with callbacks=null
    callbacks.append(EpochLine())  # one line per epoch in train.log (and on the console without a bar)
    summary_wanted = cfg.trainer.get("enable_model_summary", True)
    if summary_wanted and not any(isinstance(callback, ModelSummary) for callback in callbacks):
        callbacks.append(ParameterSummary())  # in place of Lightning's, which would print "Total FLOPs: 0"
    return build_trainer(cfg.trainer, loggers=loggers, callbacks=callbacks)


def train_command() -> str:
    """How this training was started, for the printed resume command: the installed ``i3d-train``, or
    ``python train.py`` in a checkout."""
    return "i3d-train" if Path(sys.argv[0]).name == "i3d-train" else "python train.py"


def _where_to_resume(run_dir: Path) -> str:
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return f"no checkpoint was written yet (one is saved at the end of each epoch); the run folder is {run_dir}"
    return f"the last checkpoint is {last}; resume with: {train_command()} ckpt_path={last}"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint, write the list of unreadable videos; returns the key results."""
    check_config(cfg)
    cfg, resumption = resumed_config(cfg)
    if cfg.get("dataset") is None:
        raise UserInputError("no dataset chosen: add dataset=ucf101|hmdb51|kinetics400|kinetics600|custom|synthetic "
                             "(with dataset.root=... where it has one), or experiment=quickstart for the synthetic "
                             "quick start")
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    trainer = build_training_trainer(cfg)  # first: a setting Lightning refuses costs no data preparation
    datamodule = build_datamodule(cfg.data)
    datamodule.setup("fit")
    if cfg.ckpt_path:
        check_checkpoint_fits(cfg.ckpt_path, list(cfg.stream.modalities), datamodule.num_classes)
    if resumption is not None:  # accepted: from now on, a later resume of the run continues with its changes
        resumption.record()
    model: I3DClassifier = instantiate(cfg.model, num_classes=datamodule.num_classes,
                                       class_names=datamodule.classes, _convert_="object")
    # TF32 is the usual speed choice for training in fp32 on a GPU; bf16-mixed leaves little in fp32.
    mode = float32_mode_on(trainer.strategy.root_device, bool(cfg.get("tf32", True)))
    with float32_mode(mode):
        return _fit_and_test(cfg, trainer, model, datamodule, run_dir, mode)


def _fit_and_test(cfg: DictConfig, trainer: pl.Trainer, model: I3DClassifier, datamodule: VideoDataModule,
                  run_dir: Path, float32: str) -> dict[str, Any]:
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    except SystemExit as stop:
        if trainer.interrupted:  # Lightning's answer to Ctrl-C (and SIGTERM, cli.py): a graceful shutdown, then exit
            raise InterruptedByUserError(_where_to_resume(run_dir),
                                         terminated=isinstance(stop.__context__, Terminated)) from None
        raise
    guard = next(callback for callback in trainer.callbacks if isinstance(callback, NonFiniteGuard))
    results: dict[str, Any] = {"run_dir": str(run_dir), "global_step": trainer.global_step,
                               "skipped_steps": guard.skipped_steps, "precision": str(trainer.precision),
                               "float32_mode": float32,
                               "metrics": {key: float(value) for key, value in trainer.callback_metrics.items()}}
    if guard.skipped_steps:
        log.warning("%d training steps were skipped for a non-finite loss or gradient", guard.skipped_steps)
    for checkpoint in trainer.checkpoint_callbacks:
        if checkpoint.monitor and checkpoint.best_model_path:
            results |= {"best_checkpoint": checkpoint.best_model_path,
                        "best_val_top1": float(checkpoint.best_model_score)}
        elif checkpoint.best_model_path:
            results["last_checkpoint"] = checkpoint.best_model_path
    if cfg.test_after_fit and not trainer.fast_dev_run:
        tested = trainer.test(model, datamodule=datamodule, ckpt_path=results.get("best_checkpoint"))
        results["test"] = tested[0] if tested else {}
    skipped = model.test_results.get("skipped") or model.skipped.gathered()
    results |= {"videos_skipped": len(skipped), "skipped_list": str(run_dir / SKIPPED_VIDEOS)}
    if trainer.is_global_zero:
        log.info("results:\n%s", json.dumps(results, indent=1, default=str))  # said before any file is written
        skipped.write(run_dir / SKIPPED_VIDEOS)  # with its header alone when nothing was skipped
        if len(skipped):
            log.warning("%d unreadable videos were skipped; list in %s", len(skipped), results["skipped_list"])
    return results
