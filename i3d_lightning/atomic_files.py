"""Files that appear complete or not at all.

Every file a command writes (downloads, converted weights, features, exports, reports, lists of
skipped videos, ``--json`` results) is written under a temporary name in the target's folder and
renamed into place when complete (a rename within one filesystem is atomic), so an interrupted or
failed run never leaves a half-written file that a later run, or a reader, would trust.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any


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


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """A CSV file of ``header`` and ``rows``, written atomically (its folder created)."""
    with atomic_output(path) as partial, partial.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """A text file, written atomically."""
    with atomic_output(path) as partial:
        partial.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, value: Any, *, sort_keys: bool = False) -> Path:
    """``value`` as indented JSON (non-JSON values as their text), written atomically."""
    return write_text(path, json.dumps(value, indent=2, sort_keys=sort_keys, default=str) + "\n")
