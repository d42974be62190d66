"""The release's ``evaluate_sample.py``: classify one clip and print the top-20 Kinetics classes in
exactly the release's format, so that the output can be diffed against the published one."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch

from i3d_lightning.data.release_clip import load_input, release_sample
from i3d_lightning.errors import UserInputError
from i3d_lightning.hardware import check_inference_precision, inference_precision, resolve_device
from i3d_lightning.models.inference import optimize_for_inference, prepare_input
from i3d_lightning.models.streams import check_modalities
from i3d_lightning.weights import WeightsSource, kinetics_categories, stream_towers

TOP_K = 20


def format_release_output(logits: np.ndarray, categories: list[str], top_k: int = TOP_K) -> str:
    """``Norm of logits: %f``, a blank line, ``Top classes and probabilities``, then ``top_k`` lines
    ``probability logit class-name``, numbers printed as the release printed float32 values."""
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    shifted = np.exp(logits - logits.max())
    probabilities = (shifted / shifted.sum()).astype(np.float32)
    lines = [f"Norm of logits: {np.linalg.norm(logits):f}", "", "Top classes and probabilities"]
    for index in np.argsort(logits)[::-1][:top_k]:
        lines.append(f"{probabilities[index]!s} {logits[index]!s} {categories[index]}")
    return "\n".join(lines)


def evaluate_sample(modalities: list[str], weights: Mapping[str, str | os.PathLike],
                    inputs: Mapping[str, str | os.PathLike | None], *,
                    device: str | torch.device = "cpu", precision: str = "32", fast: bool = False,
                    source: WeightsSource = WeightsSource()) -> tuple[np.ndarray, list[str]]:
    """Sum of the logits of each modality's model on its input (the release's joint model is rgb + flow).

    ``weights[modality]`` is a registry name or a converted file; ``inputs[modality]`` a path, or
    ``None`` for the release's sample clip. ``device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    ``precision`` ("32", "tf32" or "bf16") and ``fast`` choose the inference path
    (:mod:`i3d_lightning.models.inference`). Returns (logits ``[classes]`` float32, class names).
    """
    # Each step goes one layer down (weights, the network, the device): the device and the precision
    # were checked with the config (eval.py), so here they cost nothing to check last.
    towers = stream_towers(check_modalities(modalities), weights, source=source)
    networks = {modality: optimize_for_inference(tower.eval(), fast=fast) for modality, tower in towers.items()}
    device = resolve_device(str(device))
    check_inference_precision(str(precision), device)
    total: torch.Tensor | None = None
    for modality, tower in towers.items():
        path = inputs.get(modality) or release_sample(modality, source)
        clip = load_input(path, modality).to(device)
        try:
            tower.check_input(clip)
        except ValueError as error:
            raise UserInputError(f"{modality} input {path}: {error}") from None
        with torch.inference_mode(), inference_precision(device, str(precision)):
            logits = networks[modality].to(device)(prepare_input(clip, fast))[0].float().cpu()
        if total is not None and total.shape != logits.shape:
            raise UserInputError(f"the streams' weights have different classes ({total.numel()} vs "
                                 f"{logits.numel()}): joint evaluation needs the same label set")
        total = logits if total is None else total + logits
    assert total is not None, "no stream given"
    try:
        categories = kinetics_categories(total.numel(), source)
    except ValueError:  # fine-tuned weights of another label set: no names known here
        categories = [f"class {index}" for index in range(total.numel())]
    return total.numpy(), categories
