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
import sys
from pathlib import Path

from i3d_lightning.cli import finished, number, run_reporting_errors, whole_number, writable_folder
from i3d_lightning.flow.extraction import BACKENDS, LAYOUTS, FlowOptions, extract_flow, videos_below
from i3d_lightning.preprocessing import RELEASE_FPS, RELEASE_SHORT_SIDE
from i3d_lightning.runtime.skip_report import SKIPPED_VIDEOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i3d-extract-flow", description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fps", type=number(0), default=RELEASE_FPS, help="0 keeps each video's rate")
    parser.add_argument("--short-side", type=whole_number(2), default=RELEASE_SHORT_SIDE)
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    parser.add_argument("--batch", type=whole_number(1), default=8,
                        help="frame pairs per TV-L1 call (torch backend; beyond about 8 gains nothing on a 2-core CPU, "
                             "a GPU wants more), also how often the progress line moves")
    parser.add_argument("--device", default="auto", help="torch backend: cpu, cuda, cuda:N or auto")
    parser.add_argument("--workers", type=whole_number(1),
                        help="processes (default: 1 for torch, one per core for opencv)")
    parser.add_argument("--layout", choices=LAYOUTS, default="relative",
                        help="the flow folder of each video: relative = its path below VIDEOS_DIR without extension "
                             "(UCF101, HMDB51, custom datasets); stem = its file name without extension (Kinetics)")
    args = parser.parse_args(argv)
    return run_reporting_errors(run, args)


def run(args: argparse.Namespace) -> int:
    """The flow folders of ``args.videos`` (:func:`~i3d_lightning.flow.extraction.extract_flow`); the failures
    listed in ``OUT_DIR/skipped_videos.csv``."""
    options = FlowOptions(fps=args.fps, short_side=args.short_side, backend=args.backend, batch=args.batch,
                          device=args.device, workers=args.workers, layout=args.layout)
    videos = videos_below(args.videos)  # no videos: refused before OUT_DIR is made
    writable_folder(args.out, "OUT_DIR")
    report = extract_flow(videos, args.videos, args.out, options, verbose=True)
    listed = report.skipped.write(args.out / SKIPPED_VIDEOS)  # with its header alone when none failed
    return finished(len(report.skipped), f"in {listed}")


if __name__ == "__main__":
    sys.exit(main())
