"""Extract I3D features (pooled Mixed_5c, 1024-d) of videos, per sliding window or per video.

    i3d-extract-features VIDEOS_DIR_OR_LIST OUT_DIR [--stream rgb|flow|joint] [--fps 25|native]
        [--window 16 --stride 16 | --per-video] [--crops 1|10] [--precision 32|tf32|bf16] [--batch-size B] ...
    i3d-extract-features VIDEOS OUT_DIR --preset thumos14|activitynet [--crops 1|10]
    i3d-extract-features --dataset ucf101 --set dataset.root=/data/ucf101 OUT_DIR ...

Writes ``OUT_DIR/<modality>/<video id>.npy`` (``[N, 1024]`` windows or ``[1024]``; with a preset, one
``OUT_DIR/<video id>.npy`` of ``[T, 2048]``, rgb first), ``OUT_DIR/index.csv``, ``OUT_DIR/conventions.json``
and ``OUT_DIR/skipped_videos.csv`` (see :mod:`i3d_lightning.features.extraction` and
:mod:`i3d_lightning.features.presets`). Resumable: videos already extracted are skipped; the exit status
is 3 when some videos could not be read. With several GPUs (``--devices N``), Lightning's predict loop
shares the videos between them. Frames are resampled to 25 fps (``--fps``), resized (shorter side 256)
and centre-cropped (224; ``--crops 10``: the corners, the centre and their mirror images, averaged), as
the release preprocessed its inputs.
Workers send uint8 frames; the scaling runs on the device, ``--batch-size`` windows per network call
(default 32 on a GPU, 8 on the CPU), in IEEE fp32 unless ``--precision`` says otherwise. Flow comes from
``--flow-root`` (or the dataset's flow folders), or is computed from the videos (``--flow-source
online``, the default without flow folders).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from i3d_lightning.cli import (
    add_inference_arguments,
    finished,
    hydra_configs,
    inference_options,
    run_reporting_errors,
    whole_number,
    writable_folder,
)
from i3d_lightning.data.annotations import VideoList, video_files
from i3d_lightning.errors import UserInputError
from i3d_lightning.features.presets import FEATURE_PRESETS, feature_preset
from i3d_lightning.features.settings import CROP_COUNTS, ExtractionSettings
from i3d_lightning.models.i3d import MIN_FRAMES, MIN_SIZE
from i3d_lightning.models.streams import STREAMS
from i3d_lightning.preprocessing import RELEASE_CROP_SIZE, RELEASE_FPS, RELEASE_SHORT_SIDE
from i3d_lightning.weights import WeightsSource


def dataset_videos(name: str, overrides: list[str]) -> tuple[VideoList, str | None]:
    """Every video of every split of a dataset config (``configs/dataset/<name>.yaml``)."""
    from hydra import compose
    from hydra.utils import instantiate

    with hydra_configs():  # i3d-eval's
        cfg = compose(config_name="eval", overrides=[f"dataset={name}", *overrides])
    source = instantiate(cfg.dataset, _convert_="object")
    source.prepare()
    records = {}
    for stage in ("train", "val", "test"):
        try:
            for record in source.video_list(stage).records:
                records.setdefault(record.video_id, record)
        except UserInputError:
            continue  # a split this dataset does not have
    return VideoList(list(records.values()), []), source.flow_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i3d-extract-features", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, help="folder of videos, one video, or a path[,label] list")
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", help="a dataset config instead of SOURCE (e.g. ucf101)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--preset", choices=sorted(FEATURE_PRESETS),
                        help="an action-localization feature convention (fixes --stream, --fps, --window, "
                             "--stride; see docs/features.md)")
    parser.add_argument("--stream", choices=sorted(STREAMS), help="default: rgb (joint with a preset)")
    parser.add_argument("--weights-rgb", default="rgb_imagenet")
    parser.add_argument("--weights-flow", default="flow_imagenet")
    parser.add_argument("--mirror", help="local copy of the release's data/ folder (see docs/weights.md)")
    parser.add_argument("--flow-root", help="precomputed flow folders (i3d-extract-flow)")
    parser.add_argument("--flow-source", choices=("stored", "online"),
                        help="flow from the flow folders or computed from the videos (TV-L1; on the GPU if "
                             "there is one); default: stored when there are flow folders, else online")
    parser.add_argument("--fps", type=frame_rate, help=f"frames per second the windows count ('native': the "
                                                         f"video's own; default {RELEASE_FPS:g})")
    parser.add_argument("--window", type=whole_number(1),
                        help=f"frames per window (default 16, at least {MIN_FRAMES})")
    parser.add_argument("--stride", type=whole_number(1), help="frames from one window to the next (default 16)")
    parser.add_argument("--per-video", action="store_true", help="one vector per video instead of windows")
    parser.add_argument("--crops", type=int, choices=CROP_COUNTS, default=1,
                        help="1: the centre crop; 10: four corners, centre and their mirror images, averaged")
    parser.add_argument("--short-side", type=whole_number(MIN_SIZE), default=RELEASE_SHORT_SIDE)
    parser.add_argument("--crop", type=whole_number(MIN_SIZE), default=RELEASE_CROP_SIZE)
    add_inference_arguments(parser, per_call="windows")
    args = parser.parse_args(argv)
    return run_reporting_errors(run, args)


def frame_rate(text: str) -> float | str:
    """``--fps``: a positive number, or ``native`` (every frame of the video)."""
    if text == "native":
        return text
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame rate: give a positive number or 'native'")
    return value


def settings_from(args: argparse.Namespace) -> ExtractionSettings:
    """The extraction's settings: ``--preset``'s, refusing options that contradict it, or the options'."""
    weights = {"rgb": args.weights_rgb, "flow": args.weights_flow}
    if args.preset is None:  # the options given; ExtractionSettings holds the defaults of the others
        given = {key: value for key, value in (("stream", args.stream), ("window", args.window),
                                               ("stride", args.stride)) if value is not None}
        if args.fps is not None:
            given["fps"] = None if args.fps == "native" else args.fps
        if args.per_video:
            given["window"] = None
        return ExtractionSettings(**given, crops=args.crops, short_side=args.short_side, crop_size=args.crop,
                                  weights=weights)
    fixed = {"--stream": args.stream, "--fps": args.fps, "--window": args.window, "--stride": args.stride,
             "--per-video": args.per_video or None}
    given = [option for option, value in fixed.items() if value is not None]
    if given:
        raise UserInputError(f"--preset {args.preset} fixes {', '.join(given)} "
                             f"({feature_preset(args.preset).describe()}); drop {'it' if len(given) == 1 else 'them'}, "
                             f"or leave out --preset")
    return ExtractionSettings.from_preset(args.preset, crops=args.crops, short_side=args.short_side,
                                          crop_size=args.crop, weights=weights)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.dataset:
        videos, flow_root = dataset_videos(args.dataset, args.set)
    elif args.source is not None and args.source.exists():
        videos, flow_root = video_files(args.source).require_videos(str(args.source)), None
    else:
        raise UserInputError(f"{args.source}: no such folder, video or list (or give --dataset NAME)")
    # Imported only now: Lightning (~4 s to import on 2 cores) is for the run, not for --help or a refused option.
    from i3d_lightning.features.run import extract_features

    created = not args.out.exists()
    try:
        report = extract_features(videos, writable_folder(args.out, "OUT"), settings,
                         source=WeightsSource(mirror=args.mirror, mirror_option="--mirror DIR"),
                         flow_root=args.flow_root or flow_root, flow_source=args.flow_source,
                         options=inference_options(args), verbose=True)
    except UserInputError:
        # Refused: a folder this command made goes too, unless features were written into it already.
        if created and not any(args.out.rglob("*.npy")):
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    if report.index is None:  # not the first process of a multi-GPU run: that one reports
        return 0
    print(f"index written to {report.index}")
    return finished(len(report.skipped), f"in {args.out / 'skipped_videos.csv'}")


if __name__ == "__main__":
    sys.exit(main())
