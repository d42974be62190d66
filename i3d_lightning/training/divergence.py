"""Training that never silently diverges: steps with a non-finite loss or gradient are skipped, too
many in a row stop the run with one clear error, and no checkpoint with non-finite weights is written.

A skipped step changes nothing: its gradients are dropped before the optimizer sees them (an
optimizer skips parameters without a gradient, so neither the weights nor the momentum or Adam
state move), and the batch-norm running statistics that its forward pass updated are restored.
The decision is taken after the gradients were reduced across processes and agreed by all of them,
so the processes of a multi-GPU run stay in step.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from i3d_lightning.errors import TrainingDivergedError

log = logging.getLogger(__name__)


class NonFiniteGuard(Callback):
    """Skip optimizer steps whose loss or gradients are not finite; stop after ``max_consecutive``.

    The number skipped is logged as ``train/skipped_steps`` and kept in :attr:`skipped_steps`.
    """

    def __init__(self, max_consecutive: int = 10) -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be at least 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.skipped_steps = 0
        self.consecutive = 0
        self._loss_finite = True
        self._buffers: dict[str, torch.Tensor] = {}

    # Lightning calls these in order: batch start, training_step (forward), backward, then
    # on_before_optimizer_step inside optimizer.step(), so the gradients can be dropped there.
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if not self._buffers:  # first batch of an accumulation window
            self._buffers = {name: buffer.detach().clone() for name, buffer in pl_module.named_buffers()}

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            self._loss_finite = False

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        # The losses of this step (every batch of an accumulation window) were seen before backward;
        # a non-finite loss whose gradient happens to be finite is no step either.
        # One collective: every process takes the same decision. The message names what was bad here
        # (the gradients are already reduced, so another process's non-finite loss shows in them).
        loss, grads = self._loss_finite, self._gradients_finite(optimizer)
        self._loss_finite = True
        if trainer.strategy.reduce_boolean_decision(loss and grads, all=True):
            self.consecutive = 0
            self._buffers = {}
            return
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in pl_module.named_buffers():
                if name in self._buffers:
                    buffer.copy_(self._buffers[name])
        self._buffers = {}
        self.skipped_steps += 1
        self.consecutive += 1
        what = "losses" if not loss else "gradients"
        log.warning("step %d skipped: non-finite %s (%d skipped so far, %d in a row)", trainer.global_step, what,
                    self.skipped_steps, self.consecutive)
        if self.consecutive >= self.max_consecutive:
            raise TrainingDivergedError(
                f"training diverged: {self.consecutive} steps in a row had non-finite {what} "
                f"(step {trainer.global_step}; {self.skipped_steps} skipped in all). The weights were not "
                f"changed by those steps. Try trainer.precision=32 (bf16 convolution gradients have been NaN "
                f"on some CPUs), a lower learning rate (model.optimizer.lr), or gradient clipping "
                f"(trainer.gradient_clip_val=1.0)")

    @staticmethod
    def _gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return True
        norms = torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads])
        return bool(torch.isfinite(norms).all())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log("train/skipped_steps", float(self.skipped_steps), on_step=False, on_epoch=True, sync_dist=False)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
        self.consecutive = int(state_dict.get("consecutive", 0))
