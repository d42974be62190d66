"""Flow computed on the fly from decoded RGB frames (``data.flow_source=online``), the way the stored
flow JPEGs are made (``i3d-extract-flow``) and the release made its flow: frames at the dataset's
frame rate and shorter side, greyscale, TV-L1 from each frame to the next (:mod:`i3d_lightning.flow.tvl1`),
clipped to +-20 pixels and scaled to [-1, 1]; optionally rounded through the JPEGs' 8 bits, so that a
model trained on stored flow sees the same values.

Where it runs (``where``): in the DataLoader workers on the CPU, or on the accelerator after the batch
is transferred (the workers then send greyscale frame pairs and the crops to take; the DataModule's
``on_after_batch_transfer`` computes the flow there, batched over the videos of a batch). ``auto``
picks the accelerator when the Trainer runs on a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from i3d_lightning.flow.stored import flow_to_pixels
from i3d_lightning.flow.tvl1 import TVL1Parameters, tvl1_flow_in_batches
from i3d_lightning.preprocessing import FLOW_BOUND, crop_views, to_model_range_
from i3d_lightning.settings import check_settings, setting

PLACES = ("auto", "workers", "device")


@dataclass(frozen=True)
class OnlineFlow:
    """How flow is computed on the fly: ``where`` (``auto``, ``workers``, ``device``), ``quantize``
    (round through 8 bits as the stored JPEGs), ``pairs_per_call`` (frame pairs per TV-L1 call: its
    batch) and the TV-L1 parameters (OpenCV's defaults)."""

    where: str = setting("auto", choices=PLACES)
    quantize: bool = True
    pairs_per_call: int = setting(32, minimum=1)
    tvl1: TVL1Parameters = field(default_factory=TVL1Parameters)

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_config(cls, config: OnlineFlow | Mapping[str, Any] | None) -> OnlineFlow:
        if isinstance(config, OnlineFlow):
            return config
        config = dict(config or {})
        return cls(**config | {"tvl1": TVL1Parameters(**dict(config.get("tvl1") or {}))})

    def model_input(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Greyscale pairs, uint8 ``[N, H, W]`` each -> flow ``[N, H, W, 2]`` (x, y) float32 in [-1, 1]."""
        flow = tvl1_flow_in_batches(first, second, self.pairs_per_call, self.tvl1)
        if self.quantize:
            return to_model_range_(flow_to_pixels(flow).float(), 0.0, 255.0)
        return flow.clamp_(-FLOW_BOUND, FLOW_BOUND).div_(FLOW_BOUND)


def device_flow_views(entries: list[dict[str, Any]], online: OnlineFlow) -> list[torch.Tensor]:
    """The flow views ``[V, 2, T, S, S]`` (``[2, T, S, S]`` for a training clip) of each video's
    ``flow_pairs`` entry (from :class:`~i3d_lightning.data.clip_dataset.VideoClipDataset`), computed where
    the pairs are: one TV-L1 pass over all the videos of each frame size."""
    flows: list[torch.Tensor | None] = [None] * len(entries)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for position, entry in enumerate(entries):
        by_size.setdefault(tuple(entry["first"].shape[1:]), []).append(position)
    for positions in by_size.values():
        flow = online.model_input(torch.cat([entries[p]["first"] for p in positions]),
                                  torch.cat([entries[p]["second"] for p in positions]))
        for position, part in zip(positions, flow.split([len(entries[p]["first"]) for p in positions]), strict=True):
            flows[position] = part[entries[position]["order"]]  # distinct frames -> the clips' frames
    return [crop_views("flow", flow, entry["clips"], entry["boxes"], entry["flip"], entry["crop_size"], entry["train"])
            for flow, entry in zip(flows, entries, strict=True)]


def add_device_flow(batch: dict, online: OnlineFlow) -> dict:
    """Replace a transferred, collated batch's ``flow_pairs`` (one entry per video) by its stacked
    ``flow`` views (:func:`device_flow_views`)."""
    batch["flow"] = torch.stack(device_flow_views(batch.pop("flow_pairs"), online))
    return batch
