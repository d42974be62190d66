"""``FrechetVideoDistance``: FVD (and KVD) as a torchmetrics ``Metric``, equal to TensorFlow's.

States are float64 running sums per side (count, sum, sum of outer products) reduced by summing, so
that the value over N processes equals the value of one process exactly, however the videos are
sharded; the embeddings themselves are kept (float64, 400 per video) only for the kernel distance.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from i3d_lightning.fvd.distance import GaussianStatistics, frechet_distance, kernel_distance
from i3d_lightning.fvd.embedding import VideoEmbedder
from i3d_lightning.fvd.inputs import check_value_convention
from i3d_lightning.weights import WeightsSource, i3d

SIDES = ("real", "fake")


class FrechetVideoDistance(Metric):
    """FVD between the videos given as ``real`` and the others (Unterthiner et al. 2018).

    ``update(videos, real)`` takes ``[N, T, H, W, 3]`` videos with values 0..255 (uint8 or float), or,
    with ``preprocessed=True``, network-ready ``[N, T, 224, 224, 3]`` in [-1, 1]. ``compute()`` returns
    the FVD (float64 as a 0-d tensor); :meth:`compute_kvd` the kernel distance of the same embeddings.
    ``reset_real_features=False`` keeps the real videos' statistics across ``reset()`` (as torchmetrics'
    FID does), so a fixed reference set is embedded once.

    The embedding is the reference's: rgb_scratch (loaded without TensorFlow if need be; ``weights``
    may name another file), TF1 bilinear resize to 224x224, logits averaged over time, ``batch_size``
    videos per network call in ``precision`` (``32``: IEEE fp32, also on a GPU; ``tf32``; ``bf16``).
    Move the metric to the videos' device (``metric.to("cuda")``) to embed there.
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(self, *, weights: str = "rgb_scratch", source: WeightsSource = WeightsSource(),
                 preprocessed: bool = False, reset_real_features: bool = True, fast: bool = True, batch_size: int = 8,
                 precision: str = "32", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        model = i3d(weights=weights, in_channels=3, source=source)
        self.embedder = VideoEmbedder(model, preprocessed=preprocessed, fast=fast, batch_size=batch_size,
                                      precision=precision)
        self.reset_real_features = reset_real_features
        dim = model.num_classes
        for side in SIDES:
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_embeddings", [], dist_reduce_fx="cat")

    def update(self, videos: torch.Tensor, real: bool, *, embedded: bool = False) -> None:
        """Add ``videos`` to the ``real`` or the generated side; ``embedded=True``: they are ``[N, d]``
        embeddings computed elsewhere (e.g. by :class:`VideoEmbedder`), added as they are."""
        if not embedded:
            check_value_convention(videos, "videos", self.embedder.preprocessed)
        x = (videos if embedded else self.embedder(videos)).to(torch.float64)
        side = "real" if real else "fake"
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + x.shape[0])
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + x.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + x.T @ x)
        getattr(self, f"{side}_embeddings").append(x)

    def statistics(self, real: bool) -> GaussianStatistics:
        """Mean and unbiased covariance of one side's embeddings."""
        side = "real" if real else "fake"
        return GaussianStatistics.from_sums(int(getattr(self, f"{side}_count")), getattr(self, f"{side}_sum"),
                                            getattr(self, f"{side}_outer"))

    def compute(self) -> torch.Tensor:
        return torch.tensor(frechet_distance(self.statistics(True), self.statistics(False)), dtype=torch.float64)

    def compute_kvd(self) -> float:
        """Kernel video distance (TF-GAN's kernel classifier distance) between the two sides, over the
        embeddings of every process."""
        with self.sync_context():
            return kernel_distance(dim_zero_cat(self.real_embeddings), dim_zero_cat(self.fake_embeddings))

    def reset(self) -> None:
        if self.reset_real_features:
            super().reset()
            return
        kept = {name: getattr(self, name) for name in self._defaults if name.startswith("real_")}
        super().reset()
        for name, value in kept.items():
            setattr(self, name, value)
