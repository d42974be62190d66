"""Files that appear complete or not at all.

Downloads, converted weights, feature files and exports are written under a temporary name in the
target's folder and renamed into place when complete (a rename within one filesystem is atomic), so
an interrupted or failed run never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to. When the block ends normally the file is
    renamed to ``path`` with the permissions of a newly created file (``0o666`` less the umask; some
    writers, such as safetensors, create theirs private); when it raises, the file is removed and
    ``path`` stays as it was. The temporary name starts with a dot and holds the process id, so
    parallel writers never collide."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield temporary
        temporary.chmod(0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
