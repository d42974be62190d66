"""Compute TV-L1 optical flow of videos the way the release did, stored as flow_x/flow_y JPEGs.

    i3d-extract-flow VIDEOS_DIR OUT_DIR [--fps 25] [--short-side 256] [--layout relative|stem]
        [--backend torch|opencv] [--batch 8] [--device auto] [--workers N]

Per video: frames resampled to ``--fps`` and resized so the shorter side is ``--short-side``, turned
to greyscale; TV-L1 between consecutive frames, by ``--backend torch`` (``i3d_lightning.flow.tvl1``:
``--batch`` pairs at a time on ``--device``; one process, which uses every core, unless ``--workers``)
or ``opencv`` (OpenCV's own, from opencv-contrib, one pair at a time; ``--workers`` processes, one per
core by default); flow clipped to [-20, 20] and written as ``OUT_DIR/<video id>/flow_{x,y}_00001.jpg
...`` (0..255 = -20..20). The video id is the path below VIDEOS_DIR without extension (``--layout
relative``, as UCF101, HMDB51 and custom datasets expect) or the file name's stem (``--layout stem``, as
Kinetics expects).

Resumable: a finished video's folder is complete (written under a temporary name, renamed at the
end) and is skipped on the next run. Videos that fail are listed in ``OUT_DIR/skipped_videos.csv``
(``video_id,path,reason``, as every command lists what it skipped; exit status 3).
The two backends agree to ~0.02 px mean end-point error (docs/data.md, Optical flow).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from i3d_lightning.cli import finished, number, run_reporting_errors, whole_number, writable_folder
from i3d_lightning.data.annotations import VIDEO_EXTENSIONS
from i3d_lightning.errors import UserInputError
from i3d_lightning.flow.writer import opencv_pairs, torch_pairs, video_id, write_flow_folder
from i3d_lightning.hardware import resolve_device
from i3d_lightning.preprocessing import RELEASE_FPS, RELEASE_SHORT_SIDE
from i3d_lightning.runtime.skip_report import SKIPPED_VIDEOS, SkipReport

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


def _job(task: tuple[Path, Path, float | None, int, argparse.Namespace]) -> tuple[str, str | None]:
    path, target, fps, short_side, args = task
    try:
        if args.backend == "opencv":
            flow_of_pairs = opencv_pairs()
        else:
            flow_of_pairs = torch_pairs(args.batch, torch.device(args.device))
        write_flow_folder(path, target, fps, short_side, flow_of_pairs, _count_frames, on_total=_count_total,
                          pairs_per_write=args.batch if args.backend == "torch" else PAIRS_PER_WRITE)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i3d-extract-flow", description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fps", type=number(0), default=RELEASE_FPS, help="0 keeps each video's rate")
    parser.add_argument("--short-side", type=whole_number(2), default=RELEASE_SHORT_SIDE)
    parser.add_argument("--backend", choices=("torch", "opencv"), default="torch")
    parser.add_argument("--batch", type=whole_number(1), default=8,
                        help="frame pairs per TV-L1 call (torch backend; beyond about 8 gains nothing on a 2-core CPU, "
                             "a GPU wants more), also how often the progress line moves")
    parser.add_argument("--device", default="auto", help="torch backend: cpu, cuda, cuda:N or auto")
    parser.add_argument("--workers", type=whole_number(1),
                        help="processes (default: 1 for torch, one per core for opencv)")
    parser.add_argument("--layout", choices=("relative", "stem"), default="relative",
                        help="the flow folder of each video: relative = its path below VIDEOS_DIR without extension "
                             "(UCF101, HMDB51, custom datasets); stem = its file name without extension (Kinetics)")
    args = parser.parse_args(argv)
    return run_reporting_errors(extract, args)


def extract(args: argparse.Namespace) -> int:
    args.device = str(resolve_device(args.device))
    if args.workers is None:
        args.workers = 1 if args.backend == "torch" else os.cpu_count() or 1
    if args.videos.is_file():
        raise UserInputError(f"{args.videos} is a file: VIDEOS_DIR is a folder of videos (searched recursively)")
    if not args.videos.is_dir():
        raise UserInputError(f"{args.videos}: no such folder")
    videos = sorted(p for p in args.videos.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise UserInputError(f"{args.videos}: no videos found (extensions: {', '.join(VIDEO_EXTENSIONS)})")
    writable_folder(args.out, "OUT_DIR")
    tasks, done = [], 0
    for path in videos:
        target = args.out / video_id(path, args.videos, args.layout)
        if target.is_dir():
            done += 1
        else:
            tasks.append((path, target, args.fps or None, args.short_side, args))
    print(f"{len(videos)} videos, {done} already done, {len(tasks)} to compute")
    failed = SkipReport(announce=False)
    # spawn: each worker opens its own decoder and TV-L1 state; nothing is inherited from this process.
    context = get_context("spawn")
    written, total = context.Value("q", 0), context.Value("q", 0)
    if args.workers == 1:
        _start_process(written, total, torch.get_num_threads())
        results = map(_job, tasks)
        pool = None
    else:
        pool = context.Pool(args.workers, initializer=_start_process,
                            initargs=(written, total, max(1, (os.cpu_count() or 1) // args.workers)))
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
                failed.add([(video_id(Path(path), args.videos, args.layout), path, reason)])
    finally:
        stop.set()
        follower.join()
        videos_bar.close()
        frames_bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    listed = failed.write(args.out / SKIPPED_VIDEOS)  # with its header alone when none failed
    return finished(len(failed), f"in {listed}")


if __name__ == "__main__":
    sys.exit(main())
