"""Source variants: seeded image transforms that widen meta-training's task distribution.

Why: a meta generator trained on MNIST alone reaches krr-pixel's plateau on another digit
set (digits 28x28) but not on Fashion-MNIST, whose images are filled, shaded shapes rather
than thin strokes (README "Where mgdd stands"). Each variant turns the source into a new
dataset with the same labels, so meta-training can draw its tasks from several looks of
one source (``mgdd meta-train --source mnist --source-variants thick,texture``) without
ever reading the target. A variant may chain transforms with '+': 'thick+texture' thickens,
then shades. docs/design.md §7.

A variant maps images in [0, 1], (N, C, H, W), to images in [0, 1] of the same shape; the
result is renormalised like any loaded dataset (data.make_dataset), so it gets its own
fingerprint and its own cached feature moments. Randomness comes from (seed, variant) only.
"""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F

from .data import Dataset, make_dataset
from .errors import UsageError


def _thick(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # grey dilation: strokes 2 px wider, small gaps close, so digits read as filled shapes
    return F.max_pool2d(x, 3, stride=1, padding=1)


def _blur(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # soft edges: 3x3 binomial smoothing (weights 1 2 1 / 4 on each axis)
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1])


def _texture(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # shading inside the shape: each image times its own smooth random field in [0.35, 1]
    # (7 x 7 uniform noise, bilinear up to H x W), like folds and prints on cloth
    n, _, h, w = x.shape
    field = torch.rand(n, 1, 7, 7, generator=g)
    field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False)
    return x * (0.35 + 0.65 * field)


def _invert(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return 1.0 - x


def _zoom(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # the centre 3/4 of the image scaled back to full size: larger objects nearer the border
    h, w = x.shape[2:]
    ch, cw = round(h * 0.75), round(w * 0.75)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[:, :, top:top + ch, left:left + cw]
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


VARIANTS = {"thick": _thick, "blur": _blur, "texture": _texture, "invert": _invert, "zoom": _zoom}


def _check(variant: str) -> list:
    parts = variant.split("+")
    for p in parts:
        if p not in VARIANTS:
            raise UsageError(f"unknown source variant {p!r} in {variant!r}; use {', '.join(VARIANTS)}, "
                             f"or several joined by '+' (e.g. thick+texture).")
    return parts


def parse_variants(text: str | None) -> list:
    """'thick,thick+texture' -> ['thick', 'thick+texture']; unknown or repeated names are refused."""
    if not text:
        return []
    names = [t.strip() for t in text.split(",")]
    for n in names:
        _check(n)
    if len(set(names)) != len(names):
        raise UsageError(f"--source-variants names a variant twice: {text!r}.")
    return names


def make_variant(dataset: Dataset, variant: str, seed: int = 0) -> Dataset:
    """``dataset`` with ``variant`` applied to every train and test image, renormalised;
    named '<name>~<variant>'. Its labels and class names are the source's."""
    parts = _check(variant)
    if dataset.zca is not None:
        raise UsageError(f"source variants need unwhitened images; {dataset.name} is ZCA-whitened.")
    # the seed and the variant's name fix the random fields, whatever else runs in the process
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(variant.encode()))

    def apply(x):
        out = []
        for i in range(0, len(x), 4096):
            xi = dataset.denormalize(x[i:i + 4096]).clamp_(0, 1)
            for p in parts:
                xi = VARIANTS[p](xi, g).clamp_(0, 1)
            out.append(xi)
        return torch.cat(out).numpy()

    info = dict(dataset.info, variant=variant, variant_of=dataset.name, variant_seed=int(seed))
    return make_dataset(f"{dataset.name}~{variant}", apply(dataset.train_x), dataset.train_y.numpy(),
                        apply(dataset.test_x), dataset.test_y.numpy(), dataset.classes, info)


def with_variants(dataset: Dataset, variants: list, seed: int = 0) -> list:
    """[dataset, *its variants]: the sources meta-training draws its tasks from."""
    return [dataset] + [make_variant(dataset, v, seed) for v in variants]
