"""The errors the command-line entry points report as one line instead of a traceback: mistakes in
what the user supplied, Ctrl-C or SIGTERM, a training run that diverged, and a DataLoader worker that
died or got stuck on a video."""

import errno
import signal
from pathlib import Path


class UserInputError(Exception):
    """Something the user supplied is missing, malformed or does not fit; the message says what."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler's stop, ``kill``, ``docker stop``), raised where the process is, as
    Ctrl-C raises KeyboardInterrupt: whatever handles Ctrl-C (Lightning's graceful shutdown, a
    DataLoader worker's quiet exit) handles it alike."""


class InterruptedByUserError(Exception):
    """The user stopped the command (Ctrl-C, or SIGTERM: ``terminated``); the message says what was
    kept and how to go on."""

    def __init__(self, message: str, *, terminated: bool = False) -> None:
        super().__init__(message)
        self.terminated = terminated


class TrainingDivergedError(RuntimeError):
    """Training produced non-finite losses or gradients too many times in a row, or non-finite weights."""


class WorkerFailedError(RuntimeError):
    """A DataLoader worker died or was stopped for making no progress; the message names its video."""


#: Exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Exit status of a command stopped by SIGTERM (128 + SIGTERM, as a shell reports it).
EXIT_TERMINATED = 128 + signal.SIGTERM


def first_line(error: Exception) -> str:
    """The first line of an exception's message (at most 300 characters), or its type's name."""
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def not_a_file(path: str | Path, what: str) -> UserInputError:
    """The refusal of ``path``, given as ``what`` and expected to be a file, that is not one: a folder,
    or nothing at all."""
    if Path(path).is_dir():
        return UserInputError(f"{what} {path} is a folder: give a file")
    return UserInputError(f"{what} {path}: no such file")


def cannot_write_reason(folder: Path, error: OSError) -> str:
    """Why files cannot be made in ``folder`` (``error`` came of trying), in words: an existing folder that
    refuses new files, as /proc and /sys do, answers "No such file or directory", which would send the
    user looking for it."""
    if error.errno == errno.EACCES:
        return "cannot write there (permission denied)"
    if error.errno == errno.EROFS:
        return "cannot write there (a read-only file system)"
    if error.errno == errno.ENOTDIR or (folder.exists() and not folder.is_dir()):
        return "a file is in the way of that folder"
    if folder.is_dir():
        return "cannot write there (the folder exists, but its file system takes no new files)"
    existing = next((parent for parent in folder.parents if parent.exists()), None)
    if error.errno == errno.ENOENT and existing is not None and existing.is_dir():
        return f"cannot create that folder ({existing} takes no new files or folders)"
    return f"cannot create that folder ({error.strerror or error})"
