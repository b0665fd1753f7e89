"""Training and test images kept as uint8, read as normalised float32 (issue #41).

A dataset read from 8-bit pixels (IDX, CIFAR, PNG, uint8 npz) at its own size keeps them as they
came, a quarter of float32's memory (Tiny-ImageNet's shape, 100,000 images of 3 x 64 x 64: 1.2 GB
against 4.9 GB), and normalises what is read:

    x = (u / 255 - mean) / std          (float32, per channel)

with the same float32 operations, in the same order, as normalising a float copy once in place
(data.make_dataset did so before), so every value read is bit-identical to that copy and every
figure, cache key and fingerprint made from the float copy stands.

    images[idx]        # float32 (k, C, H, W), normalised: an index, a slice, a boolean mask
    images.float()     # the whole split as one float32 tensor (a torch.Tensor's .float() is itself,
                       # so callers that need a whole tensor write `dataset.train_x.float()` either way)
    images.chunks(n)   # float32 blocks of n images, in order, for one pass over the split

A resized or ZCA-whitened dataset, or one read from float pixels, holds float32 tensors instead:
its values are not 8-bit (data.make_dataset decides).
"""

from __future__ import annotations

import torch

READ_CHUNK = 4096  # images normalised at a time where a whole split is read (fingerprint, float())


class Images:
    """(N, C, H, W) uint8 pixels with their per-channel mean and std (float32): the normalised
    images, read on demand. Indexing returns float32 tensors; the uint8 store is never changed."""

    dtype = torch.float32

    def __init__(self, raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        if raw.dtype != torch.uint8 or raw.ndim != 4:
            raise ValueError(f"Images holds (N, C, H, W) uint8 pixels, got {raw.dtype} {tuple(raw.shape)}")
        self.raw = raw
        self._mean = mean.to(torch.float32).view(1, -1, 1, 1)
        self._std = std.to(torch.float32).view(1, -1, 1, 1)

    @property
    def shape(self) -> torch.Size:
        return self.raw.shape

    @property
    def nbytes(self) -> int:
        return self.raw.numel()

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Images({tuple(self.raw.shape)}, uint8, read as normalised float32)"

    def _normalised(self, raw: torch.Tensor) -> torch.Tensor:
        # the order of make_dataset's float path: to float, / 255, - mean, / std (each in float32)
        return raw.float().div_(255.0).sub_(self._mean).div_(self._std)

    def __getitem__(self, idx) -> torch.Tensor:
        raw = self.raw[idx]
        if raw.ndim == 3:  # one image by an integer index
            return self._normalised(raw[None])[0]
        return self._normalised(raw)

    def chunks(self, size: int = READ_CHUNK):
        """Float32 blocks of ``size`` images, in order."""
        for i in range(0, len(self.raw), size):
            yield self._normalised(self.raw[i:i + size])

    def float(self) -> torch.Tensor:
        """Every image as one normalised float32 tensor (4 bytes a value: check the memory first)."""
        out = torch.empty(self.raw.shape, dtype=torch.float32)
        for i, block in zip(range(0, len(self.raw), READ_CHUNK), self.chunks()):
            out[i:i + len(block)] = block
        return out

    def to(self, device) -> torch.Tensor:
        """The normalised images as a float32 tensor on ``device`` (as torch.Tensor.to returns a tensor)."""
        return self.float().to(device)

    def numpy(self):
        return self.float().numpy()

