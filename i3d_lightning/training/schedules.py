"""Learning-rate schedules as functions of the optimizer and the run's total optimizer steps, so that a
config can give them as Hydra partials: ``scheduler(optimizer, total_steps=...)``. All step per batch."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def step_decay(optimizer: Optimizer, total_steps: int, milestones: Sequence[float] = (0.6, 0.85),
               gamma: float = 0.1) -> LambdaLR:
    """The release's SGD recipe: constant, divided by ``1 / gamma`` at each milestone (fractions of the run)."""
    steps = [int(fraction * total_steps) for fraction in milestones]
    return LambdaLR(optimizer, lambda step: gamma ** sum(step >= milestone for milestone in steps))


def cosine_with_warmup(optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                       final_ratio: float = 0.0) -> LambdaLR:
    """Linear warm-up from 0 over ``warmup_fraction`` of the run, then cosine decay to ``final_ratio``."""
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)

