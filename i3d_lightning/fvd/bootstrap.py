"""How uncertain an FVD is: the distance recomputed on bootstrap resamples of the embeddings.

An FVD is estimated from a finite set of clips; another draw of as many videos gives another value.
:func:`bootstrap_fvd` draws, ``resamples`` times, as many rows as each side has, with replacement
(seeded), from the embeddings already in memory (nothing is embedded again), and recomputes the
Fréchet distance each time. It reports the mean, the standard deviation and the 2.5 / 97.5 percentiles
of those distances. A side read from a statistics file has no embeddings: it is held fixed, and the
summary says which sides were resampled.

The spread measures the sampling noise of the value, not its bias: the Fréchet distance of finite
samples is biased upward (the covariances' estimation noise adds to the trace term, roughly in
proportion to 1 / clips), so values measured on different numbers of clips are not comparable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from i3d_lightning.fvd.distance import GaussianStatistics, frechet_distance


@dataclass(frozen=True)
class BootstrapSummary:
    """FVD over ``resamples`` bootstrap resamples of the ``resampled`` sides (``seed``): ``mean``,
    ``std`` (n - 1) and the 95% percentile interval ``low`` .. ``high``."""

    resamples: int
    seed: int
    resampled: tuple[str, ...]
    mean: float
    std: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return asdict(self) | {"resampled": list(self.resampled)}

    def describe(self) -> str:
        sides = " and ".join(self.resampled)
        return (f"FVD over {self.resamples} bootstrap resamples of {sides}: mean {self.mean:.6f}, "
                f"std {self.std:.6f}, 95% interval [{self.low:.6f}, {self.high:.6f}] (the spread is the sampling "
                f"noise; a resample repeats clips, which biases its FVD upward, so report the FVD line's value "
                f"with this spread, not this mean)")


def bootstrap_fvd(real: torch.Tensor | GaussianStatistics, fake: torch.Tensor | GaussianStatistics, *,
                  resamples: int, seed: int = 0, covariance: str = "unbiased", square_root: str = "svd",
                  ) -> BootstrapSummary:
    """Bootstrap the FVD of ``real`` and ``fake``: each ``[n, d]`` embeddings (resampled) or fixed
    :class:`GaussianStatistics` (a statistics file's). At least one side must have embeddings. The
    distance is computed as :func:`~i3d_lightning.fvd.distance.frechet_distance` with ``covariance`` and
    ``square_root``."""
    if resamples < 2:
        raise ValueError(f"a bootstrap needs at least 2 resamples, got {resamples}")
    sides = {"real": real, "fake": fake}
    resampled = tuple(name for name, side in sides.items() if isinstance(side, torch.Tensor))
    if not resampled:
        raise ValueError("both sides are statistics files: there are no embeddings to resample")
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(resamples):
        drawn = [_resample(side, generator) for side in sides.values()]
        values.append(frechet_distance(*drawn, covariance=covariance, square_root=square_root))
    distances = torch.tensor(values, dtype=torch.float64)
    low, high = torch.quantile(distances, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return BootstrapSummary(resamples, seed, resampled, float(distances.mean()), float(distances.std()), low, high)


def _resample(side: torch.Tensor | GaussianStatistics, generator: torch.Generator) -> GaussianStatistics:
    if isinstance(side, GaussianStatistics):
        return side
    rows = torch.randint(side.shape[0], (side.shape[0],), generator=generator)
    return GaussianStatistics.from_embeddings(side[rows])
