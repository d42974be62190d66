"""Feature conventions of temporal action localization, by name (``i3d-extract-features --preset NAME``).

Localization models (ActionFormer, TriDet, TemporalMaxer, ...) are trained on I3D features made once,
with fixed conventions, and shared as files: features made any other way do not fit those models. A
preset fixes everything that changes the numbers: the frame rate, the windows, the streams and their
weights, and the layout of the files (one float32 ``[T, 2048]`` array per video: the RGB tower's 1024
values, then the flow tower's).

What the presets keep from this package, not from the extractors the files came from (their code was
never released with the files): frames resized so the shorter side is 256 (the release's), TV-L1 flow
computed as :mod:`i3d_lightning.flow.online` computes it, and mirrored flow with x negated.
"""

from __future__ import annotations

from dataclasses import dataclass

from i3d_lightning.errors import UserInputError


@dataclass(frozen=True)
class FeaturePreset:
    """One convention: windows of ``window`` frames every ``stride`` frames of the video at ``fps``
    (``None``: its own rate), from the RGB and flow towers of ``weights``, concatenated RGB first."""

    name: str
    fps: float | None
    window: int
    stride: int
    source: str
    weights: tuple[tuple[str, str], ...] = (("rgb", "rgb_imagenet"), ("flow", "flow_imagenet"))
    stream: str = "joint"

    def num_windows(self, num_frames: int) -> int:
        """T, the features of a video of ``num_frames`` frames at the preset's rate (those both streams
        have: a video of N frames has N - 1 flow frames): ``floor((num_frames - window) / stride) + 1``,
        and one (looped) window for a video shorter than a window."""
        return max((num_frames - self.window) // self.stride + 1, 1)

    def describe(self) -> str:
        rate = "the video's own frame rate" if self.fps is None else f"{self.fps:g} fps"
        weights = " + ".join(name for _, name in self.weights)
        return (f"{self.name}: {self.window}-frame windows every {self.stride} frames at {rate}; {weights}; "
                f"TV-L1 flow; float32 [T, 2048] per video, RGB first (source: {self.source})")


FEATURE_PRESETS: dict[str, FeaturePreset] = {
    preset.name: preset for preset in (
        FeaturePreset("thumos14", fps=None, window=16, stride=4,
                      source="ActionFormer's README (happyharrycn/actionformer_release): two-stream I3D "
                             "pretrained on Kinetics, clips of 16 frames at the video frame rate (~30 fps), "
                             "a stride of 4 frames; the THUMOS14 files of TriDet and TemporalMaxer are the same"),
        FeaturePreset("activitynet", fps=25.0, window=16, stride=16,
                      source="ActionFormer's configs/anet_i3d.yaml (num_frames 16, feat_stride 16) on videos "
                             "at 25 fps"),
    )
}


def feature_preset(name: str) -> FeaturePreset:
    """The preset called ``name``, or one line naming the ones there are."""
    if name not in FEATURE_PRESETS:
        raise UserInputError(f"unknown feature preset {name!r}; choose one of {', '.join(FEATURE_PRESETS)}")
    return FEATURE_PRESETS[name]
