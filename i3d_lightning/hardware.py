"""What the machine can do well, and the numeric precision chosen from it.

CPUs of the same "2 cores" machine kind differ: Intel CPUs with AMX run bf16 convolutions much
faster than fp32, while CPUs without AMX gain little (AVX-512 bf16 only) or emulate bf16 (AVX2)
and run it far slower (docs/features.md has the measured figures), and oneDNN's bf16 convolution backward
has returned NaN weight gradients on AMD EPYC CPUs with ``avx512_bf16``. So bf16 is chosen
automatically only where it is known to be safe and faster: a CUDA GPU with bf16, or a CPU with AMX.
Benchmarks print :func:`describe_device` so that every figure names the machine it came from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from i3d_lightning.errors import UserInputError

log = logging.getLogger(__name__)

#: The precisions a user may ask Lightning's Trainer for, and ``auto`` (chosen by :func:`auto_precision`).
TRAINER_PRECISIONS = ("auto", "32", "32-true", "bf16", "bf16-mixed", "16", "16-mixed", "64", "64-true")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and its best matrix instructions for bf16: ``amx``, ``avx512_bf16`` or ``none``."""

    model: str
    matrix_isa: str

    def __str__(self) -> str:
        return f"{self.model}, bf16 matrix ISA: {self.matrix_isa}"


def _cpuinfo_text() -> str:
    path = Path("/proc/cpuinfo")
    return path.read_text(errors="replace") if path.is_file() else ""


@cache
def cpu_info() -> CpuInfo:
    """The CPU's model and matrix ISA, from ``/proc/cpuinfo`` on Linux (``platform`` elsewhere, ISA ``none``)."""
    fields: dict[str, str] = {}
    for line in _cpuinfo_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's
    model = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:  # virtual machines often name only the vendor's line ("AMD EPYC")
        model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    if {"amx_bf16", "amx_tile"} <= flags:
        isa = "amx"
    elif "avx512_bf16" in flags:
        isa = "avx512_bf16"
    else:
        isa = "none"
    return CpuInfo(model or "unknown CPU", isa)


def describe_device(device: torch.device | str) -> str:
    """One line naming the hardware: the GPU's name, or the CPU's model, matrix ISA and thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"CPU {cpu_info()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether bf16 is known to be both safe and faster than fp32 here: a CUDA GPU with bf16 support,
    or a CPU with AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_info().matrix_isa == "amx"


def auto_precision(accelerator: str) -> tuple[str, str]:
    """The Trainer precision for ``trainer.precision=auto`` on ``accelerator`` (``cpu``, ``gpu``,
    ``cuda``, ``auto``), and the reason, for the log."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        if bf16_is_fast("cuda"):
            return "bf16-mixed", f"{describe_device('cuda')} supports bf16"
        return "32-true", "this GPU has no bf16 support"
    info = cpu_info()
    if info.matrix_isa == "amx":
        return "bf16-mixed", f"CPU {info.model} has AMX (bf16 matrix units)"
    if info.matrix_isa == "avx512_bf16":
        return "32-true", (f"CPU {info.model} has AVX-512 bf16 but no AMX: bf16 is not faster there, and "
                           "oneDNN's bf16 convolution backward has returned NaN gradients on such CPUs")
    return "32-true", f"CPU {info.model} has no bf16 instructions: bf16 would be emulated, slower than fp32"


def resolve_trainer_precision(precision: object, accelerator: str) -> tuple[str, str]:
    """``trainer.precision`` as Lightning takes it and the reason: ``auto`` is chosen by
    :func:`auto_precision`; any other accepted value is kept as the user's explicit choice."""
    text = str(precision)
    if text not in TRAINER_PRECISIONS:
        raise UserInputError(f"trainer.precision={text} is not a precision; "
                             f"choose one of {', '.join(TRAINER_PRECISIONS)}")
    if text == "auto":
        return auto_precision(accelerator)
    return text, "set explicitly (trainer.precision)"


#: How float32 convolutions and matrix products are computed: ``ieee`` (true fp32) or ``tf32`` (CUDA
#: tensor cores with a 10-bit mantissa, fp32 accumulation; Ampere and later GPUs).
FLOAT32_MODES = ("ieee", "tf32")

# cuDNN convolutions default to TF32 in torch 2.14 (cuBLAS matrix products to IEEE), so "fp32" on an
# Ampere or later GPU is TF32 unless the switches say otherwise. Convolution switches are set one by
# one (torch >= 2.9 API); matrix products only through torch.set_float32_matmul_precision, which
# keeps cuBLAS and oneDNN consistent: setting their switches one by one makes torch refuse to read
# the precision back (it calls that mixing two APIs), and Lightning reads it on every GPU run.
_CONVOLUTION_SWITCHES = ("cudnn.conv", "cudnn.rnn", "mkldnn.conv", "mkldnn.rnn")
_MATMUL_SWITCHES = ("cuda.matmul", "mkldnn.matmul")
_MATMUL_PRECISION = {"ieee": "highest", "tf32": "high"}
_announced: set[str] = set()


def _switch(name: str) -> object:
    backend = torch.backends
    for part in name.split("."):
        backend = getattr(backend, part)
    return backend


