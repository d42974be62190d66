"""How fast I3D runs here, and how close that is to the machine's own matrix-multiply peak.

    python tools/benchmark_model.py [--device cpu|cuda] [--repeats 3] [--compile]

For 64x224x224 clips (batch 1 and 4): clips/s of the plain model and of each fast-path setting
(batch norm folded + channels-last-3d, fp32 or bf16 autocast, optionally torch.compile), the forward
FLOPs (counted with torch.utils.flop_counter: 2 per multiply-add), the achieved GFLOP/s and that as
a fraction of the peak of a large square GEMM measured in the same run (fp32 and bf16). Also a
training step (forward + backward, batch 4 x 32 frames) in clips/s.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

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


def gemm_peak(device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    """GFLOP/s of an n x n matrix product (n = 4096 on CPU, 8192 on GPU)."""
    n = 8192 if device.type == "cuda" else 4096
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    with torch.inference_mode():
        seconds = timed(lambda: torch.mm(a, b), device, repeats)
    return 2 * n**3 / seconds / 1e9


def forward_flops(model: InceptionI3d, batch: int, frames: int = FRAMES) -> int:
    clip = torch.zeros(batch, 3, frames, SIZE, SIZE)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(clip)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    plain = InceptionI3d().eval()
    flops = {batch: forward_flops(plain, batch) for batch in (1, 4)}
    plain = plain.to(device)
    peaks = {precision: gemm_peak(device, dtype, args.repeats)
             for precision, dtype in (("32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"{name}; torch {torch.__version__}")
    print(f"GEMM peak measured now: fp32 {peaks['32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    print(f"forward FLOPs of one {FRAMES}x{SIZE}x{SIZE} clip: {flops[1] / 1e9:.1f} GFLOP")

    settings = [("plain", False, False), ("folded + channels_last", True, False)]
    if args.compile:
        settings.append(("folded + channels_last + compile", True, True))
    rows = []
    for label, fast, compiled in settings:
        model = optimize_for_inference(plain, fast=fast, compile=compiled)
        for precision in ("32", "bf16"):
            for batch in (1, 4):
                clip = prepare_input(torch.rand(batch, 3, FRAMES, SIZE, SIZE, device=device) * 2 - 1, fast)
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                            enabled=precision == "bf16"):
                    seconds = timed(lambda model=model, clip=clip: model(clip), device, args.repeats)
                gflops = flops[batch] / seconds / 1e9
                rows.append((label, precision, batch, batch / seconds, gflops, gflops / peaks[precision]))
    print(f"\n{'model':<34} {'precision':>9} {'batch':>5} {'clips/s':>8} {'GFLOP/s':>8} {'of GEMM peak':>12}")
    for label, precision, batch, rate, gflops, fraction in rows:
        print(f"{label:<34} {precision:>9} {batch:>5} {rate:>8.2f} {gflops:>8.0f} {fraction:>12.0%}")

    print("\ntraining step (forward + backward, batch 4 x 32 frames, plain model):")
    model = InceptionI3d().to(device).train()
    clip = torch.rand(4, 3, 32, SIZE, SIZE, device=device) * 2 - 1
    labels = torch.zeros(4, dtype=torch.long, device=device)
    for precision in ("32", "bf16"):
        def step(precision: str = precision) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = torch.nn.functional.cross_entropy(model(clip).float(), labels)
            loss.backward()
            model.zero_grad(set_to_none=True)
        print(f"  {precision:>4}: {4 / timed(step, device, args.repeats):.2f} clips/s")


if __name__ == "__main__":
    main()
