"""DeepMind's five released I3D checkpoints by name, with what a user needs to know about each.

In the spirit of torchvision's weights enums: each member of :class:`I3DWeights` carries its metadata
(stream, classes, pretraining, published accuracy, release files) and the preprocessing its inputs
need, as code (:attr:`I3DWeights.transforms`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cache

from i3d_lightning.errors import UserInputError
from i3d_lightning.models.streams import CHANNELS
from i3d_lightning.preprocessing import RELEASE_PREPROCESSING, ReleasePreprocessing
from i3d_lightning.weights.release import WeightsSource, fetch_release_file


@dataclass(frozen=True)
class CheckpointInfo:
    """Metadata of one released checkpoint."""

    modality: str  # "rgb" or "flow"
    num_classes: int
    pretraining: str
    #: Published accuracy of the release's README, in percent: {"top1": ..., "top5": ...} and the
    #: evaluation set it was measured on.
    accuracy: dict[str, float] = field(default_factory=dict)
    accuracy_set: str = "Kinetics-400 test"

    @property
    def in_channels(self) -> int:
        return CHANNELS[self.modality]


class I3DWeights(enum.Enum):
    """The release's checkpoints; ``I3DWeights["rgb_imagenet"]`` or ``I3DWeights.from_name(...)``."""

    rgb_imagenet = CheckpointInfo("rgb", 400, "ImageNet Inception-v1, inflated; then Kinetics-400",
                                  {"top1": 71.1, "top5": 89.3})
    flow_imagenet = CheckpointInfo("flow", 400, "ImageNet Inception-v1, inflated; then Kinetics-400",
                                   {"top1": 63.4, "top5": 84.9})
    rgb_scratch = CheckpointInfo("rgb", 400, "Kinetics-400 from scratch", {"top1": 68.4, "top5": 88.0})
    flow_scratch = CheckpointInfo("flow", 400, "Kinetics-400 from scratch", {"top1": 61.5, "top5": 83.4})
    rgb_scratch_kin600 = CheckpointInfo("rgb", 600, "Kinetics-600 from scratch", {"top1": 71.9},
                                        "Kinetics-600 validation")

    @classmethod
    def from_name(cls, name: str) -> I3DWeights:
        try:
            return cls[name]
        except KeyError:
            raise UserInputError(f"unknown I3D weights {name!r}; choose one of: "
                                 f"{', '.join(member.name for member in cls)} (or give a file path)") from None

    @property
    def info(self) -> CheckpointInfo:
        return self.value

    @property
    def transforms(self) -> ReleasePreprocessing:
        """The release's preprocessing of this stream's inputs: call it on ``[T, H, W, C]`` frames."""
        return RELEASE_PREPROCESSING[self.info.modality]

    @property
    def release_files(self) -> tuple[str, str]:
        """Paths under the release's ``data/`` folder: (index file, data file)."""
        base = f"checkpoints/{self.name}/model.ckpt"
        return f"{base}.index", f"{base}.data-00000-of-00001"

    @property
    def categories(self) -> list[str]:
        """Class names in logit order."""
        return kinetics_categories(self.info.num_classes)


def kinetics_categories(num_classes: int, source: WeightsSource = WeightsSource()) -> list[str]:
    """Kinetics-400 or -600 class names in the checkpoints' logit order.

    Kinetics-400's list is torchvision's (identical to the release's ``label_map.txt``, same order);
    Kinetics-600's is the release's ``label_map_600.txt``, fetched like the checkpoints.
    """
    if num_classes == 400:
        from torchvision.models.video import R3D_18_Weights

        return list(R3D_18_Weights.KINETICS400_V1.meta["categories"])
    if num_classes == 600:
        return _label_map_600(source)
    raise ValueError(f"no Kinetics class list has {num_classes} classes (400 or 600)")


@cache
def _label_map_600(source: WeightsSource) -> list[str]:
    path = fetch_release_file("label_map_600.txt", source)
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
