"""Videos in the containers and codecs real datasets use, encoded by the tests with PyAV, whose frames
say which frame they are.

Every frame is a random texture (8-pixel blocks, a new one each frame, so one frame off changes every
block) with its index written in the top rows as :data:`BITS` full-width bands, black or white, one
per bit: the bands survive any horizontal crop and any codec's rounding.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT = 160, 128
BITS = 7  # frame indices up to 127
BAND = 8  # rows per bit

#: name -> (file suffix, codec, encoder options, B-frames for the mpeg4 encoder or None). The libx264
#: and libx265 settings go through their -params options: their plain AVOptions ignore unknown names.
ENCODINGS: dict[str, tuple[str, str, dict[str, str], int | None]] = {
    "avi_mpeg4_bframes": (".avi", "mpeg4", {"qscale": "2"}, 2),      # UCF101's and HMDB51's XviD family
    "avi_mpeg4": (".avi", "mpeg4", {"qscale": "2"}, 0),
    "avi_h264_bframes": (".avi", "libx264", {"crf": "12", "preset": "veryfast", "x264-params": "bframes=2"}, None),
    "avi_h264": (".avi", "libx264", {"crf": "12", "preset": "veryfast", "x264-params": "bframes=0"}, None),
    "mp4_h264_closed_gop": (".mp4", "libx264", {"crf": "12", "preset": "veryfast", "x264-params": "bframes=3"}, None),
    "mp4_h264_open_gop": (".mp4", "libx264", {"crf": "12", "preset": "veryfast", "x264-params":
                                              "keyint=12:min-keyint=12:open-gop=1:bframes=3:scenecut=0"}, None),
    "mp4_h264_b_pyramid": (".mp4", "libx264", {"crf": "12", "preset": "veryfast", "x264-params":
                                               "bframes=3:b-pyramid=normal:b-adapt=0"}, None),
    "mp4_hevc": (".mp4", "libx265", {"crf": "12", "preset": "ultrafast", "x265-params":
                                     "bframes=3:keyint=12:log-level=error"}, None),
    "mp4_mpeg4_bframes": (".mp4", "mpeg4", {"qscale": "2"}, 2),
    "webm_vp9": (".webm", "libvpx-vp9", {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}, None),
    "webm_vp8": (".webm", "libvpx", {"crf": "10", "b": "1M", "deadline": "realtime", "cpu-used": "8"}, None),
    "mkv_h264_open_gop": (".mkv", "libx264", {"crf": "12", "preset": "veryfast", "x264-params":
                                              "keyint=12:min-keyint=12:open-gop=1:bframes=3:scenecut=0"}, None),
}


def frame_pixels(index: int, seed: int = 0) -> np.ndarray:
    """``[HEIGHT, WIDTH, 3]`` uint8: frame ``index``'s texture with its index in the top bands."""
    rng = np.random.default_rng((seed, index))
    pixels = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    for bit in range(BITS):
        pixels[bit * BAND:(bit + 1) * BAND] = 255 if (index >> bit) & 1 else 0
    return pixels


def index_of(frame: np.ndarray) -> int:
    """The index written into a decoded ``[H, W, 3]`` frame, cropped sideways or resized (the bands scale
    with the frame's height)."""
    band = BAND * frame.shape[0] / HEIGHT
    rows = frame.astype(np.float32)
    return sum(1 << bit for bit in range(BITS)
               if rows[round(bit * band + band / 4):round((bit + 1) * band - band / 4)].mean() > 128)


def encode(path: Path, num_frames: int, encoding: str, *, fps: int = 25,
           timestamps_ms: list[int] | None = None) -> Path:
    """Write ``num_frames`` frames in ``encoding`` (:data:`ENCODINGS`). ``timestamps_ms``: each frame's
    time, for a variable frame rate (time base 1/1000)."""
    _, codec, options, bframes = ENCODINGS[encoding]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.gop_size = 12
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        if timestamps_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = dict(options)
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(index), format="rgb24")
            if timestamps_ms is not None:
                frame.pts, frame.time_base = timestamps_ms[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def sequential_decode(path: Path) -> np.ndarray:
    """Every frame of ``path`` as PyAV decodes the file from the start: ``[N, H, W, 3]`` uint8 RGB."""
    with av.open(str(path)) as container:
        return np.stack([frame.reformat(format="rgb24").to_ndarray() for frame in container.decode(video=0)])
