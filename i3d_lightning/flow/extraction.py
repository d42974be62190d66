"""Flow folders of a folder of videos, as ``i3d-extract-flow`` makes them: TV-L1 of each video
(:func:`~i3d_lightning.flow.writer.write_flow_folder`), one process or several, with one progress line in
videos and one in flow frames (summed over the processes), a video that fails set aside and listed.

A finished video's folder is complete (written under a temporary name, renamed at the end), so a
video whose folder exists is done, and a rerun computes only the others.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from i3d_lightning.errors import UserInputError
from i3d_lightning.flow.writer import opencv_pairs, torch_pairs, video_id, write_flow_folder
from i3d_lightning.hardware import resolve_device
from i3d_lightning.preprocessing import RELEASE_FPS, RELEASE_SHORT_SIDE
from i3d_lightning.runtime.skip_report import SkipReport
from i3d_lightning.settings import check_settings, setting
from i3d_lightning.video.decoding import VIDEO_EXTENSIONS

BACKENDS = ("torch", "opencv")
#: How a video's flow folder is named: its path below the videos' folder without extension (UCF101,
#: HMDB51, custom datasets), or its file name without extension (Kinetics).
LAYOUTS = ("relative", "stem")


@dataclass(frozen=True)
class FlowOptions:
    """Frames at ``fps`` (0: the video's own rate) resized to ``short_side``; TV-L1 by ``backend``
    (``torch``: ``batch`` pairs per call on ``device``; ``opencv``: OpenCV's, one pair at a time) in
    ``workers`` processes (``None``: 1 for torch, which uses every core, one per core for opencv); the
    folders named by ``layout``."""

    fps: float = setting(RELEASE_FPS, minimum=0)
    short_side: int = setting(RELEASE_SHORT_SIDE, minimum=2)
    backend: str = setting("torch", choices=BACKENDS)
    batch: int = setting(8, minimum=1)
    device: str = "auto"
    workers: int | None = setting(None, minimum=1)
    layout: str = setting("relative", choices=LAYOUTS)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class FlowReport:
    """What :func:`extract_flow` did: videos found, those already done before, the ones that failed."""

    videos: int
    already_done: int
    skipped: SkipReport


def videos_below(folder: Path) -> list[Path]:
    """The videos below ``folder`` (searched recursively), sorted; one line if there are none."""
    if folder.is_file():
        raise UserInputError(f"{folder} is a file: VIDEOS_DIR is a folder of videos (searched recursively)")
    if not folder.is_dir():
        raise UserInputError(f"{folder}: no such folder")
    videos = sorted(path for path in folder.rglob("*") if path.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise UserInputError(f"{folder}: no videos found (extensions: {', '.join(VIDEO_EXTENSIONS)})")
    return videos


def extract_flow(videos: Sequence[Path], videos_dir: Path, out: Path, options: FlowOptions = FlowOptions(), *,
                 verbose: bool = False) -> FlowReport:
    """Write the flow folder of each of ``videos`` (:func:`videos_below` ``videos_dir``, which names their
    folders) that has none under ``out`` yet; ``verbose``: say how many are left to do."""
    workers = options.workers or (1 if options.backend == "torch" else os.cpu_count() or 1)
    options = replace(options, device=str(resolve_device(options.device)), workers=workers)
    tasks = [(path, out / video_id(path, videos_dir, options.layout), options) for path in videos]
    tasks = [task for task in tasks if not task[1].is_dir()]
    if verbose:
        print(f"{len(videos)} videos, {len(videos) - len(tasks)} already done, {len(tasks)} to compute")
    failed = SkipReport(announce=False)
    for path, reason in _run_jobs(tasks, options.workers):
        failed.add([(video_id(Path(path), videos_dir, options.layout), path, reason)])
    return FlowReport(len(videos), len(videos) - len(tasks), failed)


def _run_jobs(tasks: list[tuple[Path, Path, FlowOptions]], workers: int) -> list[tuple[str, str]]:
    """Run the jobs (``workers`` processes), with the two progress lines; returns the failures."""
    failed = []
    # spawn: each worker opens its own decoder and TV-L1 state; nothing is inherited from this process.
    context = get_context("spawn")
    written, total = context.Value("q", 0), context.Value("q", 0)
    if workers == 1:
        _start_process(written, total, torch.get_num_threads())
        results = map(_job, tasks)
        pool = None
    else:
        pool = context.Pool(workers, initializer=_start_process,
                            initargs=(written, total, max(1, (os.cpu_count() or 1) // workers)))
        results = pool.imap_unordered(_job, tasks)
    videos_bar = tqdm(total=len(tasks), unit="video", desc="flow", position=0)
    # A long video takes minutes: a second line counts its flow frames as they are written, out of the
    # frames of the videos started (so an ETA shows within a video).
    frames_bar = tqdm(total=0, unit="frame", desc="flow frames", position=1)
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(written, total, frames_bar, stop), daemon=True)
    follower.start()
    try:
        for path, reason in results:
            videos_bar.update()
            if reason is not None:
                failed.append((path, reason))
    finally:
        stop.set()
        follower.join()
        videos_bar.close()
        frames_bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return failed


#: Flow frames written by all processes, and those the videos started so far will have: shared counters
#: behind the progress line (set by _start_process).
_frames_written = None
_frames_total = None


def _start_process(written, total, threads: int) -> None:
    global _frames_written, _frames_total
    _frames_written, _frames_total = written, total
    torch.set_num_threads(threads)


def _count_frames(count: int) -> None:
    with _frames_written.get_lock():
        _frames_written.value += count


def _count_total(count: int) -> None:
    with _frames_total.get_lock():
        _frames_total.value += count


def _job(task: tuple[Path, Path, FlowOptions]) -> tuple[str, str | None]:
    path, target, options = task
    try:
        if options.backend == "opencv":
            flow_of_pairs = opencv_pairs()
        else:
            flow_of_pairs = torch_pairs(options.batch, torch.device(options.device))
        write_flow_folder(path, target, options.fps or None, options.short_side, flow_of_pairs, _count_frames,
                          on_total=_count_total,
                          pairs_per_write=options.batch if options.backend == "torch" else PAIRS_PER_WRITE)
        return str(path), None
    except Exception as error:  # one bad video must not stop the others; it is listed instead
        return str(path), f"{type(error).__name__}: {error}".splitlines()[0]


#: Flow frames written between two moves of the progress line (OpenCV's backend, one pair per call).
PAIRS_PER_WRITE = 8


def _follow(written, total, bar: tqdm, stop: threading.Event, every: float = 0.5) -> None:
    """Show the shared counters on ``bar`` every ``every`` seconds until ``stop`` (and once after): frames
    written out of those of the videos started, so one long video shows its progress and an ETA."""
    while True:
        stopping = stop.wait(every)
        if total.value != bar.total:
            bar.total = total.value
        bar.update(written.value - bar.n)
        if stopping:
            return
