"""A DataLoader worker's sign of life: work that can take long (decoding a video frame by frame, TV-L1
flow pyramid level by level) calls :func:`beat` as it goes.

In a worker that :class:`~i3d_lightning.runtime.worker_watch.WorkerWatch` watches, a beat stores the time
in memory shared with the main process, which tells a busy worker (beating) from a stuck one (silent);
anywhere else it does nothing. It is a store of one float, cheap enough to call once per frame.
"""

from __future__ import annotations

import time
from typing import Any

# In a watched worker: (the shared array of last-beat times, this worker's slot in it).
_board: tuple[Any, int] | None = None


def beat() -> None:
    """Say that this process is making progress (a no-op outside a watched DataLoader worker)."""
    if _board is not None:
        times, slot = _board
        times[slot] = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine


def attach(times: Any, slot: int) -> None:
    """Make this process's beats go to ``times[slot]`` (a shared float array), and beat once."""
    global _board
    _board = (times, slot)
    beat()
