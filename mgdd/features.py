"""Random ConvNet feature maps phi(x) and the cached real-image moments they need.

phi is a randomly initialised ConvNet-3 body (conv3x3 -> norm -> ReLU -> avgpool2, x depth),
flattened and scaled by 1/sqrt(d). A fresh network per step approximates the network's
NNGP kernel (the RFAD idea). mgdd's default is a fixed, seeded *pool* of networks whose
real-image statistics are computed once:

    gram[k]  = sum_{i in class k} phi(x_i) phi(x_i)^T     (d x d)
    sums[k]  = sum_{i in class k} phi(x_i)                (d,)
    counts[k]

The KRR loss and the exact full-data label solve need nothing else of the real data
(see krr.py), so after caching no real image passes through a network again, and any
class subset (a meta-learning task) is a sum over its classes.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .allocator import keep_freed_memory
from .data import dataset_fingerprint
from .errors import CorruptFile, MgddError, UsageError
from .models import ConvNet


@dataclass(frozen=True)
class FeatureConfig:
    width: int = 64
    depth: int = 3
    norm: str = "instancenorm"


class FeatureNet(nn.Module):
    """phi: (N, C, H, W) -> (N, d), scaled by 1/sqrt(d) so that K = F F^T is O(1)."""

    def __init__(self, config: FeatureConfig, channels: int, image_size):
        super().__init__()
        body = ConvNet(channels, 1, tuple(image_size), config.width, config.depth, config.norm)
        self.body = body.features
        self.dim = body.feature_dim
        self.scale = self.dim ** -0.5
        self.requires_grad_(False)

    def forward(self, x):
        return self.body(x).flatten(1) * self.scale


def make_feature_net(config: FeatureConfig, channels: int, image_size, seed: int) -> FeatureNet:
    """A deterministic random network: the same seed always gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FeatureNet(config, channels, image_size).eval()


@dataclass
class ClassMoments:
    """Per-class second moments of one network's real features (float64)."""

    gram: torch.Tensor    # (K, d, d)
    sums: torch.Tensor    # (K, d)
    counts: torch.Tensor  # (K,) int64

    def to(self, device) -> "ClassMoments":
        return ClassMoments(self.gram.to(device), self.sums.to(device), self.counts.to(device))

    def for_classes(self, classes=None) -> tuple:
        """(G (d x d), H (d x c), yy, n) for centred one-hot labels over ``classes``."""
        if classes is None:
            classes = list(range(len(self.counts)))
        idx = torch.as_tensor(list(classes), device=self.gram.device)
        c = len(idx)
        gram = self.gram[idx].sum(0)
        s = self.sums[idx]                                   # (c, d)
        cross = (s - s.sum(0, keepdim=True) / c).T           # sum_i phi_i (e_k - 1/c)^T: (d, c)
        n = int(self.counts[idx].sum())
        yy = n * (c - 1) / c                                 # ||Y||^2 for centred one-hot rows
        return gram, cross, yy, n


@torch.no_grad()
def compute_moments(net: FeatureNet, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                    chunk: int = 1024, device="cpu") -> ClassMoments:
    d = net.dim
    gram = torch.zeros(num_classes, d, d, dtype=torch.float64)
    sums = torch.zeros(num_classes, d, dtype=torch.float64)
    net = net.to(device)
    for i in range(0, len(x), chunk):
        f = net(x[i:i + chunk].to(device)).double().cpu()
        yc = y[i:i + chunk]
        for k in yc.unique().tolist():
            fk = f[yc == k]
            gram[k] += fk.T @ fk
            sums[k] += fk.sum(0)
    return ClassMoments(gram, sums, torch.bincount(y, minlength=num_classes))


def moments_digest(m: ClassMoments) -> str:
    """SHA-256 of a network's moments (gram, sums, counts): the feature cache's content check."""
    h = hashlib.sha256()
    for t in (m.gram, m.sums, m.counts):
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def feature_cache_dir() -> Path:
    from .io import cache_root
    return cache_root() / "features"


