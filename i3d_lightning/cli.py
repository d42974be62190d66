"""What the ``@hydra.main`` shims and the tools share: user errors as one line, not a traceback,
and no library chatter in the output."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf.errors import OmegaConfBaseException

from i3d_lightning.errors import EXIT_INTERRUPTED, InterruptedByUserError, TrainingDivergedError, UserInputError
from i3d_lightning.run_folder import remove_if_only_hydra_files

#: Exit status of a tool that finished but skipped some of its inputs (each listed, with the reason):
#: not 0, so that a pipeline notices; neither 1 (it failed) nor 2 (it refused its arguments).
EXIT_SKIPPED = 3


def finished(skipped: int, where: str) -> int:
    """The exit status of a tool that is done: 0, or :data:`EXIT_SKIPPED` (and one line on stderr
    saying so) when ``skipped`` inputs were set aside; ``where`` says where they are listed."""
    if not skipped:
        return 0
    print(f"done, but {skipped} input{'s were' if skipped > 1 else ' was'} skipped (listed {where}): "
          f"exit status {EXIT_SKIPPED}", file=sys.stderr)
    return EXIT_SKIPPED


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum``. Anything else is refused by
    argparse before any work, naming the option: exit status 2."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def number(minimum: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a number of at least ``minimum`` (``above``: greater than it)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum or (above and value == minimum) or value != value:
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {minimum:g}, got {text}")
        return value
    return parse


def writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """``folder``, created if need be, after checking that a file can be written there (before any work:
    a result that cannot be saved must not cost hours first)."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise UserInputError(f"{what} {folder}: cannot write there ({error.strerror or error})") from None
    return folder


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """``path``, its folder created and checked (:func:`writable_folder`), refused if it is a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserInputError(f"{what} {path} is a folder: give a file name")
    writable_folder(path.parent, what)
    return path


def quiet_library_chatter() -> None:
    """Silence what libraries print that is neither progress nor a problem of the user's run:
    Lightning's advertisement for its cloud logger, its advice to set TF32 (the precision is chosen
    and logged by :func:`~i3d_lightning.hardware.float32_mode`), and the pytree deprecation that
    Lightning itself triggers (torch 2.14 deprecated ``LeafSpec``, which Lightning 2.6 still uses)."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_not_chatter)


def _not_chatter(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "litlogger" not in message and "set_float32_matmul_precision" not in message


def run_reporting_errors(task: Callable[..., object], *args: object) -> int:
    """Run ``task(*args)`` for a command (``train.py``, ``eval.py``, the tools) and return its exit
    status: the int ``task`` returns, else 0. A mistake in the user's input or config prints one line
    ``error: <message>`` (no traceback) and gives 2; a training run that diverged prints what happened
    and gives 1; Ctrl-C gives 130, after saying what was kept. Library chatter is quieted first."""
    quiet_library_chatter()
    try:
        result = task(*args)
    except (UserInputError, OmegaConfBaseException) as error:
        return _refuse(error)
    except InterruptedByUserError as error:
        print(f"interrupted: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingDivergedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except InstantiationException as error:
        # Hydra wraps what a constructor raised; a user error inside is reported as such.
        if isinstance(error.__cause__, UserInputError):
            return _refuse(error.__cause__)
        raise
    return result if isinstance(result, int) else 0


def _refuse(error: Exception) -> int:
    """Report a mistake in the user's input: one line, exit status 2, and no run folder left behind
    when Hydra's own files are all it holds."""
    print(f"error: {error}", file=sys.stderr)
    if HydraConfig.initialized():
        remove_if_only_hydra_files(Path(HydraConfig.get().runtime.output_dir))
    return 2
