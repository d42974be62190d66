"""The non-finite guard: steps with a NaN gradient or loss change nothing and are counted, too many
in a row stop the run with one clear error, and no checkpoint with non-finite weights is written.
NaNs are injected on purpose, so these tests do not depend on any CPU's bf16 kernels."""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from i3d_lightning.errors import TrainingDivergedError
from i3d_lightning.lightning.classifier import I3DClassifier
from i3d_lightning.training.divergence import NonFiniteGuard
from i3d_lightning.weights.loading import check_finite_state_dict
from tests.conftest import run_command


class TinyModel(pl.LightningModule):
    """A linear classifier with a batch norm (running statistics) and SGD with momentum; records its
    state after every batch. ``nan_grad_steps`` / ``nan_loss_steps``: batches whose gradient / loss is
    made NaN."""

    def __init__(self, nan_grad_steps=(), nan_loss_steps=()) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3))
        self.nan_grad_steps, self.nan_loss_steps = set(nan_grad_steps), set(nan_loss_steps)
        self.history: list[tuple[dict[str, torch.Tensor], dict]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        return loss * float("nan") if batch_idx in self.nan_loss_steps else loss

    def on_after_backward(self) -> None:
        if self.trainer.fit_loop.batch_idx in self.nan_grad_steps:
            self.net[1].weight.grad[0, 0] = float("nan")

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        optimizer = self.trainer.optimizers[0]
        self.history.append((copy.deepcopy(self.state_dict()), copy.deepcopy(optimizer.state_dict()["state"])))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def _loader(batches: int = 6) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(4 * batches, 4, generator=generator), torch.randint(0, 3, (4 * batches,),
                                                                                        generator=generator))
    return DataLoader(data, batch_size=4)


def _fit(model: pl.LightningModule, guard: NonFiniteGuard, tmp_path) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, callbacks=[guard],
                         enable_checkpointing=False)
    trainer.fit(model, _loader())
    return trainer


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_same(a[key], b[key])
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("kind", ["gradient", "loss"])
def test_a_non_finite_step_changes_nothing_and_is_counted(tmp_path, kind):
    bad = {2, 3}
    model = TinyModel(**({"nan_grad_steps": bad} if kind == "gradient" else {"nan_loss_steps": bad}))
    guard = NonFiniteGuard(max_consecutive=3)
    trainer = _fit(model, guard, tmp_path)
    assert guard.skipped_steps == 2 and guard.consecutive == 0
    states = [state for state, _ in model.history]
    optimizer_states = [state for _, state in model.history]
    for step in bad:  # weights, batch-norm statistics and momentum exactly as after the last good step
        _assert_same(states[step], states[1])
        _assert_same(optimizer_states[step], optimizer_states[1])
    assert not torch.equal(states[4]["net.1.weight"], states[1]["net.1.weight"])  # training went on
    assert all(torch.isfinite(value).all() for value in model.state_dict().values())
    assert trainer.callback_metrics["train/skipped_steps"] == 2


def test_too_many_in_a_row_stop_the_run_with_advice_and_no_checkpoint(tmp_path):
    model = TinyModel(nan_grad_steps=range(1, 6))
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_train_steps=1, save_top_k=-1)
    guard = NonFiniteGuard(max_consecutive=3)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[guard, checkpoint], default_root_dir=tmp_path)
    with pytest.raises(TrainingDivergedError, match=r"3 steps in a row had non-finite gradients.*"
                                                    r"trainer.precision=32"):
        trainer.fit(model, _loader())
    assert guard.skipped_steps == 3
    # The checkpoints written hold the last good weights: never the NaN ones.
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        check_finite_state_dict(torch.load(path, weights_only=True)["state_dict"], str(path))


def test_a_checkpoint_with_non_finite_weights_is_refused_before_writing():
    model = I3DClassifier(num_classes=3)
    state = model.state_dict()
    state["towers.rgb.logits.weight"][0, 0] = float("inf")
    with pytest.raises(TrainingDivergedError, match="non-finite weights .*towers.rgb.logits.weight"):
        model.on_save_checkpoint({"state_dict": state})
    model.on_save_checkpoint({"state_dict": I3DClassifier(num_classes=3).state_dict()})  # finite: accepted


class InjectNaNGradients(pl.Callback):
    """Used by the CLI test through ``+callbacks.inject._target_=...``: every gradient NaN."""

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for parameter in pl_module.parameters():
            if parameter.grad is not None:
                parameter.grad.fill_(float("nan"))


def test_train_cli_stops_a_diverging_run_with_one_line_and_exit_1(tmp_path, checkpoints_dir, capsys, monkeypatch):
    status, _, stderr = run_command("train.py", [f"hydra.run.dir={tmp_path}", "dataset=synthetic",
                        f"dataset.root={tmp_path / 'synthetic'}",
                        "dataset.train_per_class=2", "dataset.val_per_class=1", "dataset.num_frames=20",
                        "data.num_workers=0", "data.batch_size=2", "data.clip.clip_len=9",
                        "data.clip.short_side=193", "data.clip.crop_size=193",
                        f"weights.source.mirror={checkpoints_dir}", "weights.rgb=rgb_scratch", "logger=[]",
                        "callbacks.nonfinite_guard.max_consecutive=2", "model.trainable_blocks=0",
                        "+callbacks.inject._target_=tests.test_divergence.InjectNaNGradients",
                        "trainer.enable_progress_bar=false"], capsys, monkeypatch)
    assert status == 1, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged: 2 steps in a row had non-finite gradients"), last
    assert "Traceback" not in stderr
    assert list(tmp_path.rglob("*.ckpt")) == []
