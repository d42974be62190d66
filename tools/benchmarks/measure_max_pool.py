"""What the shifted maxima of the plain model's max-pools gain on this CPU, against PyTorch's kernel.

    python tools/benchmarks/measure_max_pool.py [--batch 4] [--frames 16] [--size 193] [--repeats 2]

Times each of I3D's 13 max-pools on its own input (the shapes of a ``batch x frames x size x size``
clip; by default the quick start's training clips) both ways, checks that both give the same values,
then the plain fp32 model's forward pass (no gradient) on one 64x224x224 clip both ways, in clips/s.
PyTorch's kernel is what the pools run where a gradient flows through them
(``i3d_lightning.models.i3d._shifted_is_faster`` says where and why; this script switches it).
"""

from __future__ import annotations

import argparse

import torch
from benchmark_model import timed  # beside this script

from i3d_lightning.hardware import describe_device
from i3d_lightning.models import i3d

CPU = torch.device("cpu")


def pool_inputs(model: i3d.InceptionI3d, clip: torch.Tensor) -> dict[str, tuple[i3d.MaxPool3dSame, torch.Size]]:
    """Each max-pool of ``model`` and the shape of its input for ``clip``."""
    shapes: dict[str, tuple[i3d.MaxPool3dSame, torch.Size]] = {}

    def record(module: i3d.MaxPool3dSame, args: tuple[torch.Tensor]) -> None:
        shapes.setdefault(names[module], (module, args[0].shape))

    names = {module: name for name, module in model.named_modules() if isinstance(module, i3d.MaxPool3dSame)}
    hooks = [module.register_forward_pre_hook(record) for module in names]
    with torch.inference_mode():
        model(clip)
    for hook in hooks:
        hook.remove()
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=193)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(describe_device(CPU))
    model = i3d.InceptionI3d(num_classes=400).eval()
    shifted_is_faster = i3d._shifted_is_faster
    ways = {"pytorch": lambda x: False, "shifted": shifted_is_faster}
    totals = dict.fromkeys(ways, 0.0)
    print(f"\n{'pool':<28} {'input':<24} {'pytorch s':>9} {'shifted s':>9}")
    clips = torch.zeros(args.batch, 3, args.frames, args.size, args.size)
    for name, (pool, shape) in pool_inputs(model, clips).items():
        x = torch.randn(shape)
        timings, outputs = {}, {}
        for way, choose in ways.items():
            i3d._shifted_is_faster = choose
            outputs[way] = pool(x)
            timings[way] = timed(lambda pool=pool, x=x: pool(x), CPU, args.repeats)
            totals[way] += timings[way]
        assert torch.equal(outputs["pytorch"], outputs["shifted"]), name
        print(f"{name:<28} {tuple(shape)!s:<24} {timings['pytorch']:>9.3f} {timings['shifted']:>9.3f}")
    print(f"{'all pools (same values)':<53} {totals['pytorch']:>9.3f} {totals['shifted']:>9.3f}")
    clip = torch.rand(1, 3, 64, 224, 224) * 2 - 1
    for way, choose in ways.items():
        i3d._shifted_is_faster = choose
        with torch.inference_mode():
            rate = 1 / timed(lambda: model(clip), CPU, args.repeats)
        print(f"plain fp32 model, 1 x 64x224x224, {way} pools: {rate:.3f} clips/s")
    i3d._shifted_is_faster = shifted_is_faster


if __name__ == "__main__":
    main()