def float32_settings() -> dict[str, str | None]:
    """The backends' float32 switches (``fp32_precision`` of ``cudnn.conv``, ``cuda.matmul``, ``mkldnn.conv``,
    ...) and ``matmul_precision``, :func:`torch.get_float32_matmul_precision` (``None`` where torch
    cannot say, after a mix of its two APIs)."""
    try:
        matmul: str | None = torch.get_float32_matmul_precision()
    except RuntimeError:
        matmul = None
    return {name: _switch(name).fp32_precision for name in _CONVOLUTION_SWITCHES + _MATMUL_SWITCHES} | {
        "matmul_precision": matmul}


def set_float32_settings(settings: dict[str, str | None]) -> None:
    """Set what :func:`float32_settings` returned (``matmul_precision`` first, then the switches)."""
    if settings.get("matmul_precision"):
        torch.set_float32_matmul_precision(settings["matmul_precision"])
    for name, value in settings.items():
        if name != "matmul_precision":
            _switch(name).fp32_precision = value


def float32_mode_on(device: torch.device | str, tf32: bool) -> str:
    """``tf32`` where it is asked for and ``device`` is a CUDA GPU (the only place it exists), else ``ieee``:
    on the CPU, float32 stays IEEE fp32 whatever is asked."""
    return "tf32" if tf32 and torch.device(device).type == "cuda" else "ieee"


@contextlib.contextmanager
def float32_mode(mode: str) -> Iterator[None]:
    """Inside: float32 convolutions and matrix products run in ``mode`` on CUDA GPUs: ``ieee`` (true
    fp32 everywhere) or ``tf32`` (cuDNN TF32 convolutions, and matrix products as
    ``torch.set_float32_matmul_precision("high")`` gives them); CPU convolutions stay IEEE fp32.
    On exit every switch is back as it was, so calling the library never changes a user's settings.
    """
    if mode not in FLOAT32_MODES:
        raise ValueError(f"float32 mode must be one of {FLOAT32_MODES}, got {mode!r}")
    saved = float32_settings()
    if mode not in _announced:
        _announced.add(mode)
        log.info("float32 convolutions and matrix products in %s (%s)", mode.upper(),
                 "CUDA tensor cores, 10-bit mantissa" if mode == "tf32" else "true fp32, TF32 off")
    try:
        set_float32_settings({"matmul_precision": _MATMUL_PRECISION[mode], "cudnn.conv": mode, "cudnn.rnn": mode,
                              "mkldnn.conv": "ieee", "mkldnn.rnn": "ieee"})
        yield
    finally:
        set_float32_settings(saved)


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserInputError(f"device={name!r} is not a device (auto, cpu, cuda, cuda:N)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device={name}: this machine has no usable CUDA GPU (use device=cpu or device=auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserInputError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type not in ("cpu", "cuda"):
        raise UserInputError(f"device={name!r}: only cpu and cuda devices are supported")
    return device


#: The precisions of inference (evaluation, features, FVD, export checks).
#: ``32``: IEEE fp32 everywhere (the release's numbers; TF32 off on the GPU too). ``tf32``: fp32 tensors,
#: convolutions and matrix products on a CUDA GPU's TF32 tensor cores (IEEE fp32 on the CPU).
#: ``bf16``: bf16 autocast, what autocast leaves in fp32 computed in IEEE fp32.
INFERENCE_PRECISIONS = ("32", "tf32", "bf16")


def check_precision_name(precision: str) -> str:
    """``precision`` if it is one of :data:`INFERENCE_PRECISIONS`, else one line for the user."""
    if str(precision) not in INFERENCE_PRECISIONS:
        raise UserInputError(f"precision={precision} is not an inference precision; choose one of "
                             f"{', '.join(INFERENCE_PRECISIONS)}")
    return str(precision)


def lightning_precision(precision: str) -> str:
    """Lightning's ``Trainer(precision=...)`` for an inference ``precision``: bf16 autocast, or float32
    (IEEE or TF32: the float32 mode, :func:`inference_precision`, says which)."""
    return "bf16-mixed" if check_precision_name(precision) == "bf16" else "32-true"


def check_inference_precision(precision: str, device: torch.device) -> None:
    """Refuse an unknown ``precision`` (one line for the user); warn when bf16 is asked for where it
    is not known to be faster than fp32 (:func:`bf16_is_fast`: a CPU without AMX emulates or half-uses
    bf16, and runs it slower than fp32; see docs/gpu.md and docs/features.md), and when tf32 is asked
    for off a CUDA GPU (it then means IEEE fp32)."""
    check_precision_name(precision)
    if str(precision) == "bf16" and not bf16_is_fast(device):
        log.warning("precision=bf16 on %s: bf16 is not faster than fp32 here (no AMX; emulated without bf16 "
                    "instructions, far slower) and less exact; precision=32 is the better choice on "
                    "this machine", describe_device(device))
    if str(precision) == "tf32" and torch.device(device).type != "cuda":
        log.warning("precision=tf32 on %s: TF32 is a CUDA GPU mode; here it runs IEEE fp32, as precision=32",
                    describe_device(device))


@contextlib.contextmanager
def inference_precision(device: torch.device, precision: str) -> Iterator[None]:
    """Run the enclosed inference in ``precision`` (:data:`INFERENCE_PRECISIONS`) on ``device``: IEEE or
    TF32 float32 convolutions and products (:func:`float32_mode`), plus bf16 autocast for ``bf16``. The
    process's previous settings are restored on exit."""
    precision = check_precision_name(precision)
    with float32_mode(float32_mode_on(device, precision == "tf32")), \
            torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield
