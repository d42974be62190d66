"""Find the videos of a dataset that cannot be decoded, before they cost a training run.

    i3d-check-videos VIDEOS_DIR_OR_LIST [--out skipped_videos.csv] [--access access.csv] [--workers 8]
        [--timeout 60]

Every video (found recursively below a folder, one video, or listed one per line as ``path[,label]``)
is opened and its first, middle and last frames decoded in a separate process with a timeout, so a file
that crashes or hangs the decoder is reported instead of stopping the scan. Failures go to ``--out``
(``video_id,path,reason``: the layout of every command's list of skipped videos); the exit status is 3
when any video failed (the tools' "done, but inputs were skipped" status). It also says how many videos
are read frame-accurately rather than by decord's seek (``timestamps``: open GOPs; ``sequential``: AVI
with B-frames, decoded from the start, which costs time on long videos), and ``--access`` lists each
video's way (docs/data.md, "Exact frames").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from i3d_lightning.atomic_files import write_csv
from i3d_lightning.cli import finished, number, run_reporting_errors, whole_number, writable_file
from i3d_lightning.data.annotations import video_files
from i3d_lightning.errors import UserInputError
from i3d_lightning.runtime.skip_report import SKIPPED_VIDEOS, SkipReport
from i3d_lightning.video.checking import check_videos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i3d-check-videos", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder of videos (searched recursively), one video, or a list file")
    parser.add_argument("--out", type=Path, default=Path(SKIPPED_VIDEOS))
    parser.add_argument("--access", type=Path, help="also write path,access (seek, timestamps, sequential) per video")
    parser.add_argument("--workers", type=whole_number(1), default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=number(0, above=True), default=60.0, help="seconds per video")
    args = parser.parse_args(argv)
    return run_reporting_errors(check_all, args)


def check_all(args: argparse.Namespace) -> int:
    """Check every video of ``args.source`` (``--workers`` at a time); list the failures in ``--out``."""
    if not args.source.exists():
        raise UserInputError(f"{args.source}: no such folder, video or list file")
    writable_file(args.out, "--out")
    if args.access:
        writable_file(args.access, "--access")
    records = video_files(args.source).require_videos(str(args.source)).records
    checks = check_videos([record.path for record in records], timeout=args.timeout, workers=args.workers)
    failed = SkipReport(announce=False)
    failed.add([(record.video_id, str(check.path), check.reason)
                for record, check in zip(records, checks, strict=True) if check.reason is not None])
    access = [(str(check.path), check.access) for check in checks if check.reason is None]
    print(f"{len(records)} videos checked, {len(failed)} failed; list written to {args.out}")
    print(_access_summary([mode for _, mode in access]))
    failed.write(args.out)
    if args.access:
        write_csv(args.access, ("path", "access"), sorted(access))
    return finished(len(failed), f"in {args.out}")


ACCESS_WORDS = {"seek": "by decord's seek",
                "timestamps": "frame-accurately by timestamps (open GOPs, where decord's seek is off)",
                "sequential": "frame-accurately from the start (AVI with B-frames, where decord's seek takes other "
                              "frames; the cost grows with the position in the video)"}


def _access_summary(modes: list[str]) -> str:
    """One line: how many readable videos are read each way."""
    counts = [(modes.count(mode), words) for mode, words in ACCESS_WORDS.items() if modes.count(mode)]
    return "frames read " + "; ".join(f"{words}: {count}" for count, words in counts) if counts else \
        "no readable video"


if __name__ == "__main__":
    sys.exit(main())
