"""The reports of an evaluation on a dataset: the summary table it prints, and the files it writes to
its run folder, each atomically (``metrics.json``, ``predictions.csv``, ``per_class_accuracy.csv``,
``confusion_matrix.png``; the list of skipped videos is :mod:`~i3d_lightning.runtime.skip_report`'s)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from i3d_lightning.atomic_files import atomic_output, write_csv, write_json


def write_predictions(path: Path, predictions: Sequence[dict[str, Any]], class_names: Sequence[str],
                      score_kind: str = "logit") -> Path:
    """One row per video: id, true label, then the top-5 classes with their scores (the aggregated
    logits, or softmax probabilities with ``aggregate=mean_softmax``: ``score_kind``)."""
    top_k = len(predictions[0]["top_classes"]) if predictions else 5
    header = ["video_id", "label", *(f"top{k}_{field}" for k in range(1, top_k + 1) for field in ("class", score_kind))]
    rows = []
    for row in predictions:
        cells = [row["video_id"], class_names[row["label"]]]
        for index, score in zip(row["top_classes"], row["top_scores"], strict=True):
            cells += [class_names[index], f"{score:.6g}"]
        rows.append(cells)
    return write_csv(path, header, rows)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class from a ``[true, predicted]`` confusion matrix (NaN for absent classes)."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def write_per_class(path: Path, confusion: np.ndarray, class_names: Sequence[str]) -> Path:
    accuracy = per_class_accuracy(confusion)
    rows = [(name, int(confusion[index].sum()), int(confusion[index, index]),
             "" if np.isnan(accuracy[index]) else f"{accuracy[index]:.4f}") for index, name in enumerate(class_names)]
    return write_csv(path, ("class", "videos", "correct", "accuracy"), rows)


def plot_confusion(path: Path, confusion: np.ndarray, class_names: Sequence[str]) -> Path:
    """Row-normalised confusion matrix as a PNG (class names shown up to 60 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=float), where=totals > 0)
    size = min(24, 4 + 0.25 * len(class_names))
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(class_names) <= 60:
        ticks = range(len(class_names))
        axes.set_xticks(ticks, class_names, rotation=90, fontsize=7)
        axes.set_yticks(ticks, class_names, fontsize=7)
    figure.tight_layout()
    with atomic_output(path) as partial:
        figure.savefig(partial, dpi=100, format="png")
    plt.close(figure)
    return path


def write_reports(run_dir: Path, metrics: dict[str, Any], results: dict[str, Any], class_names: Sequence[str],
                  score_kind: str) -> None:
    """The report files of an evaluation in ``run_dir``: ``metrics.json``, ``predictions.csv`` (the
    ``results``' predictions, scored as ``score_kind``), ``per_class_accuracy.csv`` and
    ``confusion_matrix.png`` (from its confusion matrix)."""
    write_metrics(run_dir / "metrics.json", metrics)
    write_predictions(run_dir / "predictions.csv", results["predictions"], class_names, score_kind)
    write_per_class(run_dir / "per_class_accuracy.csv", results["confusion"], class_names)
    plot_confusion(run_dir / "confusion_matrix.png", results["confusion"], class_names)


def write_metrics(path: Path, metrics: dict[str, Any]) -> Path:
    return write_json(path, metrics, sort_keys=True)


def summary_table(metrics: dict[str, Any], heads: Sequence[str]) -> str:
    """A small text table: one row per head with top-1, top-5 (``-`` where not measured: 5 classes or
    fewer) and mean class accuracy, in percent."""
    lines = [f"{'head':<8} {'top-1':>7} {'top-5':>7} {'mean class':>10}"]
    for head in heads:
        top1, top5, mean_class = (metrics[head].get(key) for key in ("top1", "top5", "mean_class_accuracy"))
        top5_text = "-" if top5 is None else f"{100 * top5:.2f}"
        lines.append(f"{head:<8} {100 * top1:>7.2f} {top5_text:>7} {100 * mean_class:>10.2f}")
    lines.append(f"videos evaluated: {metrics['videos_evaluated']}, skipped (unreadable): {metrics['videos_skipped']}"
                 + (" - metrics are over the videos that could be read" if metrics["videos_skipped"] else ""))
    return "\n".join(lines)
