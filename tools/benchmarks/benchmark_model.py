"""How fast I3D runs here, and how close that is to the machine's own matrix-multiply peak.

    python tools/benchmarks/benchmark_model.py [--device cpu|cuda] [--repeats 3] [--batches 1 4]
        [--precisions 32 tf32 bf16] [--compile] [--no-training]

For 64x224x224 clips (batch 1 and 4 by default): clips/s of the plain model and of each fast-path
setting (batch norm folded, space-to-depth stem, shifted max-pools, channels-last-3d; IEEE fp32, TF32
on a CUDA GPU, or bf16 autocast; optionally torch.compile), the forward FLOPs (counted with
torch.utils.flop_counter: 2 per multiply-add), the achieved GFLOP/s and that as a fraction of the
peak of a large square GEMM of the same precision measured in the same run (the better of the
timings before and after the model's). Also a training step (forward + backward, batch 4 x 32
frames) in clips/s.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from i3d_lightning.hardware import (
    INFERENCE_PRECISIONS,
    cpu_info,
    describe_device,
    float32_mode,
    float32_mode_on,
    inference_precision,
    resolve_device,
)
from i3d_lightning.models import InceptionI3d
from i3d_lightning.models.inference import optimize_for_inference, prepare_input

FRAMES, SIZE = 64, 224


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device: torch.device, repeats: int) -> float:
    """Seconds per call (after one warm-up call)."""
    function()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def gemm_peak(device: torch.device, precision: str, repeats: int, budget_s: float = 20.0) -> float:
    """GFLOP/s of an n x n matrix product (n = 4096 on CPU, 8192 on GPU) in ``precision`` (``32``: IEEE
    fp32, ``tf32``, ``bf16``), the best of ten timings (at least two where one takes long, e.g. bf16
    emulated on a CPU without bf16 instructions): a peak, so that the model's fraction of it is not
    flattered by a slow GEMM run."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = 8192 if device.type == "cuda" else 4096
    if device.type == "cpu" and dtype == torch.bfloat16 and cpu_info().matrix_isa == "none":
        n = 1024  # emulated bf16 is far slower: a 4096 product would take minutes
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    timings: list[float] = []
    start = time.perf_counter()
    with torch.inference_mode(), inference_precision(device, "32" if precision == "bf16" else precision):
        while len(timings) < max(repeats, 10) and (len(timings) < 2 or time.perf_counter() - start < budget_s):
            timings.append(timed(lambda: torch.mm(a, b), device, 1))
    return 2 * n**3 / min(timings) / 1e9


def gemm_peaks(device: torch.device, repeats: int, precisions: list[str]) -> dict[str, float]:
    return {precision: gemm_peak(device, precision, repeats) for precision in precisions}


def model_rows(plain: InceptionI3d, device: torch.device, precisions: list[str], batches: list[int],
               repeats: int, compile: bool = False) -> list[tuple[str, str, int, float, float]]:
    """(setting, precision, batch, clips/s, GFLOP/s) of the plain model and the fast path (and, with
    ``compile``, the compiled fast path) on random 64x224x224 clips; ``plain`` already on ``device``."""
    flops = {batch: forward_flops(InceptionI3d(plain.num_classes, plain.in_channels).eval(), batch)
             for batch in batches}
    # "fast": batch norm folded, space-to-depth stem, shifted max-pools, channels-last-3d (eager);
    # compiled, only the folding and the layout (inductor writes its own pooling kernels).
    settings = [("plain", False, False), ("fast", True, False)]
    if compile:
        settings.append(("folded + channels_last + compile", True, True))
    rows = []
    for label, fast, compiled in settings:
        model = optimize_for_inference(plain, fast=fast, compile=compiled)
        for precision in precisions:
            for batch in batches:
                clip = prepare_input(torch.rand(batch, 3, FRAMES, SIZE, SIZE, device=device) * 2 - 1, fast)
                with torch.inference_mode(), inference_precision(device, precision):
                    seconds = timed(lambda model=model, clip=clip: model(clip), device, repeats)
                rows.append((label, precision, batch, batch / seconds, flops[batch] / seconds / 1e9))
                del clip
    return rows


def print_model_rows(rows: list[tuple[str, str, int, float, float]], peaks: dict[str, float]) -> None:
    print(f"\n{'model':<34} {'precision':>9} {'batch':>5} {'clips/s':>8} {'GFLOP/s':>8} {'of GEMM peak':>12}")
    for label, precision, batch, rate, gflops in rows:
        print(f"{label:<34} {precision:>9} {batch:>5} {rate:>8.2f} {gflops:>8.0f} {gflops / peaks[precision]:>12.0%}")


def forward_flops(model: InceptionI3d, batch: int, frames: int = FRAMES) -> int:
    clip = torch.zeros(batch, 3, frames, SIZE, SIZE)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(clip)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="batch sizes to time")
    parser.add_argument("--precisions", nargs="+", choices=INFERENCE_PRECISIONS,
                        help="default: 32 and bf16, and tf32 on a CUDA GPU")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    parser.add_argument("--no-training", action="store_true", help="skip the training step's timing")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precisions = args.precisions or (["32", "tf32", "bf16"] if device.type == "cuda" else ["32", "bf16"])
    plain = InceptionI3d().eval()
    print(describe_device(device))
    print(f"forward FLOPs of one {FRAMES}x{SIZE}x{SIZE} clip: {forward_flops(plain, 1) / 1e9:.1f} GFLOP")
    plain = plain.to(device)
    before = gemm_peaks(device, args.repeats, precisions)
    if "bf16" in precisions and before["bf16"] < before["32"] / 4:
        # Emulated bf16 (no bf16 instructions): model timings would take hours and say only this.
        precisions = [precision for precision in precisions if precision != "bf16"]
        print(f"bf16 model timings skipped: bf16 matrix products run at {before['bf16']:.1f} GFLOP/s here, "
              f"{before['32'] / before['bf16']:.0f}x slower than fp32")
    rows = model_rows(plain, device, precisions, args.batches, args.repeats, args.compile)
    # A shared or throttled machine changes its own peak during the run: take the better of the
    # GEMM timings before and after the model's, so that no fraction is flattered.
    after = gemm_peaks(device, args.repeats, list(before))
    peaks = {precision: max(before[precision], after[precision]) for precision in before}
    for precision in before:
        print(f"GEMM peak {precision}: {peaks[precision]:.0f} GFLOP/s (before the model timings "
              f"{before[precision]:.0f}, after {after[precision]:.0f})")
    print_model_rows(rows, peaks)
    if args.no_training:
        return
    print("\ntraining step (forward + backward, batch 4 x 32 frames, plain model):")
    model = InceptionI3d().to(device).train()
    clip = torch.rand(4, 3, 32, SIZE, SIZE, device=device) * 2 - 1
    labels = torch.zeros(4, dtype=torch.long, device=device)
    for precision in precisions:
        def step(precision: str = precision) -> None:
            with float32_mode(float32_mode_on(device, precision == "tf32")):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    loss = torch.nn.functional.cross_entropy(model(clip).float(), labels)
                loss.backward()
            model.zero_grad(set_to_none=True)
        print(f"  {precision:>4}: {4 / timed(step, device, args.repeats):.2f} clips/s")


if __name__ == "__main__":
    main()
