"""Extract I3D features (pooled Mixed_5c, 1024-d) of videos, per sliding window or per video.

    i3d-extract-features VIDEOS_DIR_OR_LIST OUT_DIR [--stream rgb|flow|joint] [--fps 25|native]
        [--window 16 --stride 16 | --per-video] [--crops 1|10] [--precision 32|tf32|bf16] [--batch-size B] ...
    i3d-extract-features VIDEOS OUT_DIR --preset thumos14|activitynet [--crops 1|10]
    i3d-extract-features --dataset ucf101 --set dataset.root=/data/ucf101 OUT_DIR ...

Writes ``OUT_DIR/<modality>/<video id>.npy`` (``[N, 1024]`` windows or ``[1024]``; with a preset, one
``OUT_DIR/<video id>.npy`` of ``[T, 2048]``, rgb first), ``OUT_DIR/index.csv``, ``OUT_DIR/conventions.json``
and ``OUT_DIR/failed_videos.csv`` (see :mod:`i3d_lightning.features.extraction` and
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
import sys
from pathlib import Path

import pytorch_lightning as pl

from i3d_lightning.cli import finished, run_reporting_errors, whole_number, writable_folder
from i3d_lightning.data.annotations import VideoList, video_files
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset
from i3d_lightning.errors import UserInputError
from i3d_lightning.features.extraction import (
    CROP_COUNTS,
    FeatureExtractor,
    check_conventions,
    output_names,
    pending,
    write_index,
)
from i3d_lightning.features.presets import FEATURE_PRESETS, feature_preset
from i3d_lightning.flow.online import OnlineFlow
from i3d_lightning.hardware import available_cpus
from i3d_lightning.models.i3d import MIN_FRAMES, MIN_SIZE
from i3d_lightning.models.inference import PRECISIONS
from i3d_lightning.models.streams import STREAMS, modalities_of
from i3d_lightning.preprocessing import RELEASE_CROP_SIZE, RELEASE_FPS, RELEASE_SHORT_SIDE
from i3d_lightning.runtime.video_inference import default_batch_size, uses_cuda, video_loader
from i3d_lightning.weights import WeightsSource, stream_towers


def dataset_videos(name: str, overrides: list[str]) -> tuple[VideoList, str | None]:
    """Every video of every split of a dataset config (``configs/dataset/<name>.yaml``)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    configs = Path(__file__).resolve().parents[2] / "configs"  # the repository's, beside train.py
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
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
    parser.add_argument("source", nargs="?", type=Path, help="folder of videos or a path[,label] list")
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
    parser.add_argument("--precision", choices=PRECISIONS, default="32",
                        help="32: IEEE fp32 (also on GPUs); tf32: CUDA TF32; bf16: autocast")
    parser.add_argument("--batch-size", type=whole_number(1),
                        help="windows per network call (default: 32 on a GPU, 8 on the CPU)")
    parser.add_argument("--no-fast", action="store_true", help="run the plain model, not the fast inference path")
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--workers", type=whole_number(0), default=min(2, available_cpus()))
    args = parser.parse_args(argv)
    return run_reporting_errors(extract, args)


def frame_rate(text: str) -> float | None:
    """``--fps``: a positive number, or ``native`` (None: every frame of the video)."""
    if text == "native":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame rate: give a positive number or 'native'")
    return value


def apply_preset(args: argparse.Namespace) -> None:
    """Fill ``args`` from ``--preset`` (or the defaults), refusing options that contradict the preset."""
    if args.preset is None:
        args.stream = args.stream or "rgb"
        args.fps = RELEASE_FPS if args.fps is None else args.fps
        args.window, args.stride = args.window or 16, args.stride or 16
        args.concatenate = False
        return
    preset = feature_preset(args.preset)
    fixed = {"--stream": args.stream, "--fps": args.fps, "--window": args.window, "--stride": args.stride,
             "--per-video": args.per_video or None}
    given = [option for option, value in fixed.items() if value is not None]
    if given:
        raise UserInputError(f"--preset {preset.name} fixes {', '.join(given)} ({preset.describe()}); drop "
                             f"{'it' if len(given) == 1 else 'them'}, or leave out --preset")
    args.stream, args.fps, args.window, args.stride = preset.stream, preset.fps, preset.window, preset.stride
    args.concatenate = True


