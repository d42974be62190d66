"""Every value a user can override in ``train.py`` and ``eval.py``, checked once before any work.

Hydra parses ``key=value`` into YAML types, so ``data.batch_size=abc`` arrives as the string ``"abc"``
and ``data.batch_size=-1`` as a negative int: the constructors several layers down would fail with a
traceback, after the run folder was made and perhaps after hours of decoding. :func:`check_config`
refuses the first bad value instead, with one line naming the key, the value and what is allowed (a
:class:`~i3d_lightning.errors.UserInputError`: exit status 2, no run folder left).

Each rule is written once (:func:`rules`):

* a config node whose ``_target_`` is a dataclass of settings (the dataset, ``weights.source``), and
  the sections that :class:`~i3d_lightning.data.clip_dataset.ClipSampling`,
  :class:`~i3d_lightning.flow.online.OnlineFlow` and :class:`~i3d_lightning.flow.tvl1.TVL1Parameters`
  hold (:data:`SECTIONS`), have the rules of its fields (:func:`~i3d_lightning.settings.rules_of`): the
  ones the dataclass enforces itself;
* where the config feeds the network, its minimum clip length and frame size are raised to the
  network's (:data:`NETWORK_MINIMUMS`);
* the keys no dataclass of the library holds (the loader's, the LightningModule's, Lightning's) are in
  :data:`RULES`, with the vocabularies of the modules that use them.

The tests compose every config and check that every leaf key has a rule, and that a bad value for each
rule is refused.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator
from dataclasses import replace

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from i3d_lightning.data.clip_dataset import FLOW_SOURCES, ON_ERROR, ClipSampling
from i3d_lightning.errors import UserInputError
from i3d_lightning.flow.online import OnlineFlow
from i3d_lightning.flow.tvl1 import TVL1Parameters
from i3d_lightning.hardware import INFERENCE_PRECISIONS, TRAINER_PRECISIONS, resolve_device
from i3d_lightning.lightning.classifier import AGGREGATIONS
from i3d_lightning.models.i3d import LEARNED_BLOCKS, MIN_FRAMES, MIN_SIZE
from i3d_lightning.models.streams import STREAMS
from i3d_lightning.settings import Allowed, rules_of, shown
from i3d_lightning.video.decoding import DECODERS
from i3d_lightning.weights.loading import load_weights, read_checkpoint
from i3d_lightning.weights.registry import I3DWeights

#: Config sections held by a library dataclass of settings (besides nodes with a dataclass ``_target_``).
SECTIONS: dict[str, type] = {
    "data.clip": ClipSampling, "data.train_sampling": ClipSampling, "data.eval_sampling": ClipSampling,
    "data.online_flow": OnlineFlow, "data.online_flow.tvl1": TVL1Parameters,
}

#: Where the config's clips and frames reach the network: at least the frames and size it needs.
NETWORK_MINIMUMS: dict[str, int] = {
    "data.clip.clip_len": MIN_FRAMES, "data.clip.short_side": MIN_SIZE, "data.clip.crop_size": MIN_SIZE,
    "data.eval_sampling.max_frames": MIN_FRAMES, "dataset.num_frames": MIN_FRAMES, "dataset.size": MIN_SIZE,
}

_INT, _BOOL, _TEXT, _ANY = Allowed("int"), Allowed("bool"), Allowed("str"), Allowed("any")
_OPTIONAL_TEXT = Allowed("str", optional=True)
_PATH, _OPTIONAL_PATH = Allowed("path"), Allowed("path", optional=True)


def _at_least(minimum: float, *, kind: str = "int", **bounds: object) -> Allowed:
    return Allowed(kind, minimum=minimum, **bounds)


def _above_zero(**bounds: object) -> Allowed:
    return Allowed("number", minimum=0, above=True, **bounds)


#: The keys that no library dataclass holds, with what they may be. ``any``: checked by its user
#: (Lightning, the LightningModule) or where it is used (:func:`check_config`'s own checks below).
RULES: dict[str, Allowed] = {
    "task_name": _TEXT, "seed": _INT, "run_dir": _PATH, "ckpt_path": _OPTIONAL_PATH, "test_after_fit": _BOOL,
    "tf32": _BOOL,
    "precision": Allowed("str", choices=INFERENCE_PRECISIONS), "fast": _BOOL, "device": _TEXT,
    "sample.rgb": _OPTIONAL_PATH, "sample.flow": _OPTIONAL_PATH,
    "stream.name": Allowed("str", choices=tuple(STREAMS)), "stream.modalities": _ANY,
    "weights.rgb": _OPTIONAL_PATH, "weights.flow": _OPTIONAL_PATH,
    # The DataModule (data/datamodule.py); dataset and stream come in by interpolation.
    "data.source": _ANY, "data.modalities": _ANY, "data.report_dir": _OPTIONAL_PATH, "data.seed": _INT,
    "data.batch_size": _at_least(1), "data.eval_batch_size": _at_least(1, optional=True),
    "data.num_workers": _at_least(0, optional=True), "data.worker_timeout": _above_zero(),
    "data.on_error": Allowed("str", choices=ON_ERROR), "data.check_videos": _at_least(0),
    "data.flow_source": Allowed("str", choices=FLOW_SOURCES), "data.decoder": Allowed("str", choices=DECODERS),
    # The LightningModule (lightning/classifier.py) and its optimiser and schedule (Hydra partials).
    "model.modalities": _ANY, "model.weights.rgb": _OPTIONAL_PATH, "model.weights.flow": _OPTIONAL_PATH,
    "model.weights_source": _ANY, "model.seed": _INT,
    "model.dropout": _at_least(0, kind="number", maximum=1),
    "model.trainable_blocks": _at_least(0, maximum=LEARNED_BLOCKS, optional=True),  # null: all
    "model.freeze_bn_stats": _BOOL, "model.bn_momentum": _above_zero(maximum=1, optional=True),
    "model.aggregate": Allowed("str", choices=AGGREGATIONS), "model.eval_chunk": _at_least(1),
    "model.head_lr_scale": _above_zero(),
    "model.optimizer.lr": _above_zero(), "model.optimizer.weight_decay": _at_least(0, kind="number"),
    "model.optimizer.momentum": _at_least(0, kind="number"), "model.optimizer.nesterov": _BOOL,
    "model.scheduler.warmup_fraction": _at_least(0, kind="number", maximum=1, below=True),
    "model.scheduler.milestones": _ANY, "model.scheduler.gamma": _above_zero(),
    # Lightning's Trainer (devices and accelerator: _check_accelerator).
    "trainer.accelerator": _TEXT, "trainer.devices": _ANY, "trainer.strategy": _ANY, "trainer.fast_dev_run": _ANY,
    "trainer.max_epochs": _at_least(1), "trainer.precision": Allowed("str", choices=TRAINER_PRECISIONS),
    "trainer.accumulate_grad_batches": _at_least(1),
    "trainer.gradient_clip_val": _at_least(0, kind="number", optional=True),
    "trainer.log_every_n_steps": _at_least(1), "trainer.num_nodes": _at_least(1),
    "trainer.enable_progress_bar": _BOOL, "trainer.benchmark": _BOOL, "trainer.default_root_dir": _OPTIONAL_PATH,
    "trainer.sync_batchnorm": _BOOL, "trainer.use_distributed_sampler": _BOOL,
    # Checkpoints, the learning-rate monitor, the divergence guard, and the loggers.
    **{f"callbacks.{name}.{key}": rule for name in ("best_checkpoint", "last_checkpoint") for key, rule in {
        "dirpath": _PATH, "filename": _PATH, "monitor": _OPTIONAL_TEXT, "mode": Allowed("str", choices=("min", "max")),
        "save_top_k": _at_least(-1), "auto_insert_metric_name": _BOOL, "enable_version_counter": _BOOL}.items()},
    "callbacks.learning_rate_monitor.logging_interval": Allowed("str", choices=("step", "epoch"), optional=True),
    "callbacks.nonfinite_guard.max_consecutive": _at_least(1),
    **{f"logger.{name}.{key}": rule for name in ("csv", "tensorboard") for key, rule in {
        "save_dir": _PATH, "name": _PATH, "default_hp_metric": _BOOL}.items()},
}


def rules(cfg: DictConfig) -> dict[str, Allowed]:
    """The rule of every key ``cfg`` may hold, a key before those that interpolate it (shallower first:
    ``seed`` before ``data.seed``), so that an error names what the user typed."""
    table = dict(RULES)
    sections = dict(SECTIONS) | dict(_dataclass_targets(cfg))
    for prefix, settings in sections.items():
        table |= {f"{prefix}.{name}": rule for name, rule in rules_of(settings).items()}
    for key, minimum in NETWORK_MINIMUMS.items():
        if key in table and (table[key].minimum or 0) < minimum:
            table[key] = replace(table[key], minimum=minimum, above=False)
    return dict(sorted(table.items(), key=lambda item: item[0].count(".")))


def _dataclass_targets(cfg: DictConfig, prefix: str = "") -> Iterator[tuple[str, type]]:
    """``(key, class)`` of every node of ``cfg`` whose ``_target_`` is a dataclass (its fields are its keys)."""
    for key in cfg:
        node = cfg._get_node(key)
        if node._is_interpolation() or not OmegaConf.is_dict(node):
            continue
        path = f"{prefix}{key}"
        target = _located(node.get("_target_"))
        if isinstance(target, type) and dataclasses.is_dataclass(target):
            yield path, target
        yield from _dataclass_targets(node, f"{path}.")


def _located(target: object) -> object:
    """What a ``_target_`` names (``package.module.Name``), or ``None`` where it names nothing importable
    (Hydra says so, in its words, when the object is made)."""
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None) if target is not None and module else None
    except ImportError:
        return None


def check_config(cfg: DictConfig) -> None:
    """Refuse the first value of ``cfg`` that breaks its rule (see the module), then a checkpoint that is
    not one, an accelerator this machine lacks, initial weights of the stream's modalities that are
    neither a registry name nor a readable weights file, and the sample evaluation's ``device`` where this
    machine has no such device."""
    for key, rule in rules(cfg).items():
        if rule.kind == "any":  # its owner checks it
            continue
        if OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False) is _MISSING:
            continue  # this command's config has no such key
        try:
            value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
        except Exception as error:  # an interpolation that points nowhere
            raise UserInputError(f"{key}: {error}".splitlines()[0]) from None
        problem = rule.problem(value)
        if problem:
            raise UserInputError(f"{key}={shown(value)}: {problem}")
    if OmegaConf.select(cfg, "ckpt_path", default=None):
        read_checkpoint(str(cfg.ckpt_path), "ckpt_path")  # one line of its own when it is not one
    _check_accelerator(cfg)
    for modality in OmegaConf.select(cfg, "stream.modalities", default=None) or ():
        weights = OmegaConf.select(cfg, f"weights.{modality}", default=None)
        if weights is not None and str(weights) not in I3DWeights.__members__:
            load_weights(str(weights))  # one line when it is missing, truncated or not a weights file
    device = OmegaConf.select(cfg, "device", default=None)
    if device is not None and OmegaConf.select(cfg, "dataset", default=None) is None:
        resolve_device(str(device))  # the sample evaluation's: not a device, or not on this machine


_MISSING = object()


def _check_accelerator(cfg: DictConfig) -> None:
    """A GPU trainer where there is none (or fewer than asked): refused now, not by Lightning once the
    data is prepared."""
    devices = OmegaConf.select(cfg, "trainer.devices", default=None)
    if devices is not None and not _devices_valid(devices):
        raise UserInputError(f"trainer.devices={devices}: give a count (1, 2, ...), -1 (all), auto, or a list of "
                             "device indices such as [0,2]")
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if accelerator not in ("gpu", "cuda"):
        return
    if not torch.cuda.is_available():
        raise UserInputError(f"trainer.accelerator={accelerator}: this machine has no usable CUDA GPU "
                             "(use trainer=cpu)")
    if isinstance(devices, int) and devices > torch.cuda.device_count():
        raise UserInputError(f"trainer.devices={devices}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")


def _devices_valid(devices: object) -> bool:
    """What Lightning's ``devices`` takes: a count, -1, ``auto``, ``"0,2"``, or a list of indices."""
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or devices == -1
    if isinstance(devices, str):
        return devices == "auto" or all(part.strip().isdigit() for part in devices.split(","))
    items = list(devices) if OmegaConf.is_list(devices) or isinstance(devices, list) else None
    return bool(items) and all(isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in items)


def override_key(override: str) -> str:
    """The key a command-line override sets: ``+data.clip.fps=30`` -> ``data.clip.fps``."""
    return override.lstrip("+~").split("=", 1)[0]


def command_line_keys() -> set[str]:
    """The keys set on this command's line (Hydra's task overrides); none outside a Hydra run."""
    if not HydraConfig.initialized():
        return set()
    return {override_key(str(override)) for override in HydraConfig.get().overrides.task}
