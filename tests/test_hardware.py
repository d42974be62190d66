"""Precision chosen by what the CPU does well: bf16 only with AMX (or a bf16 GPU), fp32 elsewhere,
an explicit choice always wins, and the choice is logged. CPUs are simulated through /proc/cpuinfo
texts, so these tests give the same answers on every machine."""

from __future__ import annotations

import logging

import pytest
import torch

from i3d_lightning import hardware
from i3d_lightning.errors import UserInputError
from i3d_lightning.hardware import check_inference_precision
from i3d_lightning.training.run import build_training_trainer
from tests.conftest import compose_config
from tests.simulated_cpus import CPUINFO


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(kind)`` makes this process see the CPU of ``CPUINFO[kind]``."""
    def use(kind: str) -> None:
        monkeypatch.setattr(hardware, "_cpuinfo_text", lambda: CPUINFO[kind])
        hardware.cpu_info.cache_clear()

    yield use
    hardware.cpu_info.cache_clear()


@pytest.mark.parametrize(("kind", "model", "precision"), [
    ("amx", "Intel(R) Xeon(R) Platinum 8480+ (family 6, model 143)", "bf16-mixed"),
    ("avx512_bf16", "AMD EPYC 9B14 (family 25, model 17)", "32-true"),
    ("none", "AMD EPYC (family 23, model 1)", "32-true"),
])
def test_cpu_precision_follows_the_matrix_isa(cpu, kind, model, precision):
    cpu(kind)
    assert hardware.cpu_info() == hardware.CpuInfo(model, kind)
    chosen, reason = hardware.auto_precision("cpu")
    assert chosen == precision and model in reason
    assert f"bf16 matrix ISA: {kind}" in hardware.describe_device("cpu")
    # An explicit choice always wins, on every CPU.
    assert hardware.resolve_trainer_precision("bf16-mixed", "cpu")[0] == "bf16-mixed"
    assert hardware.resolve_trainer_precision(32, "cpu")[0] == "32"


def test_an_unknown_trainer_precision_is_one_clear_error():
    with pytest.raises(UserInputError, match="trainer.precision=17 is not a precision; choose one of auto, 32"):
        hardware.resolve_trainer_precision(17, "cpu")


def _trainer(overrides: list[str], tmp_path):
    cfg = compose_config("train", [f"run_dir={tmp_path}", "logger=[]", *overrides])
    return build_training_trainer(cfg)


def test_the_cpu_trainer_chooses_and_logs_its_precision(cpu, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="i3d_lightning.lightning.builders")
    cpu("amx")
    assert _trainer([], tmp_path).precision == "bf16-mixed"
    assert "precision bf16-mixed: CPU Intel(R) Xeon(R) Platinum 8480+ (family 6, model 143) has AMX" in caplog.text
    assert _trainer(["trainer.precision=32"], tmp_path).precision == "32-true"
    assert "precision 32: set explicitly" in caplog.text
    cpu("avx512_bf16")
    assert _trainer([], tmp_path).precision == "32-true"
    assert "has AVX-512 bf16 but no AMX" in caplog.text


def test_inference_precision_is_checked_and_slow_bf16_is_named(cpu, caplog):
    with pytest.raises(UserInputError, match="precision=16 is not an inference precision; choose one of 32, tf32"):
        check_inference_precision("16", torch.device("cpu"))
    cpu("none")
    check_inference_precision("bf16", torch.device("cpu"))
    assert "bf16 is not faster than fp32 here (no AMX" in caplog.text
    caplog.clear()
    cpu("amx")
    check_inference_precision("bf16", torch.device("cpu"))
    check_inference_precision("32", torch.device("cpu"))
    assert caplog.text == ""
