"""``eval.py``: the release's sample evaluation, or the accuracy of a model on a dataset.

On a dataset, the model is DeepMind's converted weights as they are (``weights.*``; e.g. Kinetics,
whose class order is the checkpoints') or a checkpoint of ``train.py`` (``ckpt_path``), evaluated with
the test protocol of ``data.eval_sampling``. The summary is printed first; then the run folder receives
``metrics.json``, ``predictions.csv``, ``per_class_accuracy.csv``, ``confusion_matrix.png`` and
``skipped_videos.csv`` (the videos that could not be read; only its header when there were none), each
written atomically; the metrics are computed over the videos that could be read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, read_write

from i3d_lightning.config_checks import check_config, command_line_keys
from i3d_lightning.data.datamodule import VideoDataModule
from i3d_lightning.errors import UserInputError
from i3d_lightning.evaluation import reports
from i3d_lightning.evaluation.release_sample import evaluate_sample, format_release_output
from i3d_lightning.hardware import check_inference_precision, float32_mode, float32_mode_on, lightning_precision
from i3d_lightning.lightning.builders import build_datamodule, build_trainer
from i3d_lightning.lightning.classifier import I3DClassifier
from i3d_lightning.run_folder import remove_if_only_hydra_files
from i3d_lightning.runtime.skip_report import SKIPPED_VIDEOS
from i3d_lightning.weights.loading import read_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """What an evaluation printed (``text``), and the videos it skipped: how many, and where they are
    listed (``None`` for the sample evaluation)."""

    text: str
    skipped: int = 0
    skipped_list: Path | None = None


def _show(text: str) -> None:
    """Print ``text`` and put it in the run's eval.log (the console shows only warnings)."""
    print(text, flush=True)
    log.info("\n%s", text)


def evaluate(cfg: DictConfig) -> Evaluation:
    """Run the evaluation of ``cfg``: print its report (then, on a dataset, write the report files)."""
    check_config(cfg)
    if cfg.get("dataset") is not None:
        return evaluate_dataset(cfg)
    logits, categories = evaluate_sample(list(cfg.stream.modalities), cfg.weights, cfg.sample,
                                         device=cfg.device, precision=str(cfg.precision), fast=cfg.fast,
                                         source=instantiate(cfg.weights.source))
    report = format_release_output(logits, categories)
    _show(report)
    return Evaluation(report)


def _load_model(cfg: DictConfig, num_classes: int, classes: list[str]) -> I3DClassifier:
    if not cfg.ckpt_path:
        model = instantiate(cfg.model, num_classes=num_classes, class_names=classes, fast_inference=cfg.fast,
                            _convert_="object")
        model.load_initial_weights()
        if model.new_logits:
            # The weights were trained on other classes: their new logits layer is random, and scoring
            # it would report chance-level numbers that change with the seed.
            names = ", ".join(str(cfg.weights[modality]) for modality in model.new_logits)
            raise UserInputError(
                f"the {'+'.join(model.new_logits)} weights ({names}) were not trained on the {num_classes} classes "
                f"of dataset={cfg.dataset.name}: pass the checkpoint of a model fine-tuned on them "
                f"(ckpt_path=<run>/checkpoints/best-....ckpt from train.py)")
        return model
    model = I3DClassifier.from_training_checkpoint(cfg.ckpt_path, aggregate=cfg.model.aggregate,
                                                  eval_chunk=cfg.model.eval_chunk, fast_inference=cfg.fast)
    trained_classes = list(model.hparams.get("class_names") or [])
    if trained_classes and sorted(trained_classes) != sorted(classes):
        # As many classes, but others: every score would be reported against an unrelated label.
        raise UserInputError(f"checkpoint {cfg.ckpt_path} was trained on other classes ({_few(trained_classes)}) "
                             f"than dataset={cfg.dataset.name} has ({_few(classes)}): evaluate it on its own "
                             f"dataset, or fine-tune it on this one (train.py weights.rgb=<checkpoint>)")
    if trained_classes and trained_classes != list(classes):
        # The same classes in another order would score every video against the wrong label.
        raise UserInputError(f"checkpoint {cfg.ckpt_path} was trained with the classes in the order "
                             f"{trained_classes}, the data lists them as {list(classes)}: add "
                             f"dataset.classes=[{','.join(trained_classes)}]")
    if model.hparams.num_classes != num_classes or tuple(model.modalities) != tuple(cfg.stream.modalities):
        raise UserInputError(f"checkpoint {cfg.ckpt_path} is a {'+'.join(model.modalities)} model of "
                             f"{model.hparams.num_classes} classes; the data is {'+'.join(cfg.stream.modalities)} "
                             f"with {num_classes} classes (set stream= and dataset= to match)")
    return model


