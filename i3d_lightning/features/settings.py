"""How features are made: :class:`ExtractionSettings` (and what ``conventions.json`` records of them).

Apart from :mod:`i3d_lightning.features.run` so that ``i3d-extract-features`` can build and check its
settings (``--help``, a refused option) without importing Lightning, which only the run needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from i3d_lightning.errors import UserInputError
from i3d_lightning.features.presets import feature_preset
from i3d_lightning.models.i3d import MIN_FRAMES
from i3d_lightning.models.streams import modalities_of
from i3d_lightning.preprocessing import RELEASE_CROP_SIZE, RELEASE_FPS, RELEASE_SHORT_SIDE

#: Crops per window: the centre one, or the four corners and the centre and their mirror images.
CROP_COUNTS = (1, 10)

DEFAULT_WEIGHTS = {"rgb": "rgb_imagenet", "flow": "flow_imagenet"}


@dataclass(frozen=True)
class ExtractionSettings:
    """How features are made: the ``stream``'s towers (``weights``: modality -> registry name or file),
    frames at ``fps`` (``None``: the video's own rate) resized to ``short_side``, windows of ``window``
    frames every ``stride`` (``window=None``: one vector per video), ``crops`` (1 or 10) of ``crop_size``,
    and, for a ``preset``, both modalities in one file."""

    stream: str = "rgb"
    fps: float | None = RELEASE_FPS
    window: int | None = 16
    stride: int = 16
    crops: int = 1
    short_side: int = RELEASE_SHORT_SIDE
    crop_size: int = RELEASE_CROP_SIZE
    weights: Mapping[str, str] | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        modalities_of(self.stream)
        if self.window is not None and self.window < MIN_FRAMES:
            raise UserInputError(f"window must be at least {MIN_FRAMES} frames (I3D's minimum), got {self.window}")
        if self.crops not in CROP_COUNTS:
            raise UserInputError(f"crops must be 1 or 10, got {self.crops}")
        if self.fps is not None and not self.fps > 0:
            raise UserInputError(f"fps must be positive (or None: the video's own rate), got {self.fps}")

    @classmethod
    def from_preset(cls, name: str, *, crops: int = 1, short_side: int = RELEASE_SHORT_SIDE,
                    crop_size: int = RELEASE_CROP_SIZE, weights: Mapping[str, str] | None = None) -> ExtractionSettings:
        """The settings of a named convention (:data:`~i3d_lightning.features.presets.FEATURE_PRESETS`);
        ``weights`` replaces its checkpoints (other files of the same towers)."""
        preset = feature_preset(name)
        return cls(stream=preset.stream, fps=preset.fps, window=preset.window, stride=preset.stride, crops=crops,
                   short_side=short_side, crop_size=crop_size, weights=weights or dict(preset.weights), preset=name)

    @property
    def modalities(self) -> tuple[str, ...]:
        return modalities_of(self.stream)

    @property
    def concatenate(self) -> bool:
        """Whether each video gets one file of both modalities' features, rgb's first (the presets')."""
        return self.preset is not None

    def weights_of(self, modality: str) -> str:
        return str((self.weights or DEFAULT_WEIGHTS).get(modality, DEFAULT_WEIGHTS[modality]))

    def conventions(self) -> dict[str, object]:
        """What makes one extraction's features comparable with another's (``conventions.json``)."""
        return {"preset": self.preset, "stream": self.stream, "fps": self.fps, "window": self.window,
                "stride": None if self.window is None else self.stride, "crops": self.crops,
                "short_side": self.short_side, "crop_size": self.crop_size,
                "weights": {modality: self.weights_of(modality) for modality in self.modalities},
                "layout": "[T, 2048] per video, rgb first" if self.concatenate else "[T, 1024] per modality"}
