"""The distilled-set file: one safetensors file anyone can use.

Tensors:
  images  (N, C, H, W) float32, normalised with ``mean``/``std`` below
  labels  (N, num_classes) float32 soft labels, or (N,) int64 hard labels
Metadata (JSON, in the safetensors header under "mgdd"):
  format, mgdd_version, dataset, classes, mean, std, ipc, method, seed, label_kind,
  evaluation (recommended settings), timing, and anything the method adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .errors import CorruptFile
from .io import atomic_path, check_output, load_tensors, save_tensors

FORMAT = "mgdd.distilled/1"
DEFAULT_EVALUATION = {"model": "convnet", "epochs": 300, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
                      "batch_size": 256, "lr_decay": "x0.1 at half", "loss": "mse for soft labels, cross-entropy for hard"}


@dataclass
class DistilledSet:
    images: torch.Tensor
    labels: torch.Tensor
    meta: dict = field(default_factory=dict)

    @property
    def soft(self) -> bool:
        return self.labels.dim() == 2

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def hard_labels(self) -> torch.Tensor:
        return self.labels.argmax(1) if self.soft else self.labels

    @property
    def image_classes(self) -> torch.Tensor:
        """The class each image was made for: class-major blocks of IPC images (mgdd's layout),
        else the argmax of the labels."""
        ipc, n = self.meta.get("ipc"), len(self.images)
        if isinstance(ipc, int) and ipc > 0 and n == ipc * self.num_classes:
            return torch.arange(self.num_classes).repeat_interleave(ipc)
        return self.hard_labels

    def save(self, path, force: bool = False) -> Path:
        validate(self.images, self.labels, self.meta, "distilled set")
        meta = dict(self.meta, format=FORMAT, mgdd_version=__version__,
                    label_kind="soft" if self.soft else "hard")
        meta.setdefault("evaluation", DEFAULT_EVALUATION)
        return save_tensors(path, {"images": self.images.float(), "labels": self.labels}, meta, force)

    @classmethod
    def load(cls, path) -> "DistilledSet":
        tensors, meta = load_tensors(path)
        if meta.get("format") != FORMAT:
            raise CorruptFile(f"{path} is not an mgdd distilled set (format {meta.get('format')!r}, "
                              f"expected {FORMAT!r}).")
        if set(tensors) != {"images", "labels"}:
            raise CorruptFile(f"{path} must hold exactly 'images' and 'labels', found {sorted(tensors)}.")
        validate(tensors["images"], tensors["labels"], meta, str(path))
        return cls(tensors["images"], tensors["labels"], meta)

    def denormalized(self) -> torch.Tensor:
        m = torch.tensor(self.meta["mean"]).view(1, -1, 1, 1)
        s = torch.tensor(self.meta["std"]).view(1, -1, 1, 1)
        return (self.images * s + m).clamp(0, 1)


def validate(images, labels, meta, what: str) -> None:
    for key in ("dataset", "classes", "mean", "std"):
        if key not in meta:
            raise CorruptFile(f"{what}: metadata lacks {key!r}.")
    if not isinstance(meta["classes"], list) or not meta["classes"] or not all(isinstance(c, str) for c in meta["classes"]):
        raise CorruptFile(f"{what}: metadata 'classes' must be a non-empty list of names.")
    for key in ("mean", "std"):
        v = meta[key]
        if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise CorruptFile(f"{what}: metadata {key!r} must be a list of numbers (one per channel).")
    if any(s <= 0 for s in meta["std"]):
        raise CorruptFile(f"{what}: metadata 'std' must be positive.")
    if images.dim() != 4 or images.dtype not in (torch.float32, torch.float64):
        raise CorruptFile(f"{what}: images must be a float (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}.")
    n, c = images.shape[:2]
    k = len(meta["classes"])
    if len(meta["mean"]) != c or len(meta["std"]) != c:
        raise CorruptFile(f"{what}: mean/std have {len(meta['mean'])} entries for {c}-channel images.")
    if labels.dim() == 2:
        if labels.shape != (n, k) or not labels.is_floating_point():
            raise CorruptFile(f"{what}: soft labels must be float ({n}, {k}), got {tuple(labels.shape)}.")
    elif labels.dim() == 1:
        if labels.shape[0] != n or labels.dtype != torch.int64:
            raise CorruptFile(f"{what}: hard labels must be int64 ({n},), got {labels.dtype} {tuple(labels.shape)}.")
        if n and (labels.min() < 0 or labels.max() >= k):
            raise CorruptFile(f"{what}: hard labels must lie in 0..{k - 1}.")
    else:
        raise CorruptFile(f"{what}: labels must be (N,) hard or (N, classes) soft.")
    if not torch.isfinite(images).all() or (labels.is_floating_point() and not torch.isfinite(labels).all()):
        raise CorruptFile(f"{what}: images or labels contain NaN/inf.")


# ---------------------------------------------------------------------------- export

def save_grid(ds: DistilledSet, path, force: bool = False, max_per_class: int = 10) -> Path:
    """A PNG grid: one row per class, up to ``max_per_class`` images each."""
    from PIL import Image

    images, y = ds.denormalized(), ds.image_classes
    rows = []
    for c in range(ds.num_classes):
        rows.append(images[y == c][:max_per_class])
    cols = max(1, max(len(r) for r in rows))
    _, ch, h, w = images.shape
    pad = 2
    canvas = torch.ones(ch, ds.num_classes * (h + pad) + pad, cols * (w + pad) + pad)
    for r, imgs in enumerate(rows):
        for j, im in enumerate(imgs):
            canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + j * (w + pad): pad + j * (w + pad) + w] = im
    arr = (canvas.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    img = Image.fromarray(arr[:, :, 0] if ch == 1 else arr[:, :, :3])
    scale = max(1, 256 // max(1, canvas.shape[1]))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path, force) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def export(ds: DistilledSet, out_dir, formats=("png", "imagefolder", "npz", "pt"), force: bool = False) -> list:
    """Write the set in formats other tools read. Returns the paths written."""
    import io
    import json

    import numpy as np
    from PIL import Image

    from .io import write_bytes, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    pixels = ds.denormalized()
    if "png" in formats:
        written.append(save_grid(ds, out_dir / "grid.png", force))
    if "imagefolder" in formats:
        root = out_dir / "imagefolder"
        if root.exists() and not force:
            check_output(root, force)
        y = ds.image_classes
        for i, (im, c) in enumerate(zip(pixels, y.tolist())):
            cdir = root / f"{c:03d}_{_safe(ds.meta['classes'][c])}"
            cdir.mkdir(parents=True, exist_ok=True)
            arr = (im.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(cdir / f"{i:05d}.png")
        write_json(root / "labels.json", {"labels": ds.labels.tolist(), "label_kind": "soft" if ds.soft else "hard",
                                          "classes": ds.meta["classes"]}, force=True)
        written.append(root)
    if "npz" in formats:
        buf = io.BytesIO()
        np.savez(buf, images=ds.images.numpy(), labels=ds.labels.numpy(), pixels=pixels.numpy(),
                 meta=np.array(json.dumps(ds.meta)))
        written.append(write_bytes(out_dir / "distilled.npz", buf.getvalue(), force))
    if "pt" in formats:
        with atomic_path(out_dir / "distilled.pt", force) as tmp:
            torch.save({"images": ds.images, "labels": ds.labels, "meta_json": json.dumps(ds.meta)}, tmp)
        written.append(out_dir / "distilled.pt")
    return written


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
