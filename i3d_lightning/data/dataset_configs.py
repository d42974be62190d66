"""The datasets a config can name (``dataset=ucf101`` ...): where their videos and annotations are
and which videos each stage (``train``, ``val``, ``test``) uses. Built by Hydra from
``configs/dataset/*.yaml``; the DataModule calls :meth:`prepare` once (rank 0) and
:meth:`video_list` per stage.

UCF101 and HMDB51 have no validation split: ``val`` is the test split of the chosen split, as is
usual for these datasets (the paper reports test accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from i3d_lightning.data import annotations, synthetic
from i3d_lightning.data.annotations import VideoList
from i3d_lightning.errors import UserInputError
from i3d_lightning.settings import check_settings, setting
from i3d_lightning.weights import WeightsSource, kinetics_categories, release

STAGES = ("train", "val", "test")


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def _required(value: str | None, key: str, name: str) -> Path:
    if value in (None, "", "???"):
        raise UserInputError(f"dataset={name} needs dataset.{key}=PATH")
    path = Path(value).expanduser()
    if not path.exists():
        raise UserInputError(f"dataset.{key}={value}: no such file or folder")
    return path


#: The split-file layouts: how their split files are read, and the videos' and split files' folders under ``root``.
SPLIT_FILE_LAYOUTS = {
    "ucf101": (annotations.ucf101, "UCF-101", "ucfTrainTestlist"),
    "hmdb51": (annotations.hmdb51, "videos", "testTrainMulti_7030_splits"),
}


@dataclass
class SplitFileDataset:
    """UCF101 or HMDB51 (``layout``): ``root`` holds the videos (``UCF-101/<Class>/*.avi``,
    ``videos/<class>/*.avi``) and the official split files (``ucfTrainTestlist/``,
    ``testTrainMulti_7030_splits/``); ``split`` is 1, 2 or 3; ``videos`` and ``annotations`` replace the
    folders under ``root``."""

    layout: str = setting("ucf101", choices=tuple(SPLIT_FILE_LAYOUTS))
    root: str | None = None
    split: int = setting(1, choices=(1, 2, 3))  # the official splits
    videos: str | None = None
    annotations: str | None = None
    flow_root: str | None = None
    name: str = "ucf101"

    def __post_init__(self) -> None:
        check_settings(self)

    def prepare(self) -> None:
        """Nothing to download: the dataset must be on disk."""

    def video_list(self, stage: str) -> VideoList:
        _check_stage(stage)
        read, videos, split_files = SPLIT_FILE_LAYOUTS[self.layout]
        root = _required(self.root, "root", self.name)
        return read(Path(self.videos or root / videos), Path(self.annotations or root / split_files),
                    self.split, "train" if stage == "train" else "test")


@dataclass
class Kinetics:
    """``root`` holds the clips (any layout below it); ``annotations`` maps each stage to its CSV."""

    root: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    num_classes: int = setting(400, choices=(400, 600))  # Kinetics-400 or -600
    flow_root: str | None = None
    weights_source: WeightsSource = field(default_factory=WeightsSource)
    name: str = "kinetics400"

    def __post_init__(self) -> None:
        check_settings(self)

    def prepare(self) -> None:
        """Fetch the class list (Kinetics-600's comes from the release, like the weights)."""
        self.classes()

    def classes(self) -> list[str]:
        return kinetics_categories(self.num_classes, self.weights_source)

    def video_list(self, stage: str) -> VideoList:
        _check_stage(stage)
        root = _required(self.root, "root", self.name)
        if stage not in self.annotations:
            raise UserInputError(f"dataset={self.name} has no annotation CSV for {stage}: set "
                                 f"dataset.annotations.{stage}=PATH")
        csv_path = _required(self.annotations[stage], f"annotations.{stage}", self.name)
        return annotations.kinetics(root, csv_path, self.classes())


@dataclass
class Custom:
    """Each stage a folder of class subfolders or a ``path,label`` list; ``classes`` fixes label order."""

    train: str | None = None
    val: str | None = None
    test: str | None = None
    classes: list[str] | None = None
    flow_root: str | None = None
    name: str = "custom"

    def prepare(self) -> None:
        """Nothing to download."""

    def video_list(self, stage: str) -> VideoList:
        _check_stage(stage)
        source = getattr(self, stage) or (self.val if stage == "test" else None)
        return annotations.custom(_required(source, stage, self.name), self.classes)


@dataclass
class Synthetic:
    """Generated moving-texture videos (:mod:`i3d_lightning.data.synthetic`), 4 classes."""

    root: str | None = None
    train_per_class: int = setting(24, minimum=1)
    val_per_class: int = setting(8, minimum=1)
    num_frames: int = setting(40, minimum=1)
    size: int = setting(224, minimum=1)  # the frames' side, in pixels
    seed: int = 0
    flow_root: str | None = None
    #: Whether training may flip clips: not here, where the class is the direction of the motion (the
    #: config's ``data.train_sampling.flip`` follows it).
    flip: bool = False
    name: str = "synthetic"

    def __post_init__(self) -> None:
        check_settings(self)

    def folder(self) -> Path:
        if self.root:
            return Path(self.root).expanduser()
        return release.cache_dir() / "synthetic" / f"t{self.train_per_class}-v{self.val_per_class}-" \
                                                   f"f{self.num_frames}-s{self.size}-seed{self.seed}"

    def prepare(self) -> None:
        synthetic.generate(self.folder(), videos_per_class={"train": self.train_per_class, "val": self.val_per_class},
                           num_frames=self.num_frames, size=self.size, seed=self.seed)

    def video_list(self, stage: str) -> VideoList:
        _check_stage(stage)
        folder = self.folder()
        if not (folder / synthetic.DONE_MARKER).is_file():
            raise UserInputError(f"synthetic dataset not generated at {folder}: call prepare() first")
        return annotations.custom(folder / ("train" if stage == "train" else "val"), list(synthetic.CLASSES))


VideoSource = SplitFileDataset | Kinetics | Custom | Synthetic

