"""Video decoding. decord is imported here and nowhere else, so another decoder can replace it.

Rules measured on decord 0.6.0: open a ``VideoReader`` per call and drop it right after
``get_batch`` (an open reader keeps decoding the whole video into RAM in the background, and a
reader created in a parent process hangs in forked DataLoader workers); ask for sorted frame
indices in one ``get_batch``; one decoding thread per reader; clamp indices to ``len - 1``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from i3d_lightning.errors import UserInputError
from i3d_lightning.native_stderr import native_stderr_captured


class VideoDecodeError(UserInputError):
    """A video file is missing, unreadable, corrupt or in a format the decoder cannot read."""


@dataclass(frozen=True)
class VideoInfo:
    """Frame count, frame rate and size of a video stream."""

    num_frames: int
    fps: float
    width: int
    height: int


def _open(path: str | os.PathLike, width: int = -1, height: int = -1):
    import decord

    # FFmpeg's own lines ("moov atom not found", ...) and decord's "ERROR opening: <path>" would precede
    # every decode error on stderr; the error raised below says what went wrong instead. The log level
    # quiets FFmpeg; decord's line goes straight to descriptor 2, so the lines naming the file are
    # dropped there and anything else written meanwhile is passed on.
    decord.logging.set_level(decord.logging.QUIET)

    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    with native_stderr_captured() as captured:
        captured.show, captured.omit = True, os.fspath(path)
        try:
            return decord.VideoReader(os.fspath(path), ctx=decord.cpu(0), width=width, height=height,
                                      num_threads=1)
        except Exception as error:  # decord raises DECORDError, a plain Exception subclass
            raise VideoDecodeError(f"{path}: cannot open as video ({_reason(error)})") from error


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, average frame rate and size of the video at ``path``."""
    reader = _open(path)
    try:
        height, width = reader[0].shape[:2] if len(reader) else (0, 0)
        info = VideoInfo(len(reader), float(reader.get_avg_fps()), int(width), int(height))
    except Exception as error:
        raise VideoDecodeError(f"{path}: cannot read ({_reason(error)})") from error
    finally:
        del reader
    if info.num_frames == 0:
        raise VideoDecodeError(f"{path}: the video stream has no frames")
    return info


def read_frames(path: str | os.PathLike, indices: np.ndarray | list[int], *,
                size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode the frames ``indices`` (sorted or not, repeats allowed) of the video at ``path``.

    ``size`` = (width, height) resizes at decode. Returns uint8 ``[len(indices), H, W, 3]`` RGB.
    """
    indices = np.asarray(indices, dtype=np.int64)
    width, height = size if size is not None else (-1, -1)
    reader = _open(path, width, height)
    try:
        last = len(reader) - 1
        if last < 0:
            raise VideoDecodeError(f"{path}: the video stream has no frames")
        wanted = np.clip(indices, 0, last)
        unique, inverse = np.unique(wanted, return_inverse=True)  # sorted, as decord prefers
        frames = reader.get_batch(unique.tolist()).asnumpy()
    except VideoDecodeError:
        raise
    except Exception as error:
        raise VideoDecodeError(f"{path}: cannot decode frames ({_reason(error)})") from error
    finally:
        del reader
    return frames[inverse]
