"""``eval.py``: evaluate I3D as the config says."""

from __future__ import annotations

from omegaconf import DictConfig

from i3d_lightning.cli import resolve_device
from i3d_lightning.errors import UserInputError
from i3d_lightning.sample_evaluation import evaluate_sample, format_release_output


def fetch_options(weights_cfg: DictConfig) -> dict[str, object]:
    """Where weights come from (``weights.cache``, ``.mirror``, ``.base_url``, ``.progress``)."""
    return {key: weights_cfg.get(key) for key in ("cache", "mirror", "base_url", "progress")}


def evaluate(cfg: DictConfig) -> str:
    """Run the evaluation of ``cfg`` and return what it printed."""
    if cfg.dataset.name != "sample":
        raise UserInputError(f"dataset={cfg.dataset.name} is not evaluable yet; use dataset=sample")
    logits, categories = evaluate_sample(
        list(cfg.stream.modalities), cfg.weights, cfg.sample,
        device=resolve_device(cfg.device), fetch_options=fetch_options(cfg.weights))
    report = format_release_output(logits, categories)
    print(report)
    return report