def conventions(args: argparse.Namespace, modalities: tuple[str, ...]) -> dict[str, object]:
    """What makes the features of one extraction comparable with another's (``conventions.json``)."""
    windows = {"window": None, "stride": None} if args.per_video else {"window": args.window, "stride": args.stride}
    return {"preset": args.preset, "stream": args.stream, "fps": args.fps, **windows, "crops": args.crops,
            "short_side": args.short_side, "crop_size": args.crop,
            "weights": {modality: getattr(args, f"weights_{modality}") for modality in modalities},
            "layout": "[T, 2048] per video, rgb first" if args.concatenate else "[T, 1024] per modality"}


def extract(args: argparse.Namespace) -> int:
    apply_preset(args)
    if args.dataset:
        videos, flow_root = dataset_videos(args.dataset, args.set)
    elif args.source is not None and args.source.exists():
        videos, flow_root = video_files(args.source), None
    else:
        raise UserInputError(f"{args.source}: no such folder or list (or give --dataset NAME)")
    streams = modalities_of(args.stream)
    flow_root = args.flow_root or flow_root
    if args.window < MIN_FRAMES and not args.per_video:
        raise UserInputError(f"--window must be at least {MIN_FRAMES} frames (I3D's minimum)")
    writable_folder(args.out, "OUT")
    outputs = output_names(streams, args.concatenate)
    check_conventions(args.out, conventions(args, streams))
    todo = pending(videos.records, args.out, outputs)
    print(f"{len(videos.records)} videos, {len(videos.records) - len(todo)} already extracted, {len(todo)} to do")
    towers = stream_towers(streams, {"rgb": args.weights_rgb, "flow": args.weights_flow},
                           source=WeightsSource(mirror=args.mirror))
    if todo:
        trainer = pl.Trainer(accelerator="auto", devices=args.devices, logger=False, enable_checkpointing=False,
                             enable_model_summary=False)
        on_gpu = uses_cuda(trainer)
        # Ten crops are taken per window by the extractor, from the uncropped frames.
        sampling = ClipSampling(train=False, whole_video=True, fps=args.fps, short_side=args.short_side,
                                crop_size=args.crop if args.crops == 1 else None)
        flow_source = args.flow_source or ("stored" if flow_root else "online")
        online = OnlineFlow(where="device" if on_gpu else "workers")
        dataset = VideoClipDataset(todo, sampling, modalities=streams, flow_root=flow_root, flow_source=flow_source,
                                   online_flow=online, flow_on_device=online.where == "device", rgb_as_uint8=True)
        # One whole video per step: the extractor packs the windows of consecutive videos into its calls.
        loader = video_loader(dataset, videos_per_step=1, workers=args.workers, pin_memory=on_gpu)
        extractor = FeatureExtractor(towers, args.out, window=None if args.per_video else args.window,
                                     stride=args.stride, crops=args.crops, crop_size=args.crop,
                                     concatenate=args.concatenate, precision=args.precision, fast=not args.no_fast,
                                     batch_size=args.batch_size or default_batch_size("cuda" if on_gpu else "cpu"),
                                     online_flow=online)
        trainer.predict(extractor, dataloaders=loader, return_predictions=False)
        if not trainer.is_global_zero:
            return 0
        if len(extractor.skipped):
            extractor.skipped.write(args.out / "failed_videos.csv")
    print(f"index written to {write_index(args.out, outputs)}")
    return finished(len(extractor.skipped) if todo else 0, f"in {args.out / 'failed_videos.csv'}")


if __name__ == "__main__":
    sys.exit(main())
