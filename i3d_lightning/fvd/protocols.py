"""The FVD protocols papers report, by name, as StyleGAN-V defines them (universome/stylegan-v,
``src/metrics/metric_main.py``, ``frechet_video_distance.py`` and ``src/training/dataset.py``):

* ``fvd2048_16f``: 2048 clips of 16 consecutive frames per side;
* ``fvd2048_128f``: 2048 clips of 128 consecutive frames;
* ``fvd2048_128f_subsample8f``: 2048 clips of 16 frames taken every 8th frame (128 frames of time);
* ``kvd2048_16f``: the kernel distance (KVD) of ``fvd2048_16f``'s clips.

Clip selection as StyleGAN-V does it: the videos in sorted order; a video with fewer than ``frames x
subsample`` frames is discarded (and counted) before the first 2048 are taken; one clip per video; real
clips start at a random frame (any start that fits the clip), generated clips at the first frame.
StyleGAN-V draws real starts from Python's unseeded ``random``; here each video's start comes from
``seed`` and the video's index, so a run can be repeated exactly.

What stays ours by default: the distance is TensorFlow's (unbiased covariance, SVD square roots; see
:mod:`i3d_lightning.fvd.distance`) and frames are resized to 224x224 with TF1's bilinear resize, as the
reference FVD does. StyleGAN-V's own distance (covariance divided by n, ``scipy.linalg.sqrtm``) is an
explicit choice (``covariance="biased"``, ``square_root="scipy"``); its resize happens inside its
TorchScript detector and is not reproduced (its effect is measured in ``docs/fvd.md``).
"""

from __future__ import annotations

from i3d_lightning.errors import UserInputError
from i3d_lightning.fvd.inputs import ClipProtocol

#: Clips per side that StyleGAN-V's protocols call for.
PAPER_CLIPS = 2048

#: name -> (frames per clip, subsample factor, the distance the name reports).
PAPER_PROTOCOLS: dict[str, tuple[int, int, str]] = {
    "fvd2048_16f": (16, 1, "fvd"),
    "fvd2048_128f": (128, 1, "fvd"),
    "fvd2048_128f_subsample8f": (16, 8, "fvd"),
    "kvd2048_16f": (16, 1, "kvd"),
}


def paper_protocol(name: str, *, seed: int = 0, resolution: tuple[int, int] | None = None) -> ClipProtocol:
    """The :class:`ClipProtocol` of the paper protocol ``name`` (see the module)."""
    if name not in PAPER_PROTOCOLS:
        raise UserInputError(f"unknown FVD protocol {name!r}: choose one of {', '.join(PAPER_PROTOCOLS)}")
    frames, subsample, _ = PAPER_PROTOCOLS[name]
    return ClipProtocol(frames=frames, stride=subsample, start="random", fake_start="first", clips_per_video=1,
                        resolution=resolution, max_videos=PAPER_CLIPS, seed=seed, min_frames=frames * subsample,
                        name=name)


def reported_metric(protocol: ClipProtocol) -> str:
    """``fvd`` or ``kvd``: the distance ``protocol``'s name reports (``fvd`` for unnamed protocols)."""
    return PAPER_PROTOCOLS[protocol.name][2] if protocol.name in PAPER_PROTOCOLS else "fvd"


def sample_size_warning(protocol: ClipProtocol, side: str, clips: int, dimensions: int) -> str | None:
    """A warning when ``side`` has fewer clips than the named ``protocol`` calls for, or, without a named
    protocol, fewer than the embedding's ``dimensions`` (its covariance is then singular); else ``None``."""
    wanted = protocol.max_videos * protocol.clips_per_video if protocol.name and protocol.max_videos else None
    if wanted is not None and clips < wanted:
        return (f"warning: {protocol.name} calls for {wanted} clips per side and {side} has {clips}: the distance of "
                f"fewer clips is biased upward (the covariances' estimation noise adds to it, roughly as 1 / clips), "
                f"so this value is not comparable with values of {wanted} clips")
    if wanted is None and clips < dimensions:
        return (f"warning: {side} has {clips} clips, fewer than the embedding's {dimensions} dimensions: its "
                f"covariance is singular and the distance is mostly estimation noise, biased upward (roughly as "
                f"1 / clips); papers use {PAPER_CLIPS} clips per side")
    return None


def unequal_sides_warning(real_clips: int, fake_clips: int) -> str | None:
    """A warning when the sides' clip counts differ by more than 10%: each side's estimation bias
    depends on its count, so the value mixes two biases and compares with neither side's usual value."""
    if min(real_clips, fake_clips) >= 0.9 * max(real_clips, fake_clips):
        return None
    return (f"warning: the sides have {real_clips} real and {fake_clips} fake clips: FVD's bias depends on each "
            f"side's count, so compare values computed with the same counts (--max-videos N sets both)")
