"""Telling a stuck or dead DataLoader worker from a busy one, with no timeout that grows with the work.

An item of a predict loop can take long: a segment of a long video's online TV-L1 flow on a busy CPU.
A fixed DataLoader timeout declared such a worker hung ("DataLoader timed out after 600 seconds", on a
10-second video). Here a worker says it is making progress instead: the decoder beats once per frame and
TV-L1 once per pyramid level (:func:`i3d_lightning.heartbeat.beat`), into memory shared with the main
process, and the worker records which item it is on. A thread of the main process stops the run only
when a worker busy with an item has been silent for :data:`STUCK_AFTER_S` seconds (a decoder stuck on a
damaged file): it kills that worker, and the DataLoader's own death check ends the loop. Either way, a
stuck worker or one that died (the kernel's out-of-memory killer) is reported in one line naming the
video it was reading (:class:`~i3d_lightning.errors.WorkerFailedError`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset, get_worker_info

from i3d_lightning import heartbeat
from i3d_lightning.errors import WorkerFailedError

#: Seconds a worker busy with an item may go without a beat: no frame decoded and no flow level computed
#: in that time is a stuck decoder, not a slow one (a frame or a level takes seconds at most).
STUCK_AFTER_S = 600.0
#: How often the main process looks at the workers' beats, at most.
CHECK_EVERY_S = 5.0
#: What torch's DataLoader says when workers die: "DataLoader worker (pid 12) is killed by signal: Killed."
#: or "DataLoader worker (pid(s) 12, 13) exited unexpectedly".
_DEAD_WORKERS = re.compile(r"DataLoader worker \(pids?(?:\(s\))? ([\d, ]+)\)\s*(.*)")
_IDLE = -1


@dataclass(frozen=True)
class _Board:
    """What the workers write and the main process reads, per worker slot: the last beat's time, the
    item being fetched (``-1``: none) and the process id."""

    times: Any
    items: Any
    pids: Any

    def attach(self, worker_id: int) -> None:
        """A DataLoader ``worker_init_fn``: this worker beats into its slot."""
        self.pids[worker_id] = os.getpid()
        self.items[worker_id] = _IDLE
        heartbeat.attach(self.times, worker_id)


class WatchedItems(Dataset):
    """The items of ``dataset``, each fetched with the worker's slot saying which one it is on."""

    def __init__(self, dataset: Dataset, board: _Board) -> None:
        self.dataset, self.board = dataset, board

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        worker = get_worker_info()
        if worker is None:
            return self.dataset[index]
        self.board.items[worker.id] = index
        heartbeat.beat()
        try:
            return self.dataset[index]
        finally:
            self.board.items[worker.id] = _IDLE


class WorkerWatch:
    """The watch over the ``workers`` DataLoader workers that fetch ``dataset``'s items: give the loader
    :attr:`items` and :attr:`worker_init_fn`, and run the loop inside :meth:`watching`. ``dataset`` may
    name its items' videos (``video_of(index) -> str``) for the error message."""

    def __init__(self, dataset: Dataset, workers: int, *, stuck_after: float | None = None) -> None:
        self.dataset, self.workers = dataset, workers
        self.stuck_after = STUCK_AFTER_S if stuck_after is None else stuck_after
        self.board = _Board(*(multiprocessing.RawArray(kind, max(workers, 1)) for kind in ("d", "q", "q")))
        for slot in range(workers):  # no worker is on an item until one says so
            self.board.items[slot] = _IDLE
        self.items: Dataset = WatchedItems(dataset, self.board) if workers else dataset
        self.worker_init_fn = self.board.attach if workers else None
        self.stuck: tuple[int, float] | None = None  # (item, seconds silent) of the worker that was stopped

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Inside: a silent busy worker is stopped; a stopped or dead worker's error names its video."""
        if not self.workers:
            yield
            return
        done = threading.Event()
        thread = threading.Thread(target=self._watch, args=(done,), name="worker-watch", daemon=True)
        thread.start()
        try:
            yield
        except RuntimeError as error:
            failure = self._failure(error)
            if failure is None:
                raise
            raise failure from None
        finally:
            done.set()
            thread.join()

    def _watch(self, done: threading.Event) -> None:
        while not done.wait(min(CHECK_EVERY_S, self.stuck_after / 4)):
            now = time.monotonic()
            for slot in range(self.workers):
                item, silent = self.board.items[slot], now - self.board.times[slot]
                if item != _IDLE and silent > self.stuck_after:
                    self.stuck = (item, silent)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.board.pids[slot], signal.SIGKILL)
                    return

    def _failure(self, error: RuntimeError) -> WorkerFailedError | None:
        """The one-line error for a worker that this watch stopped or that died with an item in hand."""
        if self.stuck is not None:
            item, silent = self.stuck
            return WorkerFailedError(
                f"{self._video(item)}: the DataLoader worker reading it made no progress for {silent:.0f} s and "
                f"was stopped (a decoder stuck on a damaged file? i3d-check-videos finds such files)")
        dead = _DEAD_WORKERS.search(str(error))
        if dead is None:
            return None
        pids = {int(pid) for pid in dead.group(1).replace(",", " ").split()}
        items = [self.board.items[slot] for slot in range(self.workers) if self.board.pids[slot] in pids]
        busy = [item for item in items if item != _IDLE]
        if not busy:
            return None
        how = dead.group(2).split(". ")[0].rstrip(". ").replace("is killed by signal: ", "killed by signal ")
        return WorkerFailedError(f"{self._video(busy[0])}: the DataLoader worker reading it died "
                                 f"({how or 'exited unexpectedly'}: out of memory, or a crash in the decoder? "
                                 f"the kernel's log, dmesg, says which)")

    def _video(self, item: int) -> str:
        video_of = getattr(self.dataset, "video_of", None)
        return video_of(item) if video_of is not None else f"item {item}"
