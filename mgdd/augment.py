"""Differentiable DSA-style augmentation for the evaluation protocol (``mgdd evaluate --dsa``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Differentiable DSA-style augmentation: scale, rotate, translate, flip, colour, cutout.

    One random draw per image; x is (N, C, H, W) normalised.
    """
    n = x.shape[0]
    u = lambda *s: torch.rand(*s, generator=generator)  # noqa: E731
    scale = 1 + (u(n, 2) - 0.5) * 0.4                          # +-20%
    theta = (u(n) - 0.5) * 2 * math.radians(15)                 # +-15 degrees
    shift = (u(n, 2) - 0.5) * 0.25                              # +-1/8 of the image
    flip = torch.where(u(n) < 0.5, -1.0, 1.0) if x.shape[1] == 3 else torch.ones(n)
    cos, sin = torch.cos(theta), torch.sin(theta)
    mat = torch.stack([torch.stack([cos * scale[:, 0] * flip, -sin * scale[:, 1], shift[:, 0]], 1),
                       torch.stack([sin * scale[:, 0] * flip, cos * scale[:, 1], shift[:, 1]], 1)], 1)
    grid = F.affine_grid(mat.to(x), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    x = x + (u(n, 1, 1, 1).to(x) - 0.5)                        # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (u(n, 1, 1, 1).to(x) + 0.5) + mean         # contrast
    h, w = x.shape[2:]
    ch, cw = h // 2, w // 2                                     # cutout half-size squares
    cy = (u(n) * h).long(); cx = (u(n) * w).long()
    yy = torch.arange(h).view(1, h, 1); xx = torch.arange(w).view(1, 1, w)
    keep = ~(((yy - cy.view(n, 1, 1)).abs() < ch // 2) & ((xx - cx.view(n, 1, 1)).abs() < cw // 2))
    return x * keep.unsqueeze(1).to(x)
