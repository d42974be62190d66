"""Quieting what native libraries (FFmpeg inside decord, TensorFlow) write straight to file descriptor 2.

Such lines bypass ``sys.stderr`` and Python's logging, so the only way to keep them off a user's
terminal is to point descriptor 2 somewhere else while the native call runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

# Descriptor 2 is process-wide: two threads swapping it at once could leave it pointing at a closed file.
_swap_lock = threading.RLock()  # re-entrant: a capture may run inside another (TensorFlow import, then its ops)


@dataclass
class CapturedStderr:
    """How to treat what was captured once the block ends."""

    show: bool = False  # write the captured text to stderr when the block ends
    omit: str | None = None  # ... leaving out the lines that contain this text


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[CapturedStderr]:
    """Send file descriptor 2 to a temporary file while the block runs; replay it as ``show`` says.

    Anything else that writes to stderr meanwhile (another thread) is captured too, which is why
    callers replay what they do not recognise rather than dropping everything.
    """
    captured = CapturedStderr()
    with _swap_lock, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if captured.show:
                sink.seek(0)
                lines = sink.read().decode(errors="replace").splitlines(keepends=True)
                sys.stderr.write("".join(line for line in lines
                                         if captured.omit is None or captured.omit not in line))
