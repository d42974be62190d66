"""One side of an FVD comparison as a dataset of clips: a folder of videos (anything decord reads), a
folder of frame folders (png/jpg), or an array file ``[N, T, H, W, 3]`` (``.npy``, or ``.npz`` with one
array). Each item is one video's clips ``[K, T, H, W, 3]`` (K = ``clips_per_video``) at the video's own
size: uint8, or float as the array holds them (values are never rounded to uint8: that would change the
distance). Resizing (the protocol's resolution, then 224x224) is the embedder's, on the accelerator."""

from __future__ import annotations

import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from i3d_lightning.data.annotations import video_files
from i3d_lightning.errors import UserInputError, first_line
from i3d_lightning.preprocessing import MODEL_RANGE_TOLERANCE
from i3d_lightning.video import decoding
from i3d_lightning.video.sampling import clip_span

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
STARTS = ("first", "uniform", "random")


@dataclass(frozen=True)
class ClipProtocol:
    """Which frames of each video are embedded.

    ``frames`` frames every ``stride`` frames; ``clips_per_video`` clips per video starting at the first
    frame and then evenly spread (``start="uniform"``), all at the first frame (``"first"``, one clip),
    or at random positions (``"random"``, drawn from ``seed`` and the video's index); ``fake_start``,
    when given, is where the generated side's clips start instead. Frames are resized (TF1 bilinear) to
    ``resolution`` (height, width) first when given. At most ``max_videos`` videos (the first ones in
    sorted order). With ``min_frames``, videos shorter than that are discarded before the first
    ``max_videos`` are taken, and counted (a named protocol's rule); without it, a video shorter than a
    clip is skipped as unreadable. ``name`` is the paper protocol's (:mod:`i3d_lightning.fvd.protocols`).
    Saved with reference statistics: statistics of different protocols are not compared.
    """

    frames: int = 16
    stride: int = 1
    start: str = "first"
    clips_per_video: int = 1
    resolution: tuple[int, int] | None = None
    max_videos: int | None = None
    seed: int = 0
    fake_start: str | None = None
    min_frames: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        for start in (self.start, self.fake_start or self.start):
            if start not in STARTS:
                raise UserInputError(f"clip start must be one of {', '.join(STARTS)}, got {start!r}")
        if self.frames < 1 or self.stride < 1 or self.clips_per_video < 1:
            raise UserInputError("frames, stride and clips per video must be at least 1")
        if self.min_frames is not None and self.min_frames < self.span:
            raise UserInputError(f"min_frames {self.min_frames} is shorter than a clip ({self.span} frames)")

    @property
    def span(self) -> int:
        """Frames one clip covers."""
        return clip_span(self.frames, self.stride)

    def starts(self, num_frames: int, rng: np.random.Generator, side: str = "real") -> list[int]:
        """First frame of each clip of a ``num_frames`` video (which must hold one clip) of ``side``."""
        last = num_frames - self.span
        start = self.fake_start if side == "fake" and self.fake_start else self.start
        if start == "random":
            return sorted(int(s) for s in rng.integers(0, last + 1, self.clips_per_video))
        if start == "first" or self.clips_per_video == 1:
            return [0] * self.clips_per_video
        return [round(i * last / (self.clips_per_video - 1)) for i in range(self.clips_per_video)]

    def describe(self) -> dict:
        """The fields, as saved with statistics. The paper protocols' fields are left out where unset, so
        that statistics files written before they existed still match their protocol."""
        return {key: value for key, value in asdict(self).items()
                if value is not None or key not in ("fake_start", "min_frames", "name")}


def not_an_input(path: Path) -> UserInputError:
    """The refusal of a side that is none of the inputs FVD takes (nothing there, or another kind of file)."""
    return UserInputError(f"{path}: no such folder, .npy/.npz array or statistics file")


