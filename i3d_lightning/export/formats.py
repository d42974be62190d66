"""Export I3D for deployment: TorchScript and ONNX, with dynamic batch and time axes.

The exported network is :class:`StreamSum`: one I3D tower per modality of the stream, logits summed
(``joint`` is the release's two-stream model). Its inputs are ``[B, C, T, H, W]`` float clips in [-1, 1],
one per modality in ``rgb``, ``flow`` order; its output is logits ``[B, classes]``.

* ONNX goes through ``torch.export`` (the dynamo exporter): batch and time are symbolic, so the
  TensorFlow ``SAME`` padding of the strided layers is computed in the graph for each clip length.
  Time must be at least :data:`MIN_EXPORT_FRAMES`: below it the last feature map has one time step,
  a size ``torch.export`` specialises on. Height and width are fixed at export.
* TorchScript is a trace (``torch.jit.trace``; TorchScript is deprecated in PyTorch 2.x but still the
  format C++ ``torch::jit::load`` reads). The tracer records the shape arithmetic of the padding, so
  the trace also takes any batch and clip length; the input check (``T >= 9``) is not traced.

Each export is written to a temporary file, renamed into place, and checked by running it (ONNX with
onnxruntime) against the PyTorch model: :func:`max_abs_difference`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from i3d_lightning.atomic_files import atomic_output
from i3d_lightning.errors import UserInputError
from i3d_lightning.extras import install_command
from i3d_lightning.hardware import inference_precision
from i3d_lightning.lightning.classifier import I3DClassifier
from i3d_lightning.models.i3d import MIN_SIZE, InceptionI3d
from i3d_lightning.models.streams import modalities_of
from i3d_lightning.preprocessing import RELEASE_CROP_SIZE
from i3d_lightning.weights import WeightsSource, kinetics_categories, stream_towers

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
#: Shortest clip the ONNX graph accepts (the last feature map needs at least 2 time steps).
MIN_EXPORT_FRAMES = 17
#: Largest batch and clip length the ONNX graph declares.
MAX_BATCH = 4096
MAX_FRAMES = 1 << 20


class StreamSum(nn.Module):
    """A stream's prediction: the sum of the logits of its towers, one per modality.

    Input: one ``[B, C_m, T_m, H, W]`` clip per modality (``modalities`` order: rgb 3 channels, flow 2),
    values in [-1, 1].
    Output: logits ``[B, classes]``.
    """

    def __init__(self, towers: Mapping[str, InceptionI3d]) -> None:
        super().__init__()
        classes = {tower.num_classes for tower in towers.values()}
        if len(classes) != 1:
            raise UserInputError(f"the towers have different numbers of classes {sorted(classes)}: "
                                 f"their logits cannot be summed")
        self.modalities = tuple(towers)
        self.towers = nn.ModuleDict(towers)

    def forward(self, *clips: torch.Tensor) -> torch.Tensor:
        logits = [self.towers[modality](clip) for modality, clip in zip(self.modalities, clips, strict=True)]
        return torch.stack(logits).sum(dim=0)


def load_model(stream: str | None, *, weights: Mapping[str, str | os.PathLike] | None = None,
               checkpoint: str | os.PathLike | None = None,
               source: WeightsSource = WeightsSource()) -> tuple[StreamSum, list[str]]:
    """The model to export and its class names: either the towers of a ``train.py`` checkpoint
    (``checkpoint``; ``stream`` may be ``None`` = the checkpoint's), or ``weights[s]`` (a registry name
    or a converted file) for each modality ``s`` of ``stream``."""
    modalities = modalities_of(stream) if stream is not None else None
    if checkpoint is not None:
        trained = I3DClassifier.from_training_checkpoint(checkpoint, "--checkpoint")
        if modalities is not None and modalities != trained.modalities:
            raise UserInputError(f"checkpoint {checkpoint} is a {'+'.join(trained.modalities)} model, "
                                 f"not {stream}: leave the stream out or choose the checkpoint's")
        classes = list(trained.hparams.class_names or range(trained.hparams.num_classes))
        return StreamSum({m: trained.towers[m] for m in trained.modalities}).eval(), [str(c) for c in classes]
    if modalities is None:
        raise UserInputError("give a stream (rgb, flow or joint) or a checkpoint")
    towers = stream_towers(modalities, weights or {}, source=source)
    model = StreamSum(towers).eval()
    num_classes = next(iter(towers.values())).num_classes
    try:
        classes = kinetics_categories(num_classes, source)
    except ValueError:  # converted fine-tuned weights of another label set
        classes = [str(index) for index in range(num_classes)]
    return model, classes


def example_inputs(model: StreamSum, *, frames: int = 32, size: int = RELEASE_CROP_SIZE,
                   batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Random clips to export with. The batch is 2 because ``torch.export`` specialises a size of 1."""
    if size < MIN_SIZE:
        raise UserInputError(f"size {size} is too small for I3D (at least {MIN_SIZE})")
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.rand(batch, model.towers[s].in_channels, frames, size, size, generator=generator) * 2 - 1
                 for s in model.modalities)


