"""Whether videos can be decoded, each checked in a child process with a timeout, so that a file that
crashes or hangs the decoder is reported instead of stopping the check (``i3d-check-videos``).

A child decodes the first, middle and last frames of its video and says how the video's frames are
reached (:func:`~i3d_lightning.video.decoding.access_mode`); run as ``python -m
i3d_lightning.video.checking VIDEO`` it prints that, or the reason the video cannot be read on stderr
(exit status 1).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from i3d_lightning.video import decoding


@dataclass(frozen=True)
class VideoCheck:
    """One video's check: the ``reason`` it cannot be read, or how its frames are reached (``access``)."""

    path: Path
    reason: str | None = None
    access: str | None = None


def decode_samples(path: Path) -> str:
    """Decode the first, middle and last frame of ``path`` (raises when it cannot); returns how its
    frames are reached."""
    info = decoding.probe(path)
    decoding.read_frames(path, [0, info.num_frames // 2, info.num_frames - 1])
    return decoding.access_mode(path)


def check_in_subprocess(path: Path, timeout: float) -> VideoCheck:
    """:func:`decode_samples` of ``path`` in a child process that may take ``timeout`` seconds."""
    try:
        result = subprocess.run([sys.executable, "-m", __name__, str(path)], capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return VideoCheck(path, reason=f"decoding did not finish within {timeout:g} s")
    if result.returncode == 0:
        return VideoCheck(path, access=result.stdout.strip().splitlines()[-1])
    lines = result.stderr.strip().splitlines()
    return VideoCheck(path, reason=lines[-1] if lines else f"decoder process died (exit status {result.returncode})")


def check_videos(paths: Sequence[Path], *, timeout: float = 60.0, workers: int = 1) -> list[VideoCheck]:
    """Check each of ``paths`` (``workers`` at a time, ``timeout`` seconds each), with a progress line;
    the checks in the order of ``paths``."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda path: check_in_subprocess(path, timeout), paths)
        return list(tqdm(results, total=len(paths), unit="video", desc="checking"))


def _main(path: str) -> int:
    try:
        print(decode_samples(Path(path)))
    except Exception as error:  # any decoder failure, as one line for the parent
        print(f"{type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
