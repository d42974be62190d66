"""What the ``@hydra.main`` shims and the tools share: user errors as one line, not a traceback,
and no library chatter in the output."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf.errors import OmegaConfBaseException

from i3d_lightning.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    InterruptedByUserError,
    Terminated,
    TrainingDivergedError,
    UserInputError,
    WorkerFailedError,
    cannot_write_reason,
)
from i3d_lightning.run_folder import remove_if_only_hydra_files
from i3d_lightning.runtime.termination import sigterm_as_interrupt

if TYPE_CHECKING:  # imported where the options are made: it imports Lightning, ~7 s that i3d-check-videos,
    # i3d-extract-flow and i3d-convert never need (and every command's --help would wait for)
    from i3d_lightning.runtime.video_inference import InferenceOptions

#: Exit status of a tool that finished but skipped some of its inputs (each listed, with the reason):
#: not 0, so that a pipeline notices; neither 1 (it failed) nor 2 (it refused its arguments).
EXIT_SKIPPED = 3


def hydra_config_path() -> str:
    """Where Hydra finds the configs: the installed package ``i3d_lightning.configs`` (pyproject.toml
    installs configs/ as it, editable or not), or, for a checkout used from its source tree without
    installing (``PYTHONPATH=<checkout>``), its configs/ folder."""
    if importlib.util.find_spec("i3d_lightning.configs") is not None:
        return "pkg://i3d_lightning.configs"
    return str(Path(__file__).resolve().parents[1] / "configs")


@contextlib.contextmanager
def hydra_configs() -> Iterator[None]:
    """Hydra initialised with :func:`hydra_config_path` for ``compose`` (outside a ``@hydra.main`` app)."""
    from hydra import initialize_config_dir, initialize_config_module

    path = hydra_config_path()
    if path.startswith("pkg://"):
        with initialize_config_module(config_module=path.removeprefix("pkg://"), version_base="1.3"):
            yield
    else:
        with initialize_config_dir(config_dir=path, version_base="1.3"):
            yield


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


def add_inference_arguments(parser: argparse.ArgumentParser, *, per_call: str) -> None:
    """The options of a predict loop over videos (:class:`~i3d_lightning.runtime.video_inference.InferenceOptions`),
    the same for ``i3d-fvd`` and ``i3d-extract-features``; ``per_call``: what the network takes per call."""
    from i3d_lightning.hardware import INFERENCE_PRECISIONS

    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS, default="32",
                        help="32: IEEE fp32 (TensorFlow's numbers, also on GPUs); tf32: CUDA TF32; bf16: autocast")
    parser.add_argument("--batch-size", type=whole_number(1),
                        help=f"{per_call} per network call (default: 32 on a GPU, 8 on the CPU)")
    parser.add_argument("--no-fast", action="store_true", help="run the plain model, not the fast inference path")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (Lightning's accelerator)")
    parser.add_argument("--devices", default="auto", help="how many devices, or auto (Lightning's devices)")
    parser.add_argument("--workers", type=whole_number(0),
                        help="DataLoader processes decoding videos (default: one per core, at most 2; none for "
                             "an array in memory)")


def inference_options(args: argparse.Namespace) -> InferenceOptions:
    """The :class:`~i3d_lightning.runtime.video_inference.InferenceOptions` of :func:`add_inference_arguments`."""
    from i3d_lightning.runtime.video_inference import InferenceOptions

    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    return InferenceOptions(precision=args.precision, batch_size=args.batch_size, fast=not args.no_fast,
                            accelerator=args.accelerator, devices=devices, workers=args.workers)


def writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """``folder``, created if need be, after checking that a file can be written there (before any work:
    a result that cannot be saved must not cost hours first)."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise UserInputError(f"{what} {folder}: {cannot_write_reason(folder, error)}") from None
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
    Lightning itself triggers (torch 2.14 deprecated ``LeafSpec``, which Lightning 2.6 still uses), and
    its note that it adds no model summary of its own (ours, :mod:`~i3d_lightning.training.summary`, is there),
    and its lines on a Ctrl-C or SIGTERM (:func:`run_reporting_errors` says what happened, once)."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "pytorch_lightning.trainer.connectors.signal_connector"):
        logging.getLogger(name).addFilter(_not_chatter)


def _not_chatter(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    # Lightning's note that it adds no model summary (ours is there), and its lines about a Ctrl-C or a
    # SIGTERM, which run_reporting_errors reports in one line of its own.
    return not any(text in message for text in ("litlogger", "set_float32_matmul_precision",
                                                 "already configured with model summary callbacks",
                                                 "Detected KeyboardInterrupt", "Received SIGTERM"))


def run_reporting_errors(task: Callable[..., object], *args: object) -> int:
    """Run ``task(*args)`` for a command (``train.py``, ``eval.py``, the tools) and return its exit
    status: the int ``task`` returns, else 0. A mistake in the user's input or config prints one line
    ``error: <message>`` (no traceback) and gives 2; a training run that diverged, or a DataLoader worker
    that died or got stuck on a video, prints what happened and gives 1; Ctrl-C gives 130 and SIGTERM 143,
    after one line saying what was kept. Library chatter is quieted first. After success, the process group
    of a run over several processes is closed (:func:`~i3d_lightning.runtime.distributed.close_process_group`)."""
    quiet_library_chatter()
    try:
        with sigterm_as_interrupt():
            result = task(*args)
            if "torch.distributed" in sys.modules:  # a process group is possible only once torch is imported
                from i3d_lightning.runtime.distributed import close_process_group

                close_process_group()
    except (UserInputError, OmegaConfBaseException) as error:
        return _refuse(error)
    except InterruptedByUserError as error:
        print(f"{'terminated (SIGTERM)' if error.terminated else 'interrupted'}: {error}", file=sys.stderr)
        return EXIT_TERMINATED if error.terminated else EXIT_INTERRUPTED
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (TrainingDivergedError, WorkerFailedError) as error:
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