@contextlib.contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """Silence what TorchScript always says: the input-size check becomes a constant of the trace,
    and TorchScript is deprecated; both are known and documented above."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*is deprecated", category=FutureWarning)
        yield


def export_torchscript(model: StreamSum, inputs: Sequence[torch.Tensor], path: str | os.PathLike) -> Path:
    """Trace ``model`` (eval mode) on ``inputs`` and save it to ``path`` atomically."""
    path = Path(path)
    with atomic_output(path) as temporary, _quiet_torchscript(), torch.no_grad():
        torch.jit.save(torch.jit.trace(model.eval(), tuple(inputs), check_trace=False), str(temporary))
    return path


def export_onnx(model: StreamSum, inputs: Sequence[torch.Tensor], path: str | os.PathLike) -> Path:
    """Export ``model`` (eval mode) to ONNX with dynamic batch and time axes, atomically."""
    path = Path(path)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic = tuple({0: batch, 2: torch.export.Dim(f"{s}_frames", min=MIN_EXPORT_FRAMES, max=MAX_FRAMES)}
                    for s in model.modalities)
    with atomic_output(path) as temporary, torch.no_grad():
        torch.onnx.export(model.eval(), tuple(inputs), str(temporary), dynamo=True, dynamic_shapes=(dynamic,),
                          input_names=list(model.modalities), output_names=["logits"], external_data=False,
                          verbose=False)
    return path


def run_exported(path: str | os.PathLike, fmt: str, inputs: Sequence[torch.Tensor]) -> np.ndarray:
    """Logits ``[B, classes]`` of an exported model (ONNX through onnxruntime's CPU provider)."""
    if fmt == "torchscript":
        with _quiet_torchscript(), torch.no_grad():
            return torch.jit.load(str(path), map_location="cpu")(*inputs).numpy()
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise UserInputError(f"checking an ONNX export needs onnxruntime: {install_command('export')}") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {arg.name: clip.numpy() for arg, clip in zip(session.get_inputs(), inputs, strict=True)}
        return session.run(None, feeds)[0]
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def max_abs_difference(path: str | os.PathLike, fmt: str, model: StreamSum, inputs: Sequence[torch.Tensor]) -> float:
    """Largest absolute logit difference between the export at ``path`` and ``model`` on ``inputs`` (the
    model in IEEE fp32, whatever the process's float32 settings)."""
    with torch.no_grad(), inference_precision(inputs[0].device, "32"):
        expected = model.eval()(*inputs).numpy()
    return float(np.abs(run_exported(path, fmt, inputs) - expected).max())


def export(model: StreamSum, fmt: str, path: str | os.PathLike, *, frames: int = 32,
           size: int = RELEASE_CROP_SIZE) -> Path:
    """Export ``model`` as ``fmt`` (``torchscript`` or ``onnx``) for ``size`` x ``size`` clips."""
    inputs = example_inputs(model, frames=frames, size=size)
    if fmt == "torchscript":
        return export_torchscript(model, inputs, path)
    if fmt == "onnx":
        return export_onnx(model, inputs, path)
    raise UserInputError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
