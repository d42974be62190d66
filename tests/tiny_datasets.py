"""Tiny copies of each supported dataset layout, with real videos and precomputed flow folders, and
the Hydra overrides that point the real configs at them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from i3d_lightning.flow.stored import flow_file
from tests.videos import write_frames

FRAMES = 12
SIZE = 200  # I3D needs 193x193; videos are resized at decode to the configured shorter side

#: Overrides that make the real configs cheap: small clips, tiny batches, random weights, no workers.
FAST = [
    "data.num_workers=0", "data.batch_size=2", "data.check_videos=2",
    "data.clip.clip_len=9", "data.clip.short_side=193", "data.clip.crop_size=193",
    "weights.rgb=null", "weights.flow=null", "model.eval_chunk=2", "trainer.enable_progress_bar=false",
    "trainer.precision=32",  # not auto: the same numerics on every CPU (auto takes bf16 where there is AMX)
]


def _video(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (FRAMES, SIZE // 8, SIZE // 8, 3), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
    write_frames(path, frames)
    return path.stem


def _flow(folder: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(FRAMES - 1):
        for axis in ("x", "y"):
            Image.fromarray(rng.integers(100, 156, (193, 193), dtype=np.uint8)).save(flow_file(folder, axis, index))


def make_tiny_datasets(root: Path) -> dict[str, list[str]]:
    """Write every layout under ``root``; returns ``{dataset config name: overrides}``."""
    seed = iter(range(10_000))
    overrides: dict[str, list[str]] = {}

    ucf = root / "ucf101"
    lists = ucf / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    train, test = [], []
    for label, name in enumerate(("ApplyEyeMakeup", "YoYo"), 1):
        for group in (1, 8):
            relative = f"{name}/v_{name}_g0{group}_c01"
            _video(ucf / "UCF-101" / f"{relative}.avi", next(seed))
            _flow(root / "ucf101_flow" / relative, next(seed))
            (train if group == 8 else test).append(f"{relative}.avi" + (f" {label}" if group == 8 else ""))
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test) + "\n")
    overrides["ucf101"] = [f"dataset.root={ucf}", f"dataset.flow_root={root / 'ucf101_flow'}"]

    hmdb = root / "hmdb51"
    (hmdb / "testTrainMulti_7030_splits").mkdir(parents=True)
    for name in ("brush_hair", "wave"):
        lines = []
        for index, tag in enumerate((1, 2, 1)):
            _video(hmdb / "videos" / name / f"{name}_{index}.avi", next(seed))
            _flow(root / "hmdb51_flow" / name / f"{name}_{index}", next(seed))
            lines.append(f"{name}_{index}.avi {tag}")
        (hmdb / "testTrainMulti_7030_splits" / f"{name}_test_split1.txt").write_text("\n".join(lines) + "\n")
    overrides["hmdb51"] = [f"dataset.root={hmdb}", f"dataset.flow_root={root / 'hmdb51_flow'}"]

    for name, labels in (("kinetics400", ("abseiling", "zumba")), ("kinetics600", ("abseiling", "zumba"))):
        folder = root / name
        rows = {"train": [], "val": []}
        for index, label in enumerate(labels * 2):
            split = "train" if index < 2 else "val"
            stem = f"yt{index}{name[-3:]}_{index:06d}_{index + 10:06d}"
            _video(folder / split / label / f"{stem}.mp4", next(seed))
            _flow(root / f"{name}_flow" / stem, next(seed))
            rows[split].append(f"{label},yt{index}{name[-3:]},{index},{index + 10},{split}")
        for split, lines in rows.items():
            header = "label,youtube_id,time_start,time_end,split\n"
            (folder / f"{split}.csv").write_text(header + "\n".join(lines) + "\n")
        overrides[name] = [f"dataset.root={folder}", f"dataset.flow_root={root / f'{name}_flow'}",
                           f"dataset.annotations.train={folder / 'train.csv'}",
                           f"dataset.annotations.val={folder / 'val.csv'}"]

    custom = root / "custom"
    for name in ("walk", "run"):
        for index in range(2):
            _video(custom / name / f"{name}{index}.mp4", next(seed))
            _flow(root / "custom_flow" / name / f"{name}{index}", next(seed))
    overrides["custom"] = [f"dataset.train={custom}", f"dataset.val={custom}",
                           f"dataset.flow_root={root / 'custom_flow'}"]

    overrides["synthetic"] = [f"dataset.root={root / 'synthetic'}", "dataset.train_per_class=1",
                              "dataset.val_per_class=1", "dataset.num_frames=12"]
    return overrides
