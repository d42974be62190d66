"""What training tells the user as it goes: the table of the model's parts when it starts, and one
line per epoch.

The table leaves out Lightning's FLOPs column: Lightning counts FLOPs only by running
``example_input_array`` through the model, and I3D has none (a clip's size is the data's choice), so its
summary would end with a misleading "Total FLOPs: 0". The epoch line goes to ``train.log`` always, and
to the console unless a progress bar on a terminal already shows the same numbers.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelSummary
from pytorch_lightning.utilities.model_summary import get_human_readable_count

log = logging.getLogger(__name__)


class ParameterSummary(ModelSummary):
    """Lightning's model summary (one row per submodule down to ``max_depth``: name, type, parameters,
    train/eval mode) and the parameter totals, logged as plain text."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        widths = [max(len(name), *(len(value) for value in values)) for name, values in columns]
        lines = ["  ".join(name.ljust(width) for (name, _), width in zip(columns, widths, strict=True))]
        for row in zip(*(values for _, values in columns), strict=True):
            lines.append("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)))
        frozen = total_parameters - trainable_parameters
        lines.append(f"parameters: {get_human_readable_count(total_parameters)} "
                     f"({get_human_readable_count(trainable_parameters)} trainable, "
                     f"{get_human_readable_count(frozen)} non-trainable), {model_size:.1f} MB")
        log.info("model:\n%s", "\n".join(line.rstrip() for line in lines))


class EpochLine(Callback):
    """Logs ``epoch 3/4: train loss 0.6931, val top-1 0.5000, 12.3 s`` when each training epoch ends
    (after its validation): the mean training loss of the epoch's steps, the validation top-1 of the
    stream's prediction (the checkpoints' monitor) and the epoch's wall time."""

    def __init__(self) -> None:
        self._started = 0.0
        self._loss_sum = 0.0
        self._steps = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started, self._loss_sum, self._steps = time.perf_counter(), 0.0, 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss_sum += float(loss)
            self._steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        parts.append(f"train loss {self._loss_sum / self._steps:.4f}" if self._steps else "no training step")
        top1 = trainer.callback_metrics.get(f"val/{getattr(pl_module, 'primary_head', '')}/top1")
        parts.append(f"val top-1 {float(top1):.4f}" if top1 is not None else "not validated")
        line = f"{parts[0]}: {', '.join(parts[1:])}, {time.perf_counter() - self._started:.1f} s"
        if trainer.progress_bar_callback is not None and sys.stdout.isatty():
            _log_to_files_only(line)  # the bar on the terminal shows these numbers already
        else:
            log.info(line)


def _log_to_files_only(message: str) -> None:
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
