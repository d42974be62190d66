"""A command's run folder (Hydra's ``run_dir``): refused in one line when it cannot be made, and removed
again when the command did no work in it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from i3d_lightning.errors import cannot_write_reason


def remove_if_only_hydra_files(run_dir: Path) -> None:
    """Delete ``run_dir`` if it holds nothing but Hydra's ``.hydra/`` and job log, then its parents
    below the working directory as long as they are empty."""
    if not run_dir.is_dir() or any(entry.name != ".hydra" and entry.suffix != ".log" for entry in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir)
    cwd = Path.cwd().resolve()
    for parent in run_dir.resolve().parents:
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


class RunFolderCheck(Callback):
    """A Hydra callback (``hydra.callbacks`` of ``train.yaml`` and ``eval.yaml``): make the run folder before
    Hydra does, and refuse one that cannot be made (``run_dir=/proc/run``, a read-only disk) with one line
    and exit status 2, where Hydra would end in a traceback before the command's own checks run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.run.dir)).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            print(f"error: run_dir={folder}: {cannot_write_reason(folder, error)}", file=sys.stderr)
            sys.exit(2)
