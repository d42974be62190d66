"""SIGTERM stops a command as Ctrl-C does, in whatever order it reaches the run's processes.

A scheduler's stop (Slurm, ``timeout``, ``kill`` on the process group) reaches the main process and its
DataLoader workers together. Inside :func:`sigterm_as_interrupt` the main process raises
:class:`~i3d_lightning.errors.Terminated` (a KeyboardInterrupt, so Lightning shuts down gracefully and
keeps the last checkpoint). The workers die of the signal (torch's handler in them), and torch's SIGCHLD
handler in the main process would report that as a failed worker: "DataLoader worker (pid N) is killed
by signal: Terminated". Replacing SIGCHLD's handler from our SIGTERM handler is not enough: during
``fit`` Lightning's SIGTERM handler runs before ours and logs, and a worker that dies meanwhile has its
SIGCHLD handled first (CI saw it). So the SIGCHLD handler of our DataLoaders (:func:`guard_worker_deaths`)
reads a worker killed by SIGTERM as the run's SIGTERM itself: whichever handler runs first raises
``Terminated``, once, and the other does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from i3d_lightning.errors import Terminated


class _Stop:
    """Whether a :func:`sigterm_as_interrupt` is in force (``active``) and has already raised (``raised``)."""

    active = False
    raised = False


def _raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler inside :func:`sigterm_as_interrupt`."""
    if _Stop.raised:  # the stop is under way: a second SIGTERM must not break the graceful shutdown
        return
    _Stop.raised = True
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside: SIGTERM raises :class:`~i3d_lightning.errors.Terminated` once, so it stops the command as
    Ctrl-C does, and DataLoader workers that die of it are not reported as failures. Python lets only the
    main thread set handlers; elsewhere nothing changes. On exit SIGTERM's handler is back as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _Stop.active, _Stop.raised = True, False
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _Stop.active = _Stop.raised = False


def guard_worker_deaths() -> None:
    """Put :class:`_WorkerDeathGuard` in front of torch's SIGCHLD handler; call it where a DataLoader with
    workers is made, before it is iterated (the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        return
    # torch installs its handler once per process, when a first iterator starts workers: installed now,
    # it will not later go in front of ours. (Private to torch, unchanged since torch 1.0.)
    from torch.utils.data._utils.signal_handling import _set_SIGCHLD_handler

    _set_SIGCHLD_handler()
    current = signal.getsignal(signal.SIGCHLD)
    if not isinstance(current, _WorkerDeathGuard):
        signal.signal(signal.SIGCHLD, _WorkerDeathGuard(current))


class _WorkerDeathGuard:
    """A SIGCHLD handler: torch's check of the DataLoader workers (a dead one raises RuntimeError), except
    that inside :func:`sigterm_as_interrupt` a worker killed by SIGTERM raises ``Terminated`` (once: after
    that, workers dying of the stop are expected), then the handler that was there before."""

    def __init__(self, previous: object) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: object) -> None:
        from torch.utils.data._utils.signal_handling import _error_if_any_worker_fails

        if _Stop.raised:
            return
        try:
            _error_if_any_worker_fails()
        except RuntimeError as error:
            # torch's message names the signal as strsignal() does, in the process's language.
            if not _Stop.active or f"killed by signal: {signal.strsignal(signal.SIGTERM)}" not in str(error):
                raise
            _Stop.raised = True
            raise Terminated from None
        if callable(self.previous):
            self.previous(signum, frame)
