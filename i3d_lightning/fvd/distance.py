"""The distances between two sets of embeddings, in float64, as TF-GAN computes them.

* Fréchet distance (``tfgan.eval.frechet_classifier_distance_from_activations``): means, unbiased
  covariances (divided by n - 1), and ``trace_sqrt_product``: the trace of the symmetric square root of
  ``sqrt(S1) S2 sqrt(S1)``, every square root taken by SVD with singular values below 1e-10 left as
  they are. FVD = |m1 - m2|^2 + tr(S1) + tr(S2) - 2 trace_sqrt_product.
* Kernel distance (``tfgan.eval.kernel_classifier_distance_from_activations``): the unbiased squared
  MMD with the cubic polynomial kernel ``(x.y / d + 1) ** 3``, averaged over blocks of at most
  ``max_block_size`` samples as TF-GAN splits them.

Other ports' choices, explicit and off by default: ``covariance="biased"`` (divided by n, as
StyleGAN-V's and numpy's ``bias=True``) and ``square_root="scipy"`` (``scipy.linalg.sqrtm`` of the
product ``S1 S2``, its real part traced, as StyleGAN-V and pytorch-fid do).

Statistics come as running sums (count, sum, sum of outer products; :class:`GaussianStatistics`), so that
sets gathered from several processes or saved to a file combine exactly.
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass

import torch

from i3d_lightning.errors import UserInputError

#: Singular values below this are not square-rooted (TF-GAN's ``_symmetric_matrix_square_root``).
SQRT_EPSILON = 1e-10
#: How the covariance is normalised: TF-GAN's unbiased (n - 1), or biased (n).
COVARIANCES = ("unbiased", "biased")
#: How ``trace(sqrtm(S1 S2))`` is taken: TF-GAN's SVDs, or ``scipy.linalg.sqrtm``.
SQUARE_ROOTS = ("svd", "scipy")


@dataclass(frozen=True)
class GaussianStatistics:
    """Mean ``[d]`` and unbiased covariance ``[d, d]`` (float64) of ``count`` embeddings."""

    count: int
    mean: torch.Tensor
    covariance: torch.Tensor

    @classmethod
    def from_sums(cls, count: int, total: torch.Tensor, outer: torch.Tensor) -> GaussianStatistics:
        """From ``count``, the sum ``[d]`` and the sum of outer products ``[d, d]`` of the embeddings."""
        if count < 2:
            raise ValueError(f"a covariance needs at least 2 videos, got {count}")
        total, outer = total.to(torch.float64), outer.to(torch.float64)
        mean = total / count
        covariance = (outer - count * torch.outer(mean, mean)) / (count - 1)
        return cls(count, mean, covariance)

    @classmethod
    def from_embeddings(cls, embeddings: torch.Tensor) -> GaussianStatistics:
        """From ``[n, d]`` embeddings."""
        x = embeddings.to(torch.float64)
        return cls.from_sums(x.shape[0], x.sum(0), x.T @ x)

    def normalised(self, covariance: str) -> torch.Tensor:
        """The covariance divided by n - 1 (``unbiased``, as held) or by n (``biased``)."""
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        return self.covariance if covariance == "unbiased" else self.covariance * ((self.count - 1) / self.count)


def symmetric_sqrt(matrix: torch.Tensor, eps: float = SQRT_EPSILON) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by SVD, as TF-GAN takes it."""
    u, s, vh = torch.linalg.svd(matrix)
    root = torch.where(s < eps, s, torch.sqrt(s))
    return (u * root) @ vh


def trace_sqrt_product(sigma: torch.Tensor, sigma_other: torch.Tensor) -> torch.Tensor:
    """``trace(sqrtm(sigma @ sigma_other))`` computed as ``trace(sqrt(sqrt(S1) S2 sqrt(S1)))``."""
    root = symmetric_sqrt(sigma)
    return torch.trace(symmetric_sqrt(root @ (sigma_other @ root)))


def check_distance_choices(covariance: str, square_root: str) -> None:
    """Refuse an unknown choice, or the scipy square root without scipy, before any work."""
    if covariance not in COVARIANCES:
        raise UserInputError(f"covariance must be one of {', '.join(COVARIANCES)}, got {covariance!r}")
    if square_root not in SQUARE_ROOTS:
        raise UserInputError(f"square_root must be one of {', '.join(SQUARE_ROOTS)}, got {square_root!r}")
    if square_root == "scipy" and importlib.util.find_spec("scipy") is None:
        raise UserInputError("the scipy square root needs scipy: pip install scipy")


def scipy_trace_sqrt_product(sigma: torch.Tensor, sigma_other: torch.Tensor) -> torch.Tensor:
    """``trace(sqrtm(sigma @ sigma_other))`` with ``scipy.linalg.sqrtm``, its real part (other ports' way)."""
    import scipy.linalg  # only for this choice: not a dependency of the package

    root = scipy.linalg.sqrtm((sigma @ sigma_other).numpy())
    return torch.tensor(float(root.trace().real), dtype=torch.float64)


def frechet_distance(first: GaussianStatistics, second: GaussianStatistics, *, covariance: str = "unbiased",
                     square_root: str = "svd") -> float:
    """Fréchet distance between two Gaussians (float64 throughout); TF-GAN's unless told otherwise."""
    check_distance_choices(covariance, square_root)
    sigma, sigma_other = first.normalised(covariance), second.normalised(covariance)
    trace_product = (trace_sqrt_product if square_root == "svd" else scipy_trace_sqrt_product)(sigma, sigma_other)
    mean_term = torch.sum((first.mean - second.mean) ** 2)
    return float(torch.trace(sigma + sigma_other) - 2.0 * trace_product + mean_term)


def kernel_distance(first: torch.Tensor, second: torch.Tensor, max_block_size: int = 1024) -> float:
    """Unbiased squared MMD between ``[n, d]`` and ``[m, d]`` embeddings with the kernel
    ``(x.y / d + 1) ** 3``, averaged over TF-GAN's blocks."""
    x, y = first.to(torch.float64), second.to(torch.float64)
    n, m = x.shape[0], y.shape[0]
    blocks = max(1, -(-max(n, m) // max_block_size))  # ceil
    x_bounds, y_bounds = _block_bounds(n, blocks), _block_bounds(m, blocks)
    dim = x.shape[1]
    estimates = []
    for block in range(blocks):
        a = x[x_bounds[block]:x_bounds[block + 1]]
        b = y[y_bounds[block]:y_bounds[block + 1]]
        na, nb = a.shape[0], b.shape[0]
        k_aa = (a @ a.T / dim + 1) ** 3
        k_bb = (b @ b.T / dim + 1) ** 3
        k_ab = (a @ b.T / dim + 1) ** 3
        estimates.append((k_aa.sum() - torch.trace(k_aa)) / (na * (na - 1))
                         + (k_bb.sum() - torch.trace(k_bb)) / (nb * (nb - 1))
                         - 2 * k_ab.mean())
    return float(torch.stack(estimates).mean())


def _block_bounds(count: int, blocks: int) -> list[int]:
    """Where TF-GAN's blocks start and end: the first ones ``count // blocks`` long, the last
    ``count % blocks`` of them one longer."""
    base, longer = divmod(count, blocks)
    sizes = [base] * (blocks - longer) + [base + 1] * longer
    return [0, *itertools.accumulate(sizes)]