class FeaturePool:
    """A fixed, seeded pool of random feature networks with cached real-data moments.

    Network i is seeded with ``seed * 1000 + i``; moments are cached in memory and, when
    ``cache`` is true, on disk keyed by (dataset fingerprint, config, seed, i).
    """

    def __init__(self, config: FeatureConfig, channels: int, image_size, size: int = 8, seed: int = 0,
                 cache_dir=None):
        if size < 1:
            raise UsageError(f"the feature pool needs at least 1 network, got {size}.")
        self.config, self.size, self.seed = config, size, seed
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None  # None: feature_cache_dir()
        self.channels, self.image_size = channels, tuple(image_size)
        try:
            self.nets = [make_feature_net(config, channels, image_size, seed * 1000 + i) for i in range(size)]
        except RuntimeError as e:
            raise UsageError(f"feature network {config} does not fit {channels}x{image_size} images ({e}).") from None
        self.dim = self.nets[0].dim
        self._moments = {}

    _warned_cache = False

    def to(self, device):
        self.nets = [n.to(device) for n in self.nets]
        return self

    def moments(self, x, y, num_classes: int, cache: bool = True, device="cpu", progress=None,
                fingerprint: str | None = None) -> list:
        """ClassMoments of every pool network on (x, y), computed once per dataset (``fingerprint``:
        dataset_fingerprint(x, y) when the caller already has it)."""
        fp = self.fingerprint = fingerprint or dataset_fingerprint(x, y)
        out = []
        for i, net in enumerate(self.nets):
            key = (fp, i)
            if key not in self._moments:
                self._moments[key] = self._load_or_compute(net, i, fp, x, y, num_classes, cache, device)
                if progress:
                    progress(i + 1, self.size)
            out.append(self._moments[key])
        return out

    def _cache_path(self, fp: str, i: int) -> Path:
        return self.cache_path(fp, f"n{i}")

    def cache_path(self, fp: str, name: str) -> Path:
        """Where this pool caches ``name`` (n0, n1, ...: a network's moments; start.py: coreset
        orders) for the dataset with fingerprint ``fp``."""
        cfg = "-".join(f"{k}{v}" for k, v in asdict(self.config).items())
        root = self.cache_dir if self.cache_dir is not None else feature_cache_dir()
        return root / f"{fp}-{cfg}-s{self.seed}-{name}.safetensors"

    def _load_or_compute(self, net, i, fp, x, y, num_classes, cache, device) -> ClassMoments:
        from .io import load_tensors, save_tensors

        path = self._cache_path(fp, i)
        if cache and path.is_file():
            try:
                t, info = load_tensors(path)
                m = ClassMoments(t["gram"], t["sums"], t["counts"])
                # shapes, and the digest written with the entry: a damaged entry (bit flips, a NaN,
                # a wrong shape) or one from before digests is recomputed and replaced, never used
                if (m.gram.shape == (num_classes, self.dim, self.dim) and m.sums.shape == (num_classes, self.dim)
                        and m.counts.shape == (num_classes,) and info.get("sha256") == moments_digest(m)):
                    return m
                if "sha256" in info:  # damaged; an entry from before digests is quietly remade
                    print(f"mgdd: warning: the cached feature moments {path.name} fail their check; recomputing "
                          "them.", file=sys.stderr)
            except (CorruptFile, KeyError, RuntimeError):
                pass  # a truncated or unreadable entry is recomputed and replaced
        # the pass frees and re-allocates large activations: keep them in the heap (allocator.py);
        # measured on Fashion-MNIST (60k images, width 64), 34 s a network instead of 70 s
        with keep_freed_memory():
            m = compute_moments(net, x, y, num_classes, device=device)
        if cache:
            try:
                save_tensors(path, {"gram": m.gram, "sums": m.sums, "counts": m.counts},
                             {"kind": "feature-moments", "config": asdict(self.config), "seed": self.seed,
                              "index": i, "sha256": moments_digest(m)}, force=True)
            except (OSError, MgddError) as e:
                # caching is an optimisation; a read-only cache is not an error, but say so once
                if not FeaturePool._warned_cache:
                    FeaturePool._warned_cache = True
                    print(f"mgdd: warning: feature moments not cached ({e}); set MGDD_CACHE to a writable "
                          "folder to reuse them across runs.", file=sys.stderr)
        return m
