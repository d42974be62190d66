"""Video decoding: exactly the frames asked for, as a full sequential decode of the file gives them.

Frame ``i`` is the ``i``-th frame a decoder outputs when it decodes the file from the start. decord's
random access returns other frames where the stream reorders frames (B-frames): measured on decord 0.6.0,
frames from elsewhere in the video in AVI files with B-frames (UCF101's and HMDB51's XviD), and a frame
or more off in MP4s with HEVC, MPEG-4 Part 2 or open-GOP H.264 (docs/data.md, "Exact frames"). So each
file is looked at once (:func:`access_mode`, cached per process) and read one of three ways:

* ``seek``: decord's random access, where the stream has no reordering or only closed GOPs (H.264's
  usual encoding; no frame shown before the keyframe it follows), and in AVI only for MPEG-4 Part 2 (and
  MJPEG) without B-frames: exact there, and fast;
* ``timestamps``: PyAV, for open-GOP streams in containers with timestamps (MP4, MKV, WebM): the
  packets' timestamps, sorted, give each frame's index (variable frame rates included); a read seeks to
  the keyframe before the first frame wanted and decodes on, keeping the frames whose timestamps match;
* ``sequential``: PyAV, for the other AVI files (AVI's timestamps count packets, not display times):
  every frame decoded from the start and counted, converted to RGB only where wanted.

decord is imported here and nowhere else (PyAV too). Rules measured on decord 0.6.0: open a
``VideoReader`` per call and drop it right after ``get_batch`` (an open reader keeps decoding the whole
video into RAM in the background, and a reader created in a parent process hangs in forked DataLoader
workers); ask for sorted frame indices in one ``get_batch``; one decoding thread per reader; clamp
indices to ``len - 1``. Resizing at decode (``size``) is decord's scaler on the ``seek`` path and
FFmpeg's bilinear one on the others: the same frames, pixels a few levels apart.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from i3d_lightning.errors import UserInputError
from i3d_lightning.heartbeat import beat
from i3d_lightning.native_stderr import native_stderr_captured

#: The file extensions read as videos where a folder is searched for them.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


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


def probe(path: str | os.PathLike, *, decoder: str = "exact") -> VideoInfo:
    """Frame count (as a sequential decode counts them; with ``decoder="decord"``, as decord does),
    average frame rate and size of the video at ``path``."""
    plan = _frame_plan(path, decoder)
    reader = _open(path)
    try:
        height, width = reader[0].shape[:2] if len(reader) else (0, 0)
        count = len(reader) if plan.access == "seek" else plan.num_frames
        info = VideoInfo(count, float(reader.get_avg_fps()), int(width), int(height))
    except Exception as error:
        raise VideoDecodeError(f"{path}: cannot read ({_reason(error)})") from error
    finally:
        del reader
    if info.num_frames == 0:
        raise VideoDecodeError(f"{path}: the video stream has no frames")
    return info


def read_frames(path: str | os.PathLike, indices: np.ndarray | list[int], *,
                size: tuple[int, int] | None = None, decoder: str = "exact") -> np.ndarray:
    """Decode the frames ``indices`` (sorted or not, repeats allowed) of the video at ``path``: frame ``i``
    as the ``i``-th frame of a sequential decode (see the module). ``decoder="decord"``: decord's random
    access for every file, as before this module chose per file (faster on AVI with B-frames, whose
    frames it then takes from elsewhere in the video).

    ``size`` = (width, height) resizes at decode. Returns uint8 ``[len(indices), H, W, 3]`` RGB.
    """
    indices = np.asarray(indices, dtype=np.int64)
    plan = _frame_plan(path, decoder)
    if plan.access == "seek":
        return _read_seeking(path, indices, size)
    last = plan.num_frames - 1
    unique, inverse = np.unique(np.clip(indices, 0, last), return_inverse=True)
    try:
        frames = _read_decoding_on(path, unique, size, plan)
    except VideoDecodeError:
        raise
    except Exception as error:  # PyAV's errors (av.error.*) and anything else the decoder raised
        raise VideoDecodeError(f"{path}: cannot decode frames ({_reason(error)})") from error
    return frames[inverse]


def iter_frames(path: str | os.PathLike, indices: np.ndarray | list[int], *, chunk: int,
                size: tuple[int, int] | None = None, decoder: str = "exact") -> Iterator[np.ndarray]:
    """The frames ``indices`` (non-decreasing; repeats allowed) of ``path`` as :func:`read_frames` returns
    them, ``chunk`` at a time: uint8 ``[<= chunk, H, W, 3]`` arrays, from one decoder that goes through
    the file once, so a long video costs the memory of a chunk and, read from the start, one decode."""
    indices = np.asarray(indices, dtype=np.int64)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if len(indices) and np.any(np.diff(indices) < 0):
        raise ValueError("iter_frames takes indices in order (non-decreasing)")
    plan = _frame_plan(path, decoder)
    if plan.access == "seek":  # random access is exact: a reader per chunk keeps decord's rules
        for start in range(0, len(indices), chunk):
            yield _read_seeking(path, indices[start:start + chunk], size)
        return
    clipped = np.clip(indices, 0, plan.num_frames - 1)
    try:
        yield from _iter_decoding_on(path, clipped, size, plan, chunk)
    except VideoDecodeError:
        raise
    except Exception as error:  # PyAV's errors
        raise VideoDecodeError(f"{path}: cannot decode frames ({_reason(error)})") from error


def _iter_decoding_on(path: str | os.PathLike, indices: np.ndarray, size: tuple[int, int] | None,
                      plan: _FramePlan, chunk: int) -> Iterator[np.ndarray]:
    """:func:`iter_frames` through PyAV: the decode goes on from chunk to chunk (``timestamps`` files
    seek once, to the keyframe before the first frame)."""
    import av

    if not len(indices):
        return
    with av.open(os.fspath(path)) as container:
        stream = _video_stream(container)
        first = int(indices[0])
        if plan.access == "timestamps":
            container.seek(_keyframe_at_or_before(plan, first), stream=stream, backward=True)
            index_of = {int(pts): index for index, pts in enumerate(plan.timestamps)}
            numbered = ((index_of.get(frame.pts, -1), frame) for frame in _decoded(container, stream))
        else:
            numbered = enumerate(_decoded(container, stream))
        out: list[np.ndarray] = []
        position = 0
        for index, frame in numbered:
            while position < len(indices) and indices[position] == index:
                out.append(_to_rgb(frame, size) if not out or indices[position - 1] != index else out[-1])
                position += 1
                if len(out) == chunk:
                    yield np.stack(out)
                    out = []
            if position == len(indices):
                break
        if position < len(indices):
            raise VideoDecodeError(f"{path}: frame {int(indices[position])} could not be decoded (the file ends "
                                   f"early or is damaged)")
        if out:
            yield np.stack(out)


def access_mode(path: str | os.PathLike) -> str:
    """How :func:`read_frames` reaches the frames of ``path``: ``seek`` (decord's random access),
    ``timestamps`` or ``sequential`` (PyAV; the frame-accurate paths), as the module describes."""
    return _frame_plan(path).access


def _read_seeking(path: str | os.PathLike, indices: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    width, height = size if size is not None else (-1, -1)
    reader = _open(path, width, height)
    try:
        last = len(reader) - 1
        if last < 0:
            raise VideoDecodeError(f"{path}: the video stream has no frames")
        wanted = np.clip(indices, 0, last)
        unique, inverse = np.unique(wanted, return_inverse=True)  # sorted, as decord prefers
        batches = []  # a request at a time, a heartbeat each: a whole long video is one read in places
        for start in range(0, len(unique), SEEK_BATCH):
            batches.append(reader.get_batch(unique[start:start + SEEK_BATCH].tolist()).asnumpy())
            beat()
        # A clip (the usual read) is one request: no copy of it here, only the one below.
        frames = batches[0] if len(batches) == 1 else np.concatenate(batches)
    except VideoDecodeError:
        raise
    except Exception as error:
        raise VideoDecodeError(f"{path}: cannot decode frames ({_reason(error)})") from error
    finally:
        del reader
    return frames[inverse]


#: Frames per decord request in :func:`_read_seeking` (the reader goes on from where the last one stopped).
SEEK_BATCH = 256
#: ``exact``: each file read the way that gives its sequential decode's frames (the module); ``decord``:
#: decord's random access for every file.
DECODERS = ("exact", "decord")
#: Codecs whose AVI files decord seeks exactly when they have no B-frames (measured; see the module).
SEEKABLE_AVI_CODECS = ("mpeg4", "msmpeg4v2", "msmpeg4v3", "mjpeg")


@dataclass(frozen=True)
class _FramePlan:
    """How to reach a file's frames: ``access`` (see the module), its frame count (decord's for
    ``seek``, the sequential decode's otherwise), and for ``timestamps`` each frame's timestamp in
    display order and the keyframes' timestamps."""

    access: str
    num_frames: int
    timestamps: np.ndarray | None = None
    keyframes: np.ndarray | None = None


def _frame_plan(path: str | os.PathLike, decoder: str = "exact") -> _FramePlan:
    if decoder not in DECODERS:
        raise UserInputError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: no such file")
    if decoder == "decord":
        return _FramePlan("seek", 0)
    stat = os.stat(path)
    return _cached_frame_plan(os.fspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)  # per process (each DataLoader worker has its own): once per file
def _cached_frame_plan(path: str, file_size: int, mtime_ns: int) -> _FramePlan:
    import av

    if file_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            stream = _video_stream(container)
            reorders = bool(stream.codec_context.has_b_frames)
            if "avi" in container.format.name.split(","):
                # AVI has no display times (its timestamps count packets). decord's seek was exact there
                # only for MPEG-4 Part 2 without B-frames; H.264 in AVI came back wrong even without them.
                if not reorders and stream.codec_context.name in SEEKABLE_AVI_CODECS:
                    return _FramePlan("seek", 0)
                # The index's count (one chunk per frame, placeholders of packed B-frames included)
                # is what a sequential decode outputs (tests/test_exact_frames.py); decoding to count
                # is the fallback where the header has no count.
                count = stream.frames or sum(1 for _ in _decoded(container, stream))
                return _FramePlan("sequential", count)
            if not reorders:
                return _FramePlan("seek", 0)  # decord's count, taken where it reads
            timestamps, keyframes, open_gop = [], [], False
            for packet in container.demux(stream):  # in decoding order, nothing decoded
                if packet.pts is None:
                    if packet.size:  # a frame without a timestamp: count them instead
                        return _FramePlan("sequential", sum(1 for _ in _decoded_from_start(path)))
                    continue
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
                elif keyframes and packet.pts < keyframes[-1]:
                    open_gop = True  # shown before the keyframe it follows: decoding it needs the GOP before
                timestamps.append(packet.pts)
    except VideoDecodeError:
        raise
    except Exception as error:  # PyAV's errors: the file is not a video it can read
        raise VideoDecodeError(f"{path}: cannot open as video ({_reason(error)})") from error
    if not open_gop:  # B-frames in closed GOPs (H.264's usual encoding): decord's seek is exact there
        return _FramePlan("seek", 0)
    return _FramePlan("timestamps", len(timestamps), np.unique(timestamps), np.unique(keyframes))


def _video_stream(container):
    """The container's first video stream, to be decoded single-threaded (as decord's readers are: the
    DataLoader workers already use the cores)."""
    stream = container.streams.video[0]
    stream.thread_type = "NONE"
    stream.thread_count = 1
    return stream


def _decoded(container, stream):
    """The frames of ``stream`` in display order, a heartbeat each (a long decode is not a stuck one)."""
    for frame in container.decode(stream):
        beat()
        yield frame


def _decoded_from_start(path: str):
    import av

    with av.open(path) as container:
        yield from _decoded(container, _video_stream(container))


def _to_rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
    width, height = size if size is not None else (frame.width, frame.height)
    # reformat() then to_ndarray(): PyAV's to_ndarray(format=...) converts far slower (measured 4-9 ms
    # against 0.1-0.4 ms per 320x240 frame), with the same pixels.
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR").to_ndarray()


def _read_decoding_on(path: str | os.PathLike, wanted: np.ndarray, size: tuple[int, int] | None,
                      plan: _FramePlan) -> np.ndarray:
    """The frames ``wanted`` (sorted, unique, within the video) through PyAV, as ``plan`` says."""
    import av

    found: dict[int, np.ndarray] = {}
    with av.open(os.fspath(path)) as container:
        stream = _video_stream(container)
        if plan.access == "sequential":
            wanted_set, last = set(wanted.tolist()), int(wanted[-1])
            for index, frame in enumerate(_decoded(container, stream)):
                if index in wanted_set:
                    found[index] = _to_rgb(frame, size)
                if index >= last:
                    break
        else:
            found = _read_by_timestamps(container, stream, wanted, size, plan)
    missing = [int(index) for index in wanted if index not in found]
    if missing:
        raise VideoDecodeError(f"{path}: frames {missing[:5]} could not be decoded (the file ends early or is "
                               f"damaged)")
    return np.stack([found[int(index)] for index in wanted])


def _read_by_timestamps(container, stream, wanted: np.ndarray, size: tuple[int, int] | None,
                        plan: _FramePlan) -> dict[int, np.ndarray]:
    """Seek to the keyframe at or before the first frame wanted, decode on, keep the frames whose
    timestamps are wanted; seek again where the next one lies beyond a later keyframe. A pass that
    finds nothing (a seek that landed late) is tried once more from the start."""
    index_of = {int(pts): index for index, pts in enumerate(plan.timestamps)}
    wanted_set = set(wanted.tolist())
    found: dict[int, np.ndarray] = {}
    position, from_start = 0, False  # wanted[position]: the first frame not found yet
    while position < len(wanted):
        start = 0 if from_start else _keyframe_at_or_before(plan, int(wanted[position]))
        container.seek(start, stream=stream, backward=True)
        before = len(found)
        for frame in _decoded(container, stream):
            index = index_of.get(frame.pts)
            if index is None or index not in wanted_set or index in found:
                continue
            found[index] = _to_rgb(frame, size)
            while position < len(wanted) and int(wanted[position]) in found:
                position += 1
            if position == len(wanted) or _keyframe_at_or_before(plan, int(wanted[position])) > frame.pts:
                break  # done, or a keyframe lies between here and the next frame wanted: seek to it
        if len(found) == before:
            if from_start:
                break  # not in the stream: the caller names the missing frames
            from_start = True
    return found


def _keyframe_at_or_before(plan: _FramePlan, index: int) -> int:
    """The timestamp of the last keyframe at or before frame ``index`` (0 if none is)."""
    target = plan.timestamps[index]
    earlier = plan.keyframes[plan.keyframes <= target]
    return int(earlier[-1]) if len(earlier) else 0
