"""Every value a user can override in ``train.py`` and ``eval.py``, checked once before any work.

Hydra parses ``key=value`` into YAML types, so ``data.batch_size=abc`` arrives as the string ``"abc"``
and ``data.batch_size=-1`` as a negative int: the constructors several layers down would fail with a
traceback, after the run folder was made and perhaps after hours of decoding. :func:`check_config`
walks one table (:data:`RULES`) instead, and refuses the first bad value with one line naming the
key, the value and what is allowed (a :class:`~i3d_lightning.errors.UserInputError`: exit status 2,
no run folder left). Keys a config does not have are skipped, so one table serves both commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from i3d_lightning.errors import UserInputError
from i3d_lightning.hardware import TRAINER_PRECISIONS
from i3d_lightning.models.i3d import LEARNED_BLOCKS, MIN_FRAMES, MIN_SIZE
from i3d_lightning.video.decoding import DECODERS
from i3d_lightning.weights.loading import load_state_dict, read_checkpoint
from i3d_lightning.weights.registry import I3DWeights


@dataclass(frozen=True)
class Rule:
    """What ``key`` may hold: a value of ``kind`` (``int``, ``number``, ``bool``, ``str``, ``checkpoint``:
    a readable ``train.py`` checkpoint) at least ``minimum`` and at most ``maximum`` (numbers), or one of
    ``choices``; ``None`` too where ``optional``."""

    key: str
    kind: str
    minimum: float | None = None
    choices: Sequence[object] = ()
    optional: bool = False
    greater: bool = False  # the minimum itself is not allowed
    maximum: float | None = None

    def problem(self, value: object) -> str | None:
        """What is wrong with ``value``, or ``None``."""
        if value is None:
            return None if self.optional else "a value is required"
        if self.choices:  # a string rule compares as text: `precision: 32` is an int in YAML
            allowed = value in self.choices if self.kind != "str" else str(value) in map(str, self.choices)
            return None if allowed else f"choose one of {', '.join(map(str, self.choices))}"
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind == "str":
            return None if isinstance(value, str) else "must be a string"
        if self.kind == "checkpoint":
            read_checkpoint(str(value), self.key)  # one line of its own when it is not one
            return None
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if self.kind == "int" and not (numeric and float(value).is_integer()):
            return f"must be a whole number{self._range()}"
        if not numeric:
            return f"must be a number{self._range()}"
        too_low = self.minimum is not None and (value < self.minimum or (self.greater and value == self.minimum))
        if too_low or (self.maximum is not None and value > self.maximum):
            return f"must be{self._range()}"
        return None

    def _range(self) -> str:
        bounds = [f"{'above' if self.greater else 'at least'} {self.minimum:g}"] if self.minimum is not None else []
        bounds += [f"at most {self.maximum:g}"] if self.maximum is not None else []
        return f" {' and '.join(bounds)}" if bounds else ""


def _numbers(prefix: str, keys: Sequence[str], **rule: object) -> list[Rule]:
    return [Rule(f"{prefix}.{key}", **rule) for key in keys]


#: Checked in this order (a key that interpolates another would come after it, so that the error names
#: what the user typed).
RULES: list[Rule] = [
    Rule("seed", "int"),
    Rule("ckpt_path", "checkpoint", optional=True),
    Rule("test_after_fit", "bool"),
    Rule("tf32", "bool"),
    Rule("precision", "str", choices=("32", "tf32", "bf16")),
    Rule("fast", "bool"),
    Rule("device", "str"),
    Rule("data.batch_size", "int", minimum=1),
    Rule("data.eval_batch_size", "int", minimum=1, optional=True),
    Rule("data.num_workers", "int", minimum=0, optional=True),
    Rule("data.worker_timeout", "number", minimum=0, greater=True),
    Rule("data.on_error", "str", choices=("skip", "raise")),
    Rule("data.check_videos", "int", minimum=0),
    Rule("data.flow_source", "str", choices=("stored", "online")),
    Rule("data.decoder", "str", choices=DECODERS),
    Rule("data.clip.clip_len", "int", minimum=MIN_FRAMES),
    Rule("data.clip.stride", "int", minimum=1),
    Rule("data.clip.fps", "number", minimum=0, greater=True, optional=True),
    Rule("data.clip.short_side", "int", minimum=MIN_SIZE),
    Rule("data.clip.crop_size", "int", minimum=MIN_SIZE),
    Rule("data.train_sampling.flip", "bool"),
    Rule("data.eval_sampling.num_clips", "int", minimum=1),
    Rule("data.eval_sampling.num_crops", "int", choices=(1, 3)),
    Rule("data.eval_sampling.whole_video", "bool"),
    Rule("data.eval_sampling.max_frames", "int", minimum=MIN_FRAMES, optional=True),
    Rule("data.online_flow.where", "str", choices=("auto", "workers", "device")),
    Rule("data.online_flow.quantize", "bool"),
    Rule("data.online_flow.pairs_per_call", "int", minimum=1),
    *_numbers("data.online_flow.tvl1", ("tau", "lambda_", "theta", "epsilon"), kind="number", minimum=0,
              greater=True),
    *_numbers("data.online_flow.tvl1", ("scales", "warps", "inner_iterations", "outer_iterations"), kind="int",
              minimum=1),
    Rule("data.online_flow.tvl1.scale_step", "number", minimum=0, greater=True),
    Rule("data.online_flow.tvl1.median_filtering", "int", choices=(0, 1, 3, 5)),
    Rule("model.dropout", "number", minimum=0),
    Rule("model.trainable_blocks", "int", minimum=0, maximum=LEARNED_BLOCKS, optional=True),  # null: all
    Rule("model.freeze_bn_stats", "bool"),
    Rule("model.bn_momentum", "number", minimum=0, greater=True, optional=True),
    Rule("model.aggregate", "str", choices=("mean_logits", "mean_softmax")),
    Rule("model.eval_chunk", "int", minimum=1),
    Rule("model.head_lr_scale", "number", minimum=0, greater=True),
    Rule("model.optimizer.lr", "number", minimum=0, greater=True),
    Rule("model.optimizer.weight_decay", "number", minimum=0),
    Rule("model.optimizer.momentum", "number", minimum=0),
    Rule("trainer.max_epochs", "int", minimum=1),
    Rule("trainer.precision", "str", choices=TRAINER_PRECISIONS),
    Rule("trainer.accumulate_grad_batches", "int", minimum=1),
    Rule("trainer.gradient_clip_val", "number", minimum=0, optional=True),
    Rule("trainer.log_every_n_steps", "int", minimum=1),
    Rule("trainer.num_nodes", "int", minimum=1),
    Rule("trainer.enable_progress_bar", "bool"),
    Rule("trainer.benchmark", "bool"),
    Rule("dataset.split", "int", choices=(1, 2, 3)),
    Rule("dataset.layout", "str", choices=("ucf101", "hmdb51")),
    Rule("dataset.num_classes", "int", choices=(400, 600)),
    Rule("dataset.train_per_class", "int", minimum=1),
    Rule("dataset.val_per_class", "int", minimum=1),
    Rule("dataset.num_frames", "int", minimum=MIN_FRAMES),
    Rule("dataset.size", "int", minimum=MIN_SIZE),
    Rule("dataset.seed", "int"),
    Rule("callbacks.best_checkpoint.save_top_k", "int", minimum=-1),
    Rule("callbacks.last_checkpoint.save_top_k", "int", minimum=-1),
    Rule("callbacks.nonfinite_guard.max_consecutive", "int", minimum=1),
]


def check_config(cfg: DictConfig, rules: Sequence[Rule] = RULES) -> None:
    """Refuse the first value of ``cfg`` that breaks a rule (see the module), then initial weights of
    the stream's modalities that are neither a registry name nor a readable weights file."""
    for rule in rules:
        if OmegaConf.select(cfg, rule.key, default=_MISSING, throw_on_missing=False) is _MISSING:
            continue  # this command's config has no such key
        try:
            value = OmegaConf.select(cfg, rule.key, throw_on_resolution_failure=True)
        except Exception as error:  # an interpolation that points nowhere
            raise UserInputError(f"{rule.key}: {error}".splitlines()[0]) from None
        problem = rule.problem(value)
        if problem:
            raise UserInputError(f"{rule.key}={_shown(value)}: {problem}")
    _check_accelerator(cfg)
    for modality in OmegaConf.select(cfg, "stream.modalities", default=None) or ():
        weights = OmegaConf.select(cfg, f"weights.{modality}", default=None)
        if weights is not None and str(weights) not in I3DWeights.__members__:
            load_state_dict(str(weights))  # one line when it is missing, truncated or not a weights file


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


def _shown(value: object) -> str:
    return "null" if value is None else str(value)


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
