"""The stream vocabulary: which modalities a stream runs and how many channels each takes.

A *modality* is one input and one I3D tower: ``rgb`` (3 channels) or ``flow`` (2: x, y). A *stream*
is what a user picks: ``rgb``, ``flow`` or ``joint`` (both towers, their logits summed, as in the
paper's two-stream I3D). :func:`i3d_lightning.weights.stream_towers` builds the towers.
"""

from __future__ import annotations

from i3d_lightning.errors import UserInputError

CHANNELS: dict[str, int] = {"rgb": 3, "flow": 2}
MODALITIES: tuple[str, ...] = tuple(CHANNELS)
STREAMS: dict[str, tuple[str, ...]] = {"rgb": ("rgb",), "flow": ("flow",), "joint": ("rgb", "flow")}


def modalities_of(stream: str) -> tuple[str, ...]:
    """The modalities the stream ``stream`` runs, in logit-sum order (rgb before flow)."""
    if stream not in STREAMS:
        raise UserInputError(f"unknown stream {stream!r}; choose from {', '.join(STREAMS)}")
    return STREAMS[stream]


def check_modalities(modalities: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``modalities`` as a tuple, if it is a non-empty list of known modalities without repeats."""
    modalities = tuple(modalities)
    if not modalities or set(modalities) - set(MODALITIES) or len(set(modalities)) != len(modalities):
        raise UserInputError(f"modalities must be drawn from {MODALITIES} without repeats, got {list(modalities)}")
    return modalities
