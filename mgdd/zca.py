"""ZCA whitening: the standard pre-processing of kernel methods on colour data (KIP, FRePo).

Fitted once on a dataset's (mean/std-normalised) training images, applied to its training
and test images, and stored inside every distilled set made from it, so `evaluate` puts the
test images in the same space as the set's images (docs/design.md §9).

With x the flattened image (d = C*H*W) and Sigma = U diag(s) U^T the training covariance,

    zca(x) = (x - m) W,   W = U diag((s + eps)^-1/2) U^T,   eps = regularization * mean(s)

W is symmetric; eps keeps the near-zero directions (pixel noise) from being blown up. The
d x d matrix is why ZCA is limited to d <= MAX_DIMS (3x32x32 = 3072 fits; 3x64x64 does not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import CorruptFile, UsageError

MAX_DIMS = 4096
TENSORS = ("zca_mean", "zca_matrix")


# --zca's sane range, as a fraction of the mean eigenvalue: at 1e-4 the smallest directions are
# scaled up by at most 100x the largest; at 100 the whitening is a scaled identity already
REG_RANGE = (1e-4, 100.0)


@dataclass
class ZCA:
    mean: torch.Tensor     # (d,)
    matrix: torch.Tensor   # (d, d) symmetric
    regularization: float

    @classmethod
    def fit(cls, x: torch.Tensor, regularization: float = 0.1, chunk: int = 4096) -> "ZCA":
        """Fit on images x (N, C, H, W); the covariance is accumulated in float64 chunks."""
        if not REG_RANGE[0] <= regularization <= REG_RANGE[1]:
            raise UsageError(f"--zca {regularization} is outside {REG_RANGE[0]:g} to {REG_RANGE[1]:g} (a fraction of the "
                             "mean eigenvalue: 0.1 is usual); below it the whitening divides by noise, above it "
                             "the images shrink to zero.")
        n, d = len(x), x[0].numel()
        if d > MAX_DIMS:
            raise UsageError(f"ZCA needs a d x d matrix and these images have d = C*H*W = {d} > {MAX_DIMS} "
                             "values; use a smaller --image-size or leave out --zca.")
        if n < 2:
            raise UsageError("ZCA needs at least 2 training images.")
        flat = x.reshape(n, d)
        mean = flat.double().mean(0)
        cov = torch.zeros(d, d, dtype=torch.float64)
        for i in range(0, n, chunk):
            c = flat[i:i + chunk].double() - mean
            cov += c.T @ c
        cov /= n - 1
        s, u = torch.linalg.eigh(cov)
        s = s.clamp_min(0)
        eps = regularization * s.mean()
        matrix = (u * (s + eps).rsqrt()) @ u.T
        return cls(mean.float(), matrix.float(), float(regularization))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> whitened, same shape."""
        self._check(x)
        return ((x.reshape(len(x), -1) - self.mean) @ self.matrix).reshape(x.shape)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Back from the whitened space (for pictures of a set)."""
        self._check(x)
        flat = torch.linalg.solve(self.matrix.double(), x.reshape(len(x), -1).double().T).T
        return (flat.float() + self.mean).reshape(x.shape)

    def _check(self, x):
        if x[0].numel() != len(self.mean):
            raise UsageError(f"the ZCA transform was fitted on images of {len(self.mean)} values; "
                             f"got images of shape {tuple(x.shape[1:])}.")

    # -- stored inside a distilled set: two tensors plus the regularization in its metadata
    def tensors(self) -> dict:
        return {"zca_mean": self.mean, "zca_matrix": self.matrix}

    def describe(self) -> dict:
        return {"regularization": self.regularization, "dims": len(self.mean)}

    @classmethod
    def from_tensors(cls, tensors: dict, info: dict, what: str) -> "ZCA":
        mean, matrix = tensors["zca_mean"], tensors["zca_matrix"]
        d = mean.numel()
        if mean.shape != (d,) or matrix.shape != (d, d) or not isinstance(info, dict):
            raise CorruptFile(f"{what}: the stored ZCA transform is malformed (mean {tuple(mean.shape)}, "
                              f"matrix {tuple(matrix.shape)}).")
        if not (torch.isfinite(mean).all() and torch.isfinite(matrix).all()):
            raise CorruptFile(f"{what}: the stored ZCA transform contains NaN/inf.")
        return cls(mean.float(), matrix.float(), float(info.get("regularization", 0.0)))

    def same_as(self, other: "ZCA") -> bool:
        return other is not None and torch.equal(self.mean, other.mean) and torch.equal(self.matrix, other.matrix)
