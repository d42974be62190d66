"""A command's run folder (Hydra's ``run_dir``) is removed again when the command did no work in it."""

from __future__ import annotations

import shutil
from pathlib import Path


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