class ClipSource(Dataset):
    """The clips of one ``side`` (``real`` or ``fake``; see the module). Items: ``{"index", "video_id",
    "path", "clips"}`` or, for a video that cannot be read, ``{"index", "video_id", "path", "error"}``.
    ``discarded``: the ids of the videos shorter than ``protocol.min_frames``, left out."""

    def __init__(self, path: str | os.PathLike, protocol: ClipProtocol, *, preprocessed: bool = False,
                 side: str = "real") -> None:
        self.path, self.protocol, self.preprocessed, self.side = Path(path), protocol, preprocessed, side
        self.discarded: list[str] = []
        self.array: np.ndarray | None = None
        self._frame_counts: dict[Path, int] = {}  # taken once: min_frames needs them before the clips do
        if self.path.is_file() and self.path.suffix in (".npy", ".npz"):
            self.array = _load_array(self.path)
            self.ids = [f"{self.path.name}[{i}]" for i in range(len(self.array))]
            self.entries: list[Path] = []
        elif self.path.is_dir():
            self.entries = _videos_or_frame_folders(self.path)
            self.ids = [str(entry.relative_to(self.path)) for entry in self.entries]
        else:
            raise not_an_input(self.path)
        if not self.ids:
            raise UserInputError(f"{self.path}: no videos (or frame folders of .png/.jpg) found")
        if protocol.min_frames is not None:
            self._discard_short_videos(protocol.min_frames)
        if protocol.max_videos is not None:
            self.ids = self.ids[:protocol.max_videos]
        if self.array is not None and self.array.shape[1] < protocol.span:  # every video of it: say so now
            self._clips(0, np.random.default_rng(0))
        if self.array is not None and np.issubdtype(self.array.dtype, np.floating):
            first = np.asarray(self.array[:CONVENTION_CHECK_VIDEOS])
            check_value_convention(first, f"{self.path} (its first {len(first)} videos)", preprocessed)

    def __len__(self) -> int:
        return len(self.ids)

    def video_of(self, index: int) -> str:
        """The video (file, frame folder, or ``array[i]``) of item ``index``, as messages name it."""
        return self.ids[index] if self.array is not None else str(self.path / self.ids[index])

    def _discard_short_videos(self, min_frames: int) -> None:
        """Leave out (and list in ``discarded``) the videos shorter than ``min_frames``, in order; a video
        that cannot be probed stays, to be reported as unreadable when its clips are read."""
        if self.array is not None:  # one length for all
            if self.array.shape[1] < min_frames:
                raise UserInputError(f"{self.path}: its videos have {self.array.shape[1]} frames, fewer than the "
                                     f"protocol's {min_frames}")
            return
        kept = []
        for index, video_id in enumerate(self.ids):
            try:
                long_enough = self._num_frames(index) >= min_frames
            except Exception:  # unreadable: reported with its reason later, as without min_frames
                long_enough = True
            if long_enough:
                kept.append(index)
            else:
                self.discarded.append(video_id)
        if not kept:
            raise UserInputError(f"{self.path}: every video is shorter than the protocol's {min_frames} frames "
                                 f"({len(self.discarded)} discarded)")
        self.entries = [self.entries[index] for index in kept]
        self.ids = [self.ids[index] for index in kept]

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng((self.protocol.seed, index))
        path = str(self.path if self.array is not None else self.entries[index])
        try:
            clips = torch.from_numpy(self._clips(index, rng))
        except UserInputError as error:
            if self.array is not None:
                raise  # an array's videos all have one shape: its problem is everyone's
            return {"index": index, "video_id": self.ids[index], "path": path, "error": str(error)}
        return {"index": index, "video_id": self.ids[index], "path": path, "clips": clips}

    def _clips(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """uint8 ``[K, T, H, W, 3]``."""
        num_frames = self._num_frames(index)
        if num_frames < self.protocol.span:
            raise UserInputError(f"{self.ids[index]}: {num_frames} frames, shorter than a clip of "
                                 f"{self.protocol.frames} frames every {self.protocol.stride} ({self.protocol.span})")
        starts = self.protocol.starts(num_frames, rng, self.side)
        indices = np.concatenate([np.arange(s, s + self.protocol.span, self.protocol.stride) for s in starts])
        frames = self._frames(index, indices)
        return frames.reshape(len(starts), self.protocol.frames, *frames.shape[1:])

    def _num_frames(self, index: int) -> int:
        if self.array is not None:
            return self.array.shape[1]
        entry = self.entries[index]
        if entry not in self._frame_counts:
            self._frame_counts[entry] = len(_frame_files(entry)) if entry.is_dir() else decoding.probe(entry).num_frames
        return self._frame_counts[entry]

    def _frames(self, index: int, indices: np.ndarray) -> np.ndarray:
        if self.array is not None:
            frames = np.ascontiguousarray(self.array[index][indices])
            return frames if self.preprocessed else _check_pixel_range(frames, self.ids[index])
        entry = self.entries[index]
        if not entry.is_dir():
            return decoding.read_frames(entry, indices)
        files = _frame_files(entry)
        try:
            frames = [np.asarray(Image.open(files[i]).convert("RGB")) for i in indices]
        except OSError as error:
            raise UserInputError(f"{entry}: cannot read a frame ({error})") from error
        if len({frame.shape for frame in frames}) > 1:
            raise UserInputError(f"{entry}: frames of different sizes")
        return np.stack(frames)


def _load_array(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r" if path.suffix == ".npy" else None)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        # A text file loads as "pickled data" to NumPy; say what the file should have been instead.
        raise UserInputError(f"{path}: not a NumPy {path.suffix} file of videos [N, T, H, W, 3] nor statistics of "
                             f"--save-stats ({first_line(error)})") from None
    if path.suffix == ".npz":
        if len(loaded.files) != 1:
            raise UserInputError(f"{path}: expected one array in the .npz, found {loaded.files}")
        loaded = loaded[loaded.files[0]]
    if loaded.ndim != 5 or loaded.shape[-1] != 3:
        raise UserInputError(f"{path}: expected videos [N, T, H, W, 3] (RGB), got shape {loaded.shape}")
    return loaded


#: Videos of an array whose values are looked at before anything is embedded.
CONVENTION_CHECK_VIDEOS = 8


def check_value_convention(videos: np.ndarray | torch.Tensor, what: str, preprocessed: bool) -> None:
    """Refuse float ``videos`` whose values say they are in the other convention than ``preprocessed``
    claims: pixels 0..255 are expected without it, network-ready [-1, 1] with it. [-1, 1] or [0, 1]
    videos read as pixels would be nearly black and give a meaningless FVD (an FVD of about 2 was reported
    from that mistake). Constant videos (all zeros, say) fit both and pass."""
    if not (videos.is_floating_point() if isinstance(videos, torch.Tensor) else np.issubdtype(videos.dtype,
                                                                                                np.floating)):
        return
    low, high = float(videos.min()), float(videos.max())
    in_unit_range = low >= -1 - MODEL_RANGE_TOLERANCE and high <= 1 + MODEL_RANGE_TOLERANCE
    if not preprocessed and in_unit_range and high > low:
        raise UserInputError(f"{what}: values span [{low:.3g}, {high:.3g}], not pixels 0..255: scale [0, 1] videos "
                             f"by 255 and [-1, 1] videos by (x + 1) * 127.5, or give network-ready "
                             f"[N, T, 224, 224, 3] [-1, 1] videos as preprocessed (--preprocessed)")
    if preprocessed and not in_unit_range:
        raise UserInputError(f"{what}: values span [{low:.3g}, {high:.3g}], but preprocessed videos "
                             f"(--preprocessed) are network-ready [-1, 1]: leave it out for pixels 0..255")


def _check_pixel_range(frames: np.ndarray, name: str) -> np.ndarray:
    """``frames`` as they are, if their values are pixels 0..255 (uint8 or float)."""
    if frames.dtype == np.uint8:
        return frames
    low, high = float(frames.min()), float(frames.max())
    if low < 0 or high > 255:
        raise UserInputError(f"{name}: values must be 0..255, got [{low:.3g}, {high:.3g}] (network-ready [-1, 1] "
                             f"arrays need --preprocessed)")
    return frames.astype(np.float32)


def _videos_or_frame_folders(root: Path) -> list[Path]:
    videos = [record.path for record in video_files(root).records]
    folders = sorted({path.parent for path in root.rglob("*") if path.suffix.lower() in FRAME_EXTENSIONS})
    return videos or folders


def _frame_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in FRAME_EXTENSIONS)
