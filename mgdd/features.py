"""Random ConvNet feature maps phi(x) and the cached real-image moments they need.

phi is a randomly initialised ConvNet-3 body (conv3x3 -> norm -> ReLU -> avgpool2, x depth),
flattened and scaled by 1/sqrt(d). A fresh network per step approximates the network's
NNGP kernel (the RFAD idea). mgdd's default is a fixed, seeded *pool* of networks whose
real-image statistics are computed once:

    gram     = sum_i phi(x_i) phi(x_i)^T                  (d x d)   the total Gram
    sums[k]  = sum_{i in class k} phi(x_i)                (K x d)
    counts[k]

The KRR loss and the exact full-data label solve need nothing else of the real data
(see krr.py), so after caching no real image passes through a network again. Memory is
one d x d matrix a network whatever the class count K. Meta-training draws class subsets,
and a subset's Gram is the sum of its classes' Grams, so for it (``per_class=True``) the
moments keep one Gram per class, gram[k] = sum_{i in class k} phi_i phi_i^T (K x d x d):
K times the memory, which is why only meta-training asks for it (issue #41).

phi's dimension d = width * (map side)^2 would grow with the image area; the last map is
average-pooled to at most ``grid`` x ``grid`` (4: d = 1,024 at width 64), which leaves 28 and
32 px images (a 4 x 4 map at depth 3) exactly as they were and keeps d at 1,024 at 64 or
128 px.
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
    grid: int = 4  # the last map is average-pooled to at most grid x grid


class FeatureNet(nn.Module):
    """phi: (N, C, H, W) -> (N, d), scaled by 1/sqrt(d) so that K = F F^T is O(1)."""

    def __init__(self, config: FeatureConfig, channels: int, image_size):
        super().__init__()
        if config.grid < 1:
            raise UsageError(f"the feature grid must be at least 1, got {config.grid}.")
        body = ConvNet(channels, 1, tuple(image_size), config.width, config.depth, config.norm)
        self.body = body.features
        h, w = body.map_size
        self.pooled = max(h, w) > config.grid
        if self.pooled:  # a map larger than the grid: d stops growing with the image area
            self.body.append(nn.AdaptiveAvgPool2d((min(h, config.grid), min(w, config.grid))))
            h, w = min(h, config.grid), min(w, config.grid)
        self.dim = config.width * h * w
        self.scale = self.dim ** -0.5
        # activations of one image through the body (floats), for chunk sizes and memory estimates
        self.activation_floats = _activation_floats(channels, tuple(image_size), config)
        self.requires_grad_(False)

    def forward(self, x):
        return self.body(x).flatten(1) * self.scale


def _activation_floats(channels: int, image_size, config: FeatureConfig) -> tuple:
    """Floats of one image's activations: (the largest layer's input and output, which bound a
    no-grad pass; every tensor a backward pass keeps: each layer's conv, norm and pooled maps).
    Upper bounds, used to size chunks and to estimate memory."""
    h, w = image_size
    largest, total = channels * h * w, channels * h * w
    for d in range(config.depth):
        pad = 3 if d == 0 and (h, w) == (28, 28) else 1
        h, w = h + 2 * pad - 2, w + 2 * pad - 2
        largest = max(largest, config.width * h * w)
        total += 2 * config.width * h * w
        h, w = h // 2, w // 2
        total += config.width * h * w
    return 2 * largest, total


def chunk_size(net: FeatureNet, budget_bytes: float | None = None, grad: bool = False) -> int:
    """Images per forward chunk so one chunk's activations stay within ``budget_bytes``: 1 GiB
    for a pass without gradient (1,024 images at 28 px, about 120 at 128 px), 256 MiB for the
    tensors a backward pass keeps (``grad``). A loss summed over several passes (unrolled_loss)
    holds one graph a pass until its backward, so a training pass's budget is the smaller."""
    budget = budget_bytes or (2**28 if grad else 2**30)
    per_image = 4 * net.activation_floats[1 if grad else 0]
    return int(max(1, min(1024, budget // per_image)))


def make_feature_net(config: FeatureConfig, channels: int, image_size, seed: int) -> FeatureNet:
    """A deterministic random network: the same seed always gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FeatureNet(config, channels, image_size).eval()


class _Streamed(torch.autograd.Function):
    """phi(x) a chunk at a time, with the exact gradient: the backward pass runs each chunk's
    forward again and back-propagates it alone, so memory holds one chunk's activations instead
    of the whole set's (a checkpointed forward; phi is per-image, so chunks do not interact)."""

    @staticmethod
    def forward(ctx, x, net, chunk):
        ctx.net, ctx.chunk = net, chunk
        ctx.save_for_backward(x)
        with torch.no_grad():
            return _chunked(net, x, chunk)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        out = torch.empty_like(x)
        for i in range(0, len(x), ctx.chunk):
            with torch.enable_grad():
                xi = x[i:i + ctx.chunk].detach().requires_grad_(True)
                (out[i:i + ctx.chunk],) = torch.autograd.grad(ctx.net(xi), xi, grad[i:i + ctx.chunk])
        return out, None, None


def features(net: FeatureNet, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """phi(x) (N, d) in bounded memory: one pass when the set fits one chunk (``chunk``: by
    default chunk_size, for a backward pass when x needs a gradient), else chunk by chunk,
    streamed through the backward pass as well (_Streamed)."""
    grad = x.requires_grad and torch.is_grad_enabled()
    chunk = chunk or chunk_size(net, grad=grad)
    if len(x) <= chunk:
        return net(x)
    if grad:
        return _Streamed.apply(x, net, chunk)
    return _chunked(net, x, chunk)


def _chunked(net: FeatureNet, x: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([net(x[i:i + chunk]) for i in range(0, len(x), chunk)])


@dataclass
class ClassMoments:
    """Second moments of one network's real features (float64): the total Gram, or with
    ``per_class`` one Gram per class (module docstring)."""

    gram: torch.Tensor    # (d, d) total, or (K, d, d) per class
    sums: torch.Tensor    # (K, d)
    counts: torch.Tensor  # (K,) int64

    @property
    def per_class(self) -> bool:
        return self.gram.dim() == 3

    def to(self, device) -> "ClassMoments":
        return ClassMoments(self.gram.to(device), self.sums.to(device), self.counts.to(device))

    def for_classes(self, classes=None) -> tuple:
        """(G (d x d), H (d x c), yy, n) for centred one-hot labels over ``classes`` (None: all)."""
        k = len(self.counts)
        idx = torch.as_tensor(list(range(k) if classes is None else classes), device=self.sums.device)
        if sorted(idx.tolist()) == list(range(k)):  # every class (in any order): the total Gram
            gram = self.total_gram()
        elif not self.per_class:
            raise UsageError("these feature moments keep only the total Gram, so they serve the whole class set, "
                             "not the class subset asked for; build the objective with class_subsets=True "
                             "(meta-training does).")
        else:
            gram = self.gram[idx].sum(0)
        c = len(idx)
        s = self.sums[idx]                                   # (c, d)
        cross = (s - s.sum(0, keepdim=True) / c).T           # sum_i phi_i (e_k - 1/c)^T: (d, c)
        n = int(self.counts[idx].sum())
        yy = n * (c - 1) / c                                 # ||Y||^2 for centred one-hot rows
        return gram, cross, yy, n

    def total_gram(self) -> torch.Tensor:
        """sum_i phi_i phi_i^T over every class (d x d); summed once from per-class Grams."""
        if not self.per_class:
            return self.gram
        if "_total" not in self.__dict__:
            self.__dict__["_total"] = self.gram.sum(0)
        return self.__dict__["_total"]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.gram, self.sums, self.counts))


def moments_bytes(num_classes: int, dim: int, per_class: bool) -> int:
    """Bytes of one network's moments (float64 Gram(s) and sums)."""
    return 8 * ((num_classes if per_class else 1) * dim * dim + num_classes * dim)


@torch.no_grad()
def compute_moments(net: FeatureNet, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                    chunk: int | None = None, device="cpu", per_class: bool = False) -> ClassMoments:
    """The moments of ``net``'s features on (x, y), a chunk of images at a time (``chunk``: by
    default chunk_size's, about 1 GiB of activations)."""
    d = net.dim
    chunk = chunk or chunk_size(net)
    gram = torch.zeros(*((num_classes,) if per_class else ()), d, d, dtype=torch.float64)
    sums = torch.zeros(num_classes, d, dtype=torch.float64)
    net = net.to(device)
    for i in range(0, len(x), chunk):
        f = net(x[i:i + chunk].to(device)).double().cpu()
        yc = y[i:i + chunk]
        sums.index_add_(0, yc, f)
        if not per_class:
            gram += f.T @ f
            continue
        for k in yc.unique().tolist():
            fk = f[yc == k]
            gram[k] += fk.T @ fk
    return ClassMoments(gram, sums, torch.bincount(y, minlength=num_classes))


def moments_digest(m: ClassMoments) -> str:
    """SHA-256 of a network's moments (gram, sums, counts): the feature cache's content check."""
    h = hashlib.sha256()
    for t in (m.gram, m.sums, m.counts):
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def feature_cache_dir() -> Path:
    from .io import cache_root
    return cache_root() / "features"


class FeaturePool:
    """A fixed, seeded pool of random feature networks with cached real-data moments.

    Network i is seeded with ``seed * 1000 + i``; moments are cached in memory and, when
    ``cache`` is true, on disk keyed by (dataset fingerprint, config, seed, i, layout).

    Under torchrun (torch.distributed initialised, several ranks) each rank passes its share
    of the training images (rank, rank + world, ...) through the networks and the moments are
    summed across ranks (all_reduce): every rank ends with the single-process moments, up to
    the order of the float64 sums.
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
        self.pooled = self.nets[0].pooled
        self._moments = {}
        self.computed = 0  # networks whose moments this pool computed (not read from the cache)

    _warned_cache = False

    def to(self, device):
        self.nets = [n.to(device) for n in self.nets]
        return self

    def describe_config(self) -> dict:
        """The feature config that takes effect: ``grid`` only where it pools (so 28 and 32 px
        records, and cache keys, read as they did before the option)."""
        out = asdict(self.config)
        if not self.pooled:
            del out["grid"]
        return out

    def moments(self, x, y, num_classes: int, cache: bool = True, device="cpu", progress=None,
                fingerprint: str | None = None, per_class: bool = False) -> list:
        """ClassMoments of every pool network on (x, y), computed once per dataset (``fingerprint``:
        dataset_fingerprint(x, y) when the caller already has it); ``per_class``: one Gram per
        class (class-subset tasks) instead of the total."""
        fp = self.fingerprint = fingerprint or dataset_fingerprint(x, y)
        out = []
        for i, net in enumerate(self.nets):
            key = (fp, i, per_class)
            if key not in self._moments:
                self._moments[key] = self._load_or_compute(net, i, fp, x, y, num_classes, cache, device, per_class)
                if progress:
                    progress(i + 1, self.size)
            out.append(self._moments[key])
        return out

    def _cache_path(self, fp: str, i: int, per_class: bool = True) -> Path:
        return self.cache_path(fp, f"n{i}" if per_class else f"n{i}-total")

    def cache_path(self, fp: str, name: str) -> Path:
        """Where this pool caches ``name`` (n0, n1, ...: a network's per-class moments; n0-total:
        its total Gram; start.py: coreset orders) for the dataset with fingerprint ``fp``."""
        cfg = "-".join(f"{k}{v}" for k, v in self.describe_config().items())
        root = self.cache_dir if self.cache_dir is not None else feature_cache_dir()
        return root / f"{fp}-{cfg}-s{self.seed}-{name}.safetensors"

    def _read(self, path: Path, num_classes: int, per_class: bool) -> ClassMoments | None:
        """A cache entry, or None when it is absent, unreadable or fails its check."""
        from .io import load_tensors

        if not path.is_file():
            return None
        try:
            t, info = load_tensors(path)
            m = ClassMoments(t["gram"], t["sums"], t["counts"])
            gram_shape = ((num_classes,) if per_class else ()) + (self.dim, self.dim)
            # shapes, and the digest written with the entry: a damaged entry (bit flips, a NaN,
            # a wrong shape) or one from before digests is recomputed and replaced, never used
            if (m.gram.shape == gram_shape and m.sums.shape == (num_classes, self.dim)
                    and m.counts.shape == (num_classes,) and info.get("sha256") == moments_digest(m)):
                return m
            if "sha256" in info:  # damaged; an entry from before digests is quietly remade
                print(f"mgdd: warning: the cached feature moments {path.name} fail their check; recomputing "
                      "them.", file=sys.stderr)
        except (CorruptFile, KeyError, RuntimeError):
            pass  # a truncated or unreadable entry is recomputed and replaced
        return None

    def _load_or_compute(self, net, i, fp, x, y, num_classes, cache, device, per_class) -> ClassMoments:
        from .memory import available_bytes

        world, rank = distributed_world()
        path = self._cache_path(fp, i, per_class)
        m = self._read(path, num_classes, per_class) if cache else None
        if m is None and cache and not per_class:
            # a per-class entry made earlier (by meta-training, or before the total layout) holds
            # the total too: summed once, when it fits next to what is already loaded
            full = self._cache_path(fp, i, True)
            have = available_bytes()
            if full.is_file() and (have is None or 2 * full.stat().st_size < have):
                per = self._read(full, num_classes, True)
                if per is not None:
                    m = ClassMoments(per.gram.sum(0), per.sums, per.counts)
                    del per
                    self._write(path, m, i)
        if world > 1:  # every rank computes, or none: rank 0's view of the cache decides
            flag = torch.tensor([0 if m is not None else 1], device=_collective_device(device))
            torch.distributed.broadcast(flag, 0)
            if flag.item() == 0 and m is None:  # another rank's cache entry: it is read below
                torch.distributed.barrier()
                m = self._read(path, num_classes, per_class)
                if m is None:
                    raise MgddError(f"rank {rank} cannot read the feature moments {path} that rank 0 reads; "
                                    "give every rank the same MGDD_CACHE.")
            elif flag.item() == 0:
                torch.distributed.barrier()
            else:
                m = None
        if m is not None:
            return m
        # the pass frees and re-allocates large activations: keep them in the heap (allocator.py);
        # measured on Fashion-MNIST (60k images, width 64), 34 s a network instead of 70 s
        with keep_freed_memory():
            shard = (x, y) if world == 1 else (x[rank::world], y[rank::world])  # Images stay uint8 in one process
            m = compute_moments(net, *shard, num_classes, device=device, per_class=per_class)
        self.computed += 1
        if world > 1:
            m = _all_reduce(m, device)
        if cache and rank == 0:
            self._write(path, m, i)
        return m

    def _write(self, path: Path, m: ClassMoments, i: int) -> None:
        from .io import save_tensors
        try:
            save_tensors(path, {"gram": m.gram, "sums": m.sums, "counts": m.counts},
                         {"kind": "feature-moments", "config": self.describe_config(), "seed": self.seed,
                          "index": i, "per_class": m.per_class, "sha256": moments_digest(m)}, force=True)
        except (OSError, MgddError) as e:
            # caching is an optimisation; a read-only cache is not an error, but say so once
            if not FeaturePool._warned_cache:
                FeaturePool._warned_cache = True
                print(f"mgdd: warning: feature moments not cached ({e}); set MGDD_CACHE to a writable "
                      "folder to reuse them across runs.", file=sys.stderr)


def distributed_world() -> tuple:
    """(world size, rank) of torch.distributed, or (1, 0)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _collective_device(device):
    """Where collectives' tensors live: the GPU for NCCL, the CPU for gloo."""
    return device if torch.distributed.get_backend() == "nccl" else "cpu"


def _all_reduce(m: ClassMoments, device) -> ClassMoments:
    """The sum of every rank's moments (each rank saw its shard of the images)."""
    where = _collective_device(device)
    out = []
    for t in (m.gram, m.sums, m.counts):
        t = t.to(where)
        torch.distributed.all_reduce(t)
        out.append(t.cpu())
    return ClassMoments(*out)
