"""The release's ``evaluate_sample.py``: classify one clip and print the top-20 Kinetics classes in
exactly the release's format, so that the output can be diffed against the published one."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch

from i3d_lightning.data.sample import CHANNELS, load_input, release_sample
from i3d_lightning.errors import UserInputError
from i3d_lightning.models.inference import autocast, optimize_for_inference, prepare_input
from i3d_lightning.models.weights import i3d, kinetics_categories

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


def evaluate_sample(streams: list[str], weights: Mapping[str, str | os.PathLike],
                    inputs: Mapping[str, str | os.PathLike | None], *,
                    device: str | torch.device = "cpu", precision: str = "32", fast: bool = False,
                    fetch_options: Mapping[str, object] | None = None) -> tuple[np.ndarray, list[str]]:
    """Sum of the logits of each stream's model on its input (the release's joint model is rgb + flow).

    ``weights[stream]`` is a registry name or a converted file; ``inputs[stream]`` a path, or
    ``None`` for the release's sample clip. ``precision`` ("32" or "bf16") and ``fast`` choose the
    inference path (:mod:`i3d_lightning.models.inference`). Returns (logits ``[classes]`` float32,
    class names).
    """
    device = torch.device(device)
    fetch_options = dict(fetch_options or {})
    total: torch.Tensor | None = None
    for stream in streams:
        if stream not in CHANNELS:
            raise UserInputError(f"unknown stream {stream!r}; choose from {sorted(CHANNELS)}")
        model = i3d(weights=weights[stream], in_channels=CHANNELS[stream], **fetch_options)
        path = inputs.get(stream) or release_sample(stream, **fetch_options)
        clip = load_input(path, stream).to(device)
        try:
            model.check_input(clip)
        except ValueError as error:
            raise UserInputError(f"{stream} input {path}: {error}") from None
        model = optimize_for_inference(model.eval().to(device), fast=fast)
        with torch.inference_mode(), autocast(device, str(precision)):
            logits = model(prepare_input(clip, fast))[0].float().cpu()
        if total is not None and total.shape != logits.shape:
            raise UserInputError(f"the streams' weights have different classes ({total.numel()} vs "
                                 f"{logits.numel()}): joint evaluation needs the same label set")
        total = logits if total is None else total + logits
    assert total is not None, "no stream given"
    try:
        categories = kinetics_categories(total.numel(), **fetch_options)
    except ValueError:  # fine-tuned weights of another label set: no names known here
        categories = [f"class {index}" for index in range(total.numel())]
    return total.numpy(), categories