def _few(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _with_trained_settings(cfg: DictConfig) -> tuple[DictConfig, str]:
    """The config to evaluate with, and a line for the report saying what it took from the checkpoint.

    With ``ckpt_path``, the stream and the clip settings the checkpoint was trained with replace the
    configured ones where this command did not set them (a value set here wins, with a warning when it
    differs from training): a new config composed from ``cfg`` and those values; ``cfg`` is not changed.
    Its ``run_dir`` is fixed (the folder Hydra made, renamed after the stream taken)."""
    if not cfg.ckpt_path:
        return cfg, ""
    checkpoint = read_checkpoint(cfg.ckpt_path, "ckpt_path")
    given = command_line_keys()
    taken: dict[str, Any] = {}
    modalities = checkpoint.get("hyper_parameters", {}).get("modalities")
    if modalities and "stream" not in given and list(modalities) != list(cfg.stream.modalities):
        taken["stream"] = {"name": "joint" if len(modalities) > 1 else modalities[0], "modalities": list(modalities)}
    clip, kept = {}, []
    for key, value in checkpoint.get(VideoDataModule.__qualname__, {}).get("clip", {}).items():
        if cfg.data.clip[key] == value:
            continue
        if f"data.clip.{key}" in given:
            kept.append(f"data.clip.{key}={cfg.data.clip[key]} (trained with {value})")
        else:
            clip[key] = value
    if kept:
        log.warning("evaluating with other clip settings than the model was trained with: %s", ", ".join(kept))
    if clip:
        taken["data"] = {"clip": clip}
    evaluated = OmegaConf.merge(cfg, taken)
    run_dir = _run_folder(str(cfg.run_dir), str(evaluated.run_dir), given)
    evaluated = OmegaConf.merge(evaluated, {"run_dir": run_dir})
    said = [f"stream={taken['stream']['name']}"] if "stream" in taken else []
    said += [f"data.clip.{key}={value}" for key, value in clip.items()]
    return evaluated, f"from the checkpoint's training: {', '.join(said)}" if said else ""


def _run_folder(before: str, after: str, given: set[str]) -> str:
    """The run folder: the one Hydra made (``before``, named after the configured stream), moved to
    ``after`` (the name with the stream taken from the checkpoint) unless the user named the folder.
    Hydra's ``${now:...}`` is resolved once per process, so the new name keeps the same time."""
    if after == before or given & {"run_dir", "hydra.run.dir"}:
        return before
    if Path(before).is_dir() and not Path(after).exists():
        Path(after).parent.mkdir(parents=True, exist_ok=True)
        Path(before).rename(after)  # open log files move with it (same file system)
        remove_if_only_hydra_files(Path(before).parent)  # the stream's folder, now empty
        if HydraConfig.initialized():  # where a refusal later looks for the folder to remove
            with read_write(HydraConfig.get().runtime):
                HydraConfig.get().runtime.output_dir = str(Path(after).resolve())
    return after


def evaluate_dataset(cfg: DictConfig) -> Evaluation:
    """Test a model on ``cfg.dataset``'s test split; print the summary table, then write the reports."""
    given = [f"sample.{modality}" for modality, path in cfg.sample.items() if path is not None]
    if given:
        raise UserInputError(f"{', '.join(given)} is an input of the sample evaluation, which has no dataset: "
                             f"drop dataset={cfg.dataset.name} to classify that clip, or drop {given[0]}=... to score "
                             "the dataset")
    cfg, trained = _with_trained_settings(cfg)
    precision = str(cfg.precision)
    # Lightning knows fp32 and bf16 autocast; whether fp32 means IEEE or TF32 is set around the test loop.
    trainer_precision = (lightning_precision(precision), f"from precision={precision}")
    # First: a setting Lightning refuses costs no data preparation.
    trainer = build_trainer(cfg.trainer, precision=trainer_precision, enable_checkpointing=False)
    check_inference_precision(precision, trainer.strategy.root_device)
    datamodule = build_datamodule(cfg.data)
    datamodule.setup("test")
    model = _load_model(cfg, datamodule.num_classes, datamodule.classes)  # on the fast path if cfg.fast
    with float32_mode(float32_mode_on(trainer.strategy.root_device, precision == "tf32")):
        trainer.test(model, datamodule=datamodule, verbose=False)  # the report below says it all
    if not trainer.is_global_zero:
        return Evaluation("")
    results = model.test_results
    metrics: dict[str, Any] = dict(results["accuracies"])
    sampling = datamodule.eval_sampling
    metrics |= {
        "videos_evaluated": len(results["predictions"]), "videos_skipped": len(results["skipped"]),
        "dataset": cfg.dataset.name, "num_classes": datamodule.num_classes, "stream": cfg.stream.name,
        "model": cfg.ckpt_path or {m: cfg.weights[m] for m in model.modalities},
        "protocol": {"whole_video": sampling.whole_video, "num_clips": sampling.num_clips,
                     "num_crops": sampling.num_crops, "clip_len": sampling.clip_len,
                     "crop_size": sampling.crop_size, "short_side": sampling.short_side,
                     "aggregate": model.hparams.aggregate},
    }
    run_dir = Path(cfg.run_dir)
    summary = "\n".join(filter(None, [trained, reports.summary_table(metrics, model.heads)]))
    _show(summary)  # first: a report file that cannot be written loses nothing
    score_kind = "probability" if model.hparams.aggregate == "mean_softmax" else "logit"
    reports.write_reports(run_dir, metrics, results, datamodule.classes, score_kind)
    skipped_list = results["skipped"].write(run_dir / SKIPPED_VIDEOS)  # its header alone when none was skipped
    written = f"reports written to {run_dir}"
    _show(written)
    return Evaluation(f"{summary}\n{written}", len(results["skipped"]), skipped_list)
