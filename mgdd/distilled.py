"""The distilled-set file: one safetensors file anyone can use.

Tensors:
  images  (N, C, H, W) float32, normalised with ``mean``/``std`` below
  labels  (N, num_classes) float32 soft labels, or (N,) int64 hard labels
  zca_mean (d,), zca_matrix (d, d)   only for sets made from ZCA-whitened data (zca.py): the
          images live in the whitened space, and evaluation whitens the test images with these
Metadata (JSON, in the safetensors header under "mgdd"):
  format, mgdd_version, dataset, classes, mean, std, ipc, method, seed, label_kind,
  evaluation (recommended settings), timing, and anything the method adds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .version import __version__
from .errors import CorruptFile, UsageError
from .io import atomic_path, check_output, load_tensors, save_tensors

FORMAT = "mgdd.distilled/1"
DEFAULT_TEMPERATURE = 0.25  # the best of 0.1 / 0.25 / 0.5 on krr-pixel sets (results/ablation/protocols.md)
# the recommended protocol, saved with every set (mgdd/evaluate.py reads soft_loss and temperature back)
DEFAULT_EVALUATION = {"model": "convnet", "epochs": 300, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
                      "batch_size": 256, "lr_decay": "x0.1 at half",
                      "loss": "cross-entropy: to softmax(labels / temperature) for soft labels, to the class for hard",
                      "soft_loss": "ce", "temperature": DEFAULT_TEMPERATURE}


@dataclass
class DistilledSet:
    images: torch.Tensor
    labels: torch.Tensor
    meta: dict = field(default_factory=dict)
    zca: object = None   # zca.ZCA of the dataset the set was made from, if it was whitened

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
        tensors = {"images": self.images.float(), "labels": self.labels}
        meta.pop("zca", None)
        if self.zca is not None:
            tensors.update(self.zca.tensors())
            meta["zca"] = self.zca.describe()
        return save_tensors(path, tensors, meta, force)

    @classmethod
    def load(cls, path) -> "DistilledSet":
        tensors, meta = load_tensors(path)
        if meta.get("format") != FORMAT:
            raise CorruptFile(f"{path} is not an mgdd distilled set (format {meta.get('format')!r}, "
                              f"expected {FORMAT!r}).")
        from .zca import TENSORS, ZCA
        if set(tensors) not in ({"images", "labels"}, {"images", "labels", *TENSORS}):
            raise CorruptFile(f"{path} must hold 'images' and 'labels' (and, if whitened, {' and '.join(TENSORS)}), "
                              f"found {sorted(tensors)}.")
        validate(tensors["images"], tensors["labels"], meta, str(path))
        zca = None
        if "zca_matrix" in tensors:
            zca = ZCA.from_tensors(tensors, meta.get("zca"), str(path))
            if zca.mean.numel() != tensors["images"][0].numel():
                raise CorruptFile(f"{path}: the stored ZCA transform does not fit its images.")
        return cls(tensors["images"], tensors["labels"], meta, zca)

    def denormalized(self) -> torch.Tensor:
        """Pixels in [0, 1] (un-whitened first for a ZCA set)."""
        images = self.images if self.zca is None else self.zca.invert(self.images)
        m = torch.tensor(self.meta["mean"]).view(1, -1, 1, 1)
        s = torch.tensor(self.meta["std"]).view(1, -1, 1, 1)
        return (images * s + m).clamp(0, 1)


def set_digest(ds: "DistilledSet") -> str:
    """SHA-256 of a set's images and labels: identifies a set's contents without its file (bench
    --retime, and `distill --evaluate --resume`, which keeps the scores of unchanged sets)."""
    h = hashlib.sha256()
    for t in (ds.images.float(), ds.labels.float()):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def distilled_meta(dataset, ipc: int, method: str, seed: int, objective, timing: dict, **extra) -> dict:
    """The metadata every distilled set carries: where it came from and how it was made."""
    meta = {"dataset": dataset.name, "classes": list(dataset.classes), "mean": dataset.mean, "std": dataset.std,
            "image_shape": [dataset.channels, *dataset.image_size], "ipc": ipc, "method": method, "seed": seed,
            "timing": timing, "mgdd_version": __version__}
    if objective is not None:
        meta["objective"] = objective.describe()
        if getattr(objective, "label_mu_picked", None) is not None:  # the last label solve's GCV pick
            meta["objective"]["label_mu_picked"] = objective.label_mu_picked
    meta.update(extra)
    return meta


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
    if n == 0:
        raise CorruptFile(f"{what} holds no images.")
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


EXPORT_FORMATS = ("png", "imagefolder", "npz", "pt")
_EXPORT_FILES = {"png": "grid.png", "imagefolder": "imagefolder", "npz": "distilled.npz", "pt": "distilled.pt"}


def export_paths(out_dir, formats) -> dict:
    """{format: path} that ``export`` writes; refuses unknown or no formats. ``formats``: a list, or
    one comma-separated string ("npz" or "png,npz")."""
    formats = [f.strip() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not any(formats):
        raise UsageError(f"--formats takes a comma-separated list of {', '.join(EXPORT_FORMATS)}; "
                         f"got {','.join(formats)!r}.")
    return {f: Path(out_dir) / _EXPORT_FILES[f] for f in EXPORT_FORMATS if f in formats}


def check_export(out_dir, formats, force: bool = False) -> dict:
    """Fail before writing anything unless every export output may be written."""
    out_dir = Path(out_dir)
    if str(out_dir) == "":
        raise UsageError("the output folder is empty; give a folder name.")
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a folder; export writes a folder. Choose another --out.")
    paths = export_paths(out_dir, formats)
    for fmt, p in paths.items():
        if fmt == "imagefolder":
            if os.path.lexists(p):
                if not force:
                    raise UsageError(f"{p} already exists; pass --force to replace it.")
                _check_our_imagefolder(p)
        else:
            check_output(p, force)
    return paths


def _check_our_imagefolder(root: Path) -> None:
    """An existing export/imagefolder is replaced only if it holds nothing but what export writes."""
    if root.is_symlink() or not root.is_dir():
        raise UsageError(f"{root} exists and is not a folder; mgdd never writes over it. Choose another --out.")
    for p in root.iterdir():
        ours = (p.name == "labels.json" and p.is_file() and not p.is_symlink()) or (
            p.is_dir() and not p.is_symlink()
            and all(f.suffix == ".png" and f.is_file() and not f.is_symlink() for f in p.iterdir()))
        if not ours:
            raise UsageError(f"{root} holds {p.name}, which mgdd export did not write; it is not replaced even "
                             "with --force. Move it or choose another --out.")


def export(ds: DistilledSet, out_dir, formats=EXPORT_FORMATS, force: bool = False) -> list:
    """Write the set in formats other tools read. Returns the paths written.

    Each output appears whole or not at all: files are written atomically, and the
    ImageFolder tree is built beside its final place and swapped in, so a replaced export
    never mixes old and new images.
    """
    import io
    import json
    import shutil
    import tempfile

    import numpy as np
    from PIL import Image

    from .io import write_bytes

    paths = check_export(out_dir, formats, force)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create folder {out_dir}: {e.strerror}. Choose another --out.") from None
    written = []
    pixels = ds.denormalized()
    if "png" in paths:
        written.append(save_grid(ds, paths["png"], force))
    if "imagefolder" in paths:
        root = paths["imagefolder"]
        build = Path(tempfile.mkdtemp(prefix=".imagefolder.", dir=out_dir))
        try:
            y = ds.image_classes
            for i, (im, c) in enumerate(zip(pixels, y.tolist())):
                cdir = build / f"{c:03d}_{_safe(ds.meta['classes'][c])}"
                cdir.mkdir(exist_ok=True)
                arr = (im.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
                Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(cdir / f"{i:05d}.png")
            (build / "labels.json").write_text(json.dumps(
                {"labels": ds.labels.tolist(), "label_kind": "soft" if ds.soft else "hard",
                 "classes": ds.meta["classes"]}, indent=2) + "\n")
            os.chmod(build, 0o755)  # mkdtemp makes 0700
            if os.path.lexists(root):  # checked above: an earlier export of ours, replaced whole
                _check_our_imagefolder(root)
                old = Path(tempfile.mkdtemp(prefix=".imagefolder-old.", dir=out_dir))
                os.replace(root, old / "imagefolder")
                os.replace(build, root)
                shutil.rmtree(old)
            else:
                os.replace(build, root)
        finally:
            if build.exists():
                shutil.rmtree(build)
        written.append(root)
    # a whitened set's images mean nothing without its transform: it travels in every format
    # (zca_mean, zca_matrix, as in the .safetensors file; `pixels` are the images un-whitened)
    zca = ds.zca.tensors() if ds.zca is not None else {}
    meta = {**ds.meta, **({"zca": ds.zca.describe()} if ds.zca is not None else {})}
    if "npz" in paths:
        buf = io.BytesIO()
        np.savez(buf, images=ds.images.numpy(), labels=ds.labels.numpy(), pixels=pixels.numpy(),
                 meta=np.array(json.dumps(meta)), **{k: v.numpy() for k, v in zca.items()})
        written.append(write_bytes(paths["npz"], buf.getvalue(), force))
    if "pt" in paths:
        with atomic_path(paths["pt"], force) as tmp:
            torch.save({"images": ds.images, "labels": ds.labels, "meta_json": json.dumps(meta), **zca}, tmp)
        written.append(paths["pt"])
    return written


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
