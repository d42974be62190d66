"""The feature extraction's progress bar, in windows (or frames): a long video moves it as its segments are done.

Lightning's predict bar counts steps, which were videos (``1/1 ... 0.00it/s`` for the whole of a long
video). This bar counts the windows whose features are done, out of those of the run (the frames of
the one pass with ``--per-video``), with their rate, so a 30-minute video shows how far it is and when it will end.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar


class WindowProgressBar(TQDMProgressBar):
    """Predict-loop bar of ``unit`` (windows, or frames): step ``k`` of this process is item
    ``rank + k * world_size`` of the dataset (one item per step, no shuffling), whose count is
    ``counts[item]``; set :attr:`counts` before the loop starts."""

    def __init__(self, unit: str = "windows") -> None:  # unit and counts may be set until the loop starts
        super().__init__()
        self.unit = unit
        self.counts: list[int] = []

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        bar = self.predict_progress_bar
        bar.reset(total=sum(self.counts[trainer.global_rank::trainer.world_size]))
        bar.unit = self.unit
        bar.set_description("features")

    def on_predict_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                               batch_idx: int, dataloader_idx: int = 0) -> None:
        pass  # the bar was set up for the whole run (Lightning's would reset it to the step count here)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        bar = self.predict_progress_bar
        bar.n += self.counts[trainer.global_rank + batch_idx * trainer.world_size]
        bar.refresh()
