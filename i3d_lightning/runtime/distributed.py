"""Several processes (GPUs, nodes) over one dataset: how each samples its share, and how results meet.

Lightning's own DistributedSampler pads every rank to the same count, repeating videos; evaluation
uses :class:`UnpaddedDistributedSampler` instead, so that each video is scored exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank ``r`` of ``n`` takes items ``r, r + n, r + 2n, ...``: no padding, no duplicates; with
    ``groups`` (lists of items, such as a video's tiles), groups ``r, r + n, ...``, each whole and in order.

    (torch's DistributedSampler repeats items to give every rank the same count, which would count
    some test videos twice.) Ranks may get one batch more or less than each other.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 groups: list[list[int]] | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        groups = groups if groups is not None else [[index] for index in range(len(dataset))]
        self.items = [index for group in groups[self.rank::self.num_replicas] for index in group]
        self.num_samples = len(self.items)
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(self.items)


class EpochSampler(DistributedSampler):
    """Shuffles with a permutation drawn from (seed, epoch), sharded over the processes when several run.

    Lightning calls ``set_epoch`` before each epoch; the sampler passes the epoch on to the dataset, so
    that augmentations too depend only on (seed, epoch, item) and a resumed run repeats them exactly.
    Being a DistributedSampler, Lightning uses it as it is on several GPUs instead of wrapping it.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(dataset, num_replicas=dist.get_world_size() if distributed else 1,
                         rank=dist.get_rank() if distributed else 0, shuffle=True, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.epoch = epoch


def is_distributed() -> bool:
    """Whether several processes run together (torch.distributed initialised, world size above 1)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_objects(value: Any) -> list[Any]:
    """``value`` from every process, in rank order (``[value]`` when one process runs). A collective:
    every process must call it."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def close_process_group() -> None:
    """Destroy the default process group, if this process has one, at the end of a run that succeeded.

    Lightning starts a process group for several processes but destroys it at exit only for NCCL. A gloo
    group (CPU runs, multi-node on CPU) left alive at interpreter exit makes some exits abort (SIGABRT,
    "terminate called without an active exception", pytorch/pytorch#190489; 4-9 of 20 two-process runs,
    tools/benchmarks/measure_gloo_exit.py): a finished run would report failure to torchrun. Called only
    after success: on a failure another process may still be inside a collective, and destroying the
    group could wait for it.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
