"""The LightningModule: I3D towers (one per modality), their losses, metrics and optimisation.

``modalities=["rgb"]`` or ``["flow"]``: one tower. ``["rgb", "flow"]`` (joint): two towers, each
trained with its own cross-entropy loss (as in the paper); the joint prediction is the sum of their
logits, and metrics are logged for rgb, flow and joint. Built from plain arguments, so that
``I3DClassifier.load_from_checkpoint(path)`` works without Hydra.

Batches come from :class:`~i3d_lightning.data.datamodule.VideoDataModule`: training clips
``[B, C, T, H, W]``; evaluation views ``[B, V, C, T, H, W]`` whose logits are aggregated per video.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from i3d_lightning.models.i3d import InceptionI3d
from i3d_lightning.models.inference import optimize_for_inference, prepare_input
from i3d_lightning.models.streams import CHANNELS, check_modalities
from i3d_lightning.models.temporal_tiles import tile_feature_sum
from i3d_lightning.runtime.distributed import gather_objects
from i3d_lightning.runtime.skip_report import SkipReport
from i3d_lightning.weights import WeightsSource, load_weights, stream_towers
from i3d_lightning.weights.loading import check_finite_state_dict, read_checkpoint, refuse_non_finite_weights

AGGREGATIONS = ("mean_logits", "mean_softmax")


def metric_names(num_classes: int) -> tuple[str, ...]:
    """The accuracies measured for each head. Top-5 only with more than 5 classes: with 5 or fewer,
    every label is among the top 5 and top-5 would always be 1."""
    return ("top1", "top5", "mean_class_accuracy") if num_classes > 5 else ("top1", "mean_class_accuracy")


def _metrics(num_classes: int) -> MetricCollection:
    metrics = {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
               "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
               "mean_class_accuracy": MulticlassAccuracy(num_classes, top_k=1, average="macro")}
    # compute_groups=False: grouping shared top-1's state with top-5 (top-5 came out equal to top-1).
    return MetricCollection({name: metrics[name] for name in metric_names(num_classes)}, compute_groups=False)


class I3DClassifier(pl.LightningModule):
    """I3D for action classification.

    Args:
        modalities: ``["rgb"]``, ``["flow"]`` or ``["rgb", "flow"]``.
        num_classes: classes of the dataset; a checkpoint with another number gets a new logits layer.
        weights: initial weights per modality (registry name or file; ``None`` = random), loaded when
            a run starts from scratch (not when it resumes from a checkpoint).
        weights_source: where registry weights come from (not saved in checkpoints: it names this
            machine's folders).
        optimizer: a partial taking parameter groups (Hydra ``_partial_: true``), e.g. SGD.
        scheduler: a partial ``scheduler(optimizer, total_steps=...)`` stepping every batch, or None.
        head_lr_scale: learning rate of the logits layers relative to the backbone's.
        trainable_blocks: ``None`` trains everything; ``k`` freezes all but the last ``k`` blocks of
            each tower (the logits layer always trains; ``0`` trains only the logits).
        freeze_bn_stats: keep batch-norm statistics fixed (for small per-GPU batches).
        bn_momentum: momentum of the batch-norm moving statistics while training; ``None`` keeps the
            release's 0.001 (decay 0.999, made for 100k-step Kinetics runs): a short fine-tuning run
            needs a faster one (e.g. PyTorch's usual 0.1), or evaluation sees stale statistics.
        aggregate: how evaluation views of a video combine: ``mean_logits`` or ``mean_softmax``.
        class_names: names of the classes, for reports.
        eval_chunk: views forwarded at once in evaluation (bounds memory).
        fast_inference: test on the fast inference path (:meth:`use_fast_inference_path`, applied when
            the test loop starts, once the weights are in); evaluation only: such a model cannot train.
        seed: the random state (dropout) of each training step is seeded from (seed, step, rank), so a
            run resumed from a checkpoint repeats the uninterrupted run; ``None`` leaves it alone.
    """

    def __init__(self, *, modalities: Sequence[str] = ("rgb",), num_classes: int,
                 weights: Mapping[str, str | None] | None = None, weights_source: WeightsSource | None = None,
                 dropout: float = 0.5, optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
                 head_lr_scale: float = 1.0, trainable_blocks: int | None = None, freeze_bn_stats: bool = False,
                 bn_momentum: float | None = None,
                 aggregate: str = "mean_logits", class_names: Sequence[str] | None = None, eval_chunk: int = 8,
                 fast_inference: bool = False, seed: int | None = 0) -> None:
        super().__init__()
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
        # The optimizer and scheduler factories are code, not data: checkpoints stay loadable with
        # weights_only=True, and load_from_checkpoint needs neither (training passes them again).
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "weights_source"])
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.weights_source = weights_source or WeightsSource()
        self.modalities = check_modalities(modalities)
        self.heads = (*self.modalities, "joint") if len(self.modalities) > 1 else self.modalities
        self.primary_head = self.heads[-1]
        self.towers = nn.ModuleDict({m: InceptionI3d(num_classes, CHANNELS[m], dropout) for m in self.modalities})
        self._frozen_blocks = self._freeze(trainable_blocks)
        if bn_momentum is not None:
            for module in self.towers.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = bn_momentum
        self.train_metrics = nn.ModuleDict({h: _metrics(num_classes) for h in self.heads})
        self.val_metrics = nn.ModuleDict({h: _metrics(num_classes) for h in self.heads})
        self.test_metrics = nn.ModuleDict({h: _metrics(num_classes) for h in self.heads})
        self.confusion = MulticlassConfusionMatrix(num_classes)
        self.skipped = SkipReport()
        self.predictions: list[dict[str, Any]] = []
        self.weights_loaded = False
        self.new_logits: list[str] = []  # modalities whose logits layer is new (weights of other classes)
        self.channels_last = False
        self.test_results: dict[str, Any] = {}
        #: The tiles of the video under way (video_scores): video index -> [({modality: [1, 1024] sum}, steps)].
        self.one_pass_parts: dict[int, list[tuple[dict[str, torch.Tensor], int]]] = {}

    @classmethod
    def from_training_checkpoint(cls, path: str | os.PathLike, what: str = "checkpoint",
                                 **replaced: Any) -> I3DClassifier:
        """The model of a ``train.py`` checkpoint, on the CPU, ``replaced`` taking the place of saved
        arguments (``aggregate``, ``eval_chunk``); one clear error where ``path`` is no checkpoint of
        ``train.py`` or holds non-finite weights (evaluation and export would report NaN without a word),
        before a model is built."""
        refuse_non_finite_weights(read_checkpoint(path, what)["state_dict"], f"{what} {path}")
        return cls.load_from_checkpoint(path, map_location="cpu", **replaced)

    # -- weights and freezing ---------------------------------------------------------------------
    def _initial_weights(self) -> dict[str, str]:
        weights = self.hparams.weights or {}
        return {m: weights[m] for m in self.modalities if weights.get(m)}

    def prepare_data(self) -> None:
        """Fetch and convert the initial weights once per machine, so ranks only read the cache."""
        if not self.weights_loaded:
            for name in self._initial_weights().values():
                load_weights(name, self.weights_source)

    def load_initial_weights(self) -> None:
        """Initialise each tower from ``weights``; where their classes differ from ``num_classes`` the
        tower gets a new (random) logits layer, and its modality is listed in :attr:`new_logits`."""
        self.new_logits = []
        initial = self._initial_weights()
        for modality, tower in stream_towers(initial, initial, source=self.weights_source).items():
            if tower.num_classes != self.hparams.num_classes:
                tower.replace_logits(self.hparams.num_classes)
                self.new_logits.append(modality)
            self.towers[modality].load_state_dict(tower.state_dict())
        self.weights_loaded = True

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.fast_inference:
            raise ValueError("fast_inference=True is for evaluation: the fast path (batch norm folded) cannot train")
        # A resumed or evaluated checkpoint brings its own weights; otherwise start from `weights`.
        if not self.weights_loaded and self.trainer.ckpt_path is None:
            self.load_initial_weights()

    def _freeze(self, trainable_blocks: int | None) -> list[nn.Module]:
        if trainable_blocks is None:
            return []
        frozen = []
        for tower in self.towers.values():
            learned = [block for block in tower.blocks.values() if any(True for _ in block.parameters())]
            cut = max(0, len(learned) - trainable_blocks)
            for block in learned[:cut]:
                block.requires_grad_(False)
                frozen.append(block)
        return frozen

    def _fix_batch_norm_statistics(self) -> None:
        """Put the batch norms whose statistics stay fixed into eval mode: all of them with
        ``freeze_bn_stats``, else those of frozen blocks."""
        holders = [self.towers] if self.hparams.freeze_bn_stats else self._frozen_blocks
        for holder in holders:
            for module in holder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def use_fast_inference_path(self) -> None:
        """Swap each tower for its fast inference form (:func:`optimize_for_inference`: batch norm
        folded, stem and max-pools rewritten, channels-last-3d); evaluation only, it cannot be trained."""
        for modality in self.modalities:
            self.towers[modality] = optimize_for_inference(self.towers[modality], fast=True)
        self.channels_last = True

    # -- forward --------------------------------------------------------------------------------
    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits ``[B, classes]`` per head (modalities, and ``joint`` = their sum) of ``[B, C, T, H, W]`` inputs."""
        logits = {m: self.towers[m](inputs[m]) for m in self.modalities}
        if "joint" in self.heads:
            logits["joint"] = sum(logits[m] for m in self.modalities)
        return logits

    def video_scores(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
        """Per-video scores ``[B, classes]`` per head from views ``[B, V, C, T, H, W]``: the mean over
        views of the logits (``mean_logits``) or of the softmax (``mean_softmax``). A batch that is a
        tile of a video's one pass (``steps``, from :func:`~i3d_lightning.data.segments.one_pass_tiles`)
        gives ``None`` until the video's last tile is in."""
        if "steps" in batch:
            views = self._one_pass_logits(batch)
            if views is None:
                return None
        else:
            views = {}
            for m in self.modalities:
                clips = batch[m]
                flat = prepare_input(clips.flatten(0, 1), self.channels_last)
                logits = torch.cat([self.towers[m](chunk) for chunk in flat.split(self.hparams.eval_chunk)])
                views[m] = logits.view(*clips.shape[:2], -1).float()
        if "joint" in self.heads:
            views["joint"] = sum(views[m] for m in self.modalities)
        if self.hparams.aggregate == "mean_softmax":
            return {h: v.softmax(dim=-1).mean(dim=1) for h, v in views.items()}
        return {h: v.mean(dim=1) for h, v in views.items()}

    def _one_pass_logits(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
        """Logits ``[1, 1, classes]`` per modality of a video whose one pass comes in tiles (batches of
        one): each tile adds its steps' pooled features, and the last gives the logits of their mean (the
        logits layer is linear, so this is the one pass's mean of per-step logits)."""
        video, number, count = int(batch["index"][0]), int(batch["segment"][0]), int(batch["segments"][0])
        first, last = int(batch["steps"][0][0]), int(batch["steps"][1][0])  # collated: a tensor each
        sums = {m: tile_feature_sum(self.towers[m], prepare_input(batch[m][:, 0], self.channels_last),
                                    (first, last)).float()
                for m in self.modalities}
        if number == 0:
            self.one_pass_parts = {}  # the tiles of one video arrive in order, one video at a time
        parts = self.one_pass_parts.setdefault(video, [])
        parts.append((sums, last - first))
        if number < count - 1:
            return None
        del self.one_pass_parts[video]
        if len(parts) < count:  # a tile could not be read: the video is listed as skipped
            return None
        steps = sum(tile_steps for _, tile_steps in parts)
        views = {}
        for m in self.modalities:
            features = sum(part[m] for part, _ in parts) / steps
            views[m] = self.towers[m].logits(features[:, :, None, None, None]).flatten(1)[:, None].float()
        return views

    # -- steps ----------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Every batch, because Lightning restores each submodule's train/eval flag after validation
        # (and the sanity check) from what it recorded before, without calling train().
        self._fix_batch_norm_statistics()
        if self.hparams.seed is not None:
            torch.manual_seed(hash((self.hparams.seed, self.global_step, self.global_rank)) % 2**63)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.skipped.add(batch["skipped"])
        if batch["size"] == 0:
            # Every clip of this batch was unreadable. A zero loss over all trainable parameters keeps
            # the processes of a multi-GPU run in step (skipping the step on one rank would hang DDP).
            return sum(p.sum() * 0.0 for p in self.parameters() if p.requires_grad)
        labels = batch["label"]
        logits = self(batch)
        losses = {m: F.cross_entropy(logits[m].float(), labels) for m in self.modalities}
        loss = sum(losses.values())
        size = batch["size"]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for head in self.heads:
            if head in losses and len(self.modalities) > 1:
                self.log(f"train/loss_{head}", losses[head], batch_size=size)
            self.train_metrics[head].update(logits[head].float(), labels)
            self.log_dict({f"train/{head}/{k}": v for k, v in self.train_metrics[head].items()},
                          on_step=False, on_epoch=True, batch_size=size)
        return loss

    def _evaluation_step(self, batch: dict[str, Any], metrics: nn.ModuleDict, stage: str) -> dict[str, torch.Tensor]:
        self.skipped.add(batch["skipped"])
        if batch["size"] == 0:
            return {}
        scores = self.video_scores(batch)
        if scores is None:  # a tile of a long video's one pass, not its last
            return {}
        labels = batch["label"]
        for head in self.heads:
            metrics[head].update(scores[head], labels)
            for name, metric in metrics[head].items():
                # The progress bar shows the prediction's top-1 alone: more names get cut off there.
                self.log(f"{stage}/{head}/{name}", metric, on_step=False, on_epoch=True, batch_size=batch["size"],
                         prog_bar=head == self.primary_head and name == "top1")
        return scores

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        scores = self._evaluation_step(batch, self.test_metrics, "test")
        if not scores:
            return
        # One ranking feeds both reports, so predictions.csv and the confusion matrix always agree:
        # a stable sort breaks ties by class index (as argmax does) and puts NaN scores first.
        primary = scores[self.primary_head]
        ranking = torch.sort(primary, dim=1, descending=True, stable=True).indices
        self.confusion.update(ranking[:, 0], batch["label"])
        top_classes = ranking[:, :min(5, primary.shape[1])]
        top_scores = primary.gather(1, top_classes)
        for row in range(primary.shape[0]):
            self.predictions.append({
                "index": int(batch["index"][row]), "video_id": batch["video_id"][row],
                "label": int(batch["label"][row]), "top_classes": top_classes[row].tolist(),
                "top_scores": top_scores[row].tolist()})

    def on_test_start(self) -> None:
        if self.hparams.fast_inference and not self.channels_last:  # not twice when tested again
            self.use_fast_inference_path()

    def on_test_epoch_start(self) -> None:
        self.predictions = []
        self.confusion.reset()

    def on_test_epoch_end(self) -> None:
        # Gathered here, while every process is still in the test loop; the accuracies are the values
        # Lightning logs as test/<head>/<name> (torchmetrics computes them once, over every process).
        predictions, skipped = self.gather_results()
        accuracies = {head: {name: float(value) for name, value in self.test_metrics[head].compute().items()}
                      for head in self.heads}
        self.test_results = {"predictions": predictions, "skipped": skipped, "accuracies": accuracies,
                             "confusion": self.confusion.compute().cpu().numpy()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.weights_loaded = True  # a checkpoint's weights replace the initial ones

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Called before anything is written: a diverged model stops the run instead of being saved.
        check_finite_state_dict(checkpoint["state_dict"], f"the checkpoint of step {self.global_step}")

    def gather_results(self) -> tuple[list[dict[str, Any]], SkipReport]:
        """Predictions (sorted by dataset index) and skipped videos of all processes."""
        predictions = [row for rank_rows in gather_objects(self.predictions) for row in rank_rows]
        return sorted(predictions, key=lambda row: row["index"]), self.skipped.gathered()

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("no optimizer configured (model.optimizer)")
        head = [p for tower in self.towers.values() for p in tower.logits.parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        backbone = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = [{"params": backbone, "name": "backbone"}, {"params": head, "name": "head"}]
        optimizer = self.optimizer_factory([group for group in groups if group["params"]])
        for group in optimizer.param_groups:
            if group["name"] == "head":
                group["lr"] *= self.hparams.head_lr_scale
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
