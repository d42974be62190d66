"""How often a two-process gloo run aborts at exit, with and without closing its process group.

    python tools/benchmarks/measure_gloo_exit.py [--runs 20]

Each run is ``torch.distributed.run --standalone --nproc-per-node 2`` of this script as the child: a few all_gathers
(as DDP and the evaluation's result gathering do), then exit, either leaving the process group to the
interpreter's exit (what Lightning does for gloo) or after
:func:`~i3d_lightning.runtime.distributed.close_process_group` (what the commands do after a run that
succeeded). Prints, for each, how many runs failed and how many of those printed
``terminate called without an active exception`` (the SIGABRT of pytorch/pytorch#190489). CPU only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import torch

from i3d_lightning.hardware import describe_device


def child(close: bool) -> None:
    import torch.distributed as dist

    from i3d_lightning.runtime.distributed import close_process_group

    dist.init_process_group("gloo")
    gathered = [torch.zeros(1000) for _ in range(dist.get_world_size())]
    for _ in range(20):
        dist.all_gather(gathered, torch.full((1000,), float(dist.get_rank())))
    results: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(results, {"rank": dist.get_rank()})
    if close:
        close_process_group()


def count_failures(runs: int, close: bool) -> tuple[int, int]:
    """(failed runs, runs whose output has the abort's line) out of ``runs``."""
    failed = aborted = 0
    for _ in range(runs):
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                              __file__, "--child", *(["--close"] if close else [])],
                             capture_output=True, text=True, timeout=300)
        failed += run.returncode != 0
        aborted += "terminate called without an active exception" in run.stdout + run.stderr
    return failed, aborted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--close", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.close)
        return
    print(describe_device("cpu"))
    print("| process group at exit | runs | failed | aborted (SIGABRT) |\n|---|---|---|---|")
    for close, label in ((False, "left to the interpreter"), (True, "closed (close_process_group)")):
        failed, aborted = count_failures(args.runs, close)
        print(f"| {label} | {args.runs} | {failed} | {aborted} |", flush=True)


if __name__ == "__main__":
    main()
