"""The conditional generator: X_s = X_0 + delta(X_0, set context).

Fully convolutional, so it works at any resolution and channel count; the body runs at
half resolution to stay cheap on a CPU. The last layer is zero-initialised, so an
unadapted generator is the identity ("real images + least-squares labels").

Inputs per image (stacked as channels): the image, the mean image of its class and of
the whole set (pixel-level set context), and the *guide* - the gradient of the KRR loss
at X_0, RMS-normalised (objective.guide). The guide carries the target's real-data
statistics into the single forward pass; measured on Fashion-MNIST IPC 10, a generator
without it reduced the loss of unseen initializations by ~1% in 80 steps, with it ~8%.

Set conditioning (DeepSets-style): every image is encoded to a vector e_i; the mean of
e over its class, the mean over the whole set and log(images in its class) are fed back
to every block with FiLM. Means make it size-agnostic (any IPC) and permutation-
equivariant within a class, and let each sample know its siblings.

Channel folding (docs/design.md §4): a grey (1-channel) generator also serves C-channel
images. Each channel becomes a grey image of the same class, (M, C, H, W) -> (M*C, 1, H, W),
so the class and set means above run over every channel of every image of the class: that
is the cross-channel context. Class sizes stay counted in images, not channel-images, so the
log-size feature means what it meant in meta-training. A C-channel generator serves only
C-channel images.

Shapes: x0, guide (M, C, H, W), y0 (M,) class indices -> (M, C, H, W).
"""

from __future__ import annotations

import os

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .version import __version__
from .errors import CorruptFile, MgddError, UsageError
from .io import check_output, load_tensors, save_tensors

CHECKPOINT_FORMAT = "mgdd.generator/1"


@dataclass
class GeneratorConfig:
    channels: int = 1
    width: int = 48          # channels of the half-resolution body
    stem_width: int = 16     # channels of the full-resolution stem / skip
    blocks: int = 4
    context_dim: int = 64
    dilations: list = field(default_factory=lambda: [1, 2, 1, 2])
    pixel_context: bool = True  # also feed the class-mean and set-mean images to the stem
    guide_input: bool = True    # also feed the KRR-loss gradient at X_0 (see objective.guide)


class FiLMBlock(nn.Module):
    """Residual block whose normalised activations are modulated by the set context."""

    def __init__(self, width: int, context_dim: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)
        self.norm = nn.GroupNorm(8 if width % 8 == 0 else 1, width, affine=False)
        self.film = nn.Linear(context_dim, 2 * width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h, ctx):
        gamma, beta = self.film(ctx).chunk(2, dim=1)                 # (M, width) each
        z = self.norm(self.conv1(h)) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return h + self.conv2(F.relu(z))


class _StreamedPass(torch.autograd.Function):
    """A per-image computation over a large set, a chunk at a time, with the exact gradient in the
    memory of one chunk (as features._Streamed, here with parameters): the forward keeps no
    activations, only references to its inputs, which the caller holds anyway; the backward runs
    each chunk again and back-propagates it alone.

    ``fn(*chunked, *shared)`` maps one chunk of each ``chunked`` input (sliced along dim 0; None
    stays None) and the ``shared`` inputs to its output; the outputs are concatenated, or summed
    when ``reduce == "sum"`` (in chunk order, as the loop it replaces). ``params`` are the
    parameters fn reads: passed in, so their gradients are returned through autograd and
    torch.autograd.grad over them works (meta-training), not accumulated into .grad.

    It replaces torch.utils.checkpoint (non-reentrant) here, which kept about seven more copies of
    the set a pass (4 passes held 44 copies before the backward, 16 streamed:
    benchmarks/adapt_memory.py; an adaptation step at 200 classes x 64 px x IPC 50 peaked at
    14 GB with it, issue #41)."""

    @staticmethod
    def forward(ctx, fn, chunk, reduce, n_chunked, n_shared, *inputs):
        ctx.fn, ctx.chunk, ctx.reduce, ctx.n_chunked, ctx.n_shared = fn, chunk, reduce, n_chunked, n_shared
        ctx.save_for_backward(*inputs)
        chunked, shared = inputs[:n_chunked], inputs[n_chunked:n_chunked + n_shared]
        out = None if reduce == "sum" else []
        for i in range(0, len(chunked[0]), chunk):
            part = fn(*(None if t is None else t[i:i + chunk] for t in chunked), *shared)
            if reduce == "sum":
                out = part if out is None else out + part
            else:
                out.append(part)
        return out if reduce == "sum" else torch.cat(out)

    @staticmethod
    def backward(ctx, grad):
        inputs, nc, ns = ctx.saved_tensors, ctx.n_chunked, ctx.n_shared
        need = ctx.needs_input_grad[5:]
        chunked, shared, params = inputs[:nc], inputs[nc:nc + ns], inputs[nc + ns:]
        # shared inputs are leaves of each chunk's graph; their gradients add up over the chunks
        shared_in = [t.detach().requires_grad_(True) if t is not None and need[nc + k] else t
                     for k, t in enumerate(shared)]
        grads = [None if t is None or not n else torch.zeros_like(t) for t, n in zip(inputs, need)]
        for i in range(0, len(chunked[0]), ctx.chunk):
            with torch.enable_grad():
                chunk_in = [None if t is None else
                            (t[i:i + ctx.chunk].detach().requires_grad_(True) if need[k] else t[i:i + ctx.chunk])
                            for k, t in enumerate(chunked)]
                out = ctx.fn(*chunk_in, *shared_in)
                leaves = [*chunk_in, *shared_in, *params]
                wrt = [k for k in range(len(leaves)) if need[k]]
                got = torch.autograd.grad(out, [leaves[k] for k in wrt],
                                          grad if ctx.reduce == "sum" else grad[i:i + ctx.chunk], allow_unused=True)
            for k, g in zip(wrt, got):
                if g is None:
                    continue
                if k < nc:
                    grads[k][i:i + ctx.chunk] = g
                else:
                    grads[k].add_(g)
        return (None, None, None, None, None, *grads)


def streamed(fn, chunk: int, chunked: tuple, shared: tuple, params, reduce: str = "cat"):
    """_StreamedPass.apply with its bookkeeping: fn(*chunked_chunk, *shared) a chunk at a time."""
    return _StreamedPass.apply(fn, chunk, reduce, len(chunked), len(shared), *chunked, *shared, *params)


class MetaGenerator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        if len(config.dilations) != config.blocks:
            raise UsageError(f"generator config: {config.blocks} blocks need {config.blocks} dilations.")
        self.config = config
        c, w, sw, cd = config.channels, config.width, config.stem_width, config.context_dim
        inputs = 1 + 2 * config.pixel_context + config.guide_input
        self.stem = nn.Conv2d(c * inputs, sw, 3, padding=1)
        self.down = nn.Conv2d(sw, w, 3, stride=2, padding=1)
        self.encode = nn.Sequential(nn.Linear(w, cd), nn.ReLU(), nn.Linear(cd, cd))
        ctx_dim = 3 * cd + 1   # [own, class mean, set mean, log class size]
        self.context_proj = nn.Sequential(nn.Linear(ctx_dim, cd), nn.ReLU())
        self.blocks = nn.ModuleList(FiLMBlock(w, cd, d) for d in config.dilations)
        self.up = nn.Conv2d(w + sw, sw, 3, padding=1)
        self.out = nn.Conv2d(sw, c, 3, padding=1)
        nn.init.zeros_(self.out.weight)   # identity at step 0
        nn.init.zeros_(self.out.bias)

    # -- the two halves, so large sets can be generated in chunks with one set context
    def _trunk(self, x, pixel_ctx=None, guide=None):
        extra = ([guide] if guide is not None else []) + (list(pixel_ctx) if pixel_ctx is not None else [])
        if extra:
            x = torch.cat([x, *extra], dim=1)        # (M, C * inputs, H, W)
        s = F.relu(self.stem(x))                     # (M, sw, H, W)
        h = F.relu(self.down(s))                     # (M, w, H/2, W/2)
        e = self.encode(h.mean(dim=(2, 3)))          # (M, cd)
        return s, h, e

    def set_statistics(self, x0, y0, num_classes: int, guide=None, chunk: int | None = None,
                       checkpointed: bool = False) -> dict:
        """Per-class sums and counts of the images and their encodings (additive over chunks;
        ``checkpointed``: each chunk's activations are recomputed in the backward pass, not kept)."""
        chunk = chunk or len(x0)
        counts = torch.bincount(y0, minlength=num_classes).to(x0)
        stats = {"counts": counts}
        if self.config.pixel_context:
            pix = torch.zeros(num_classes, *x0.shape[1:], dtype=x0.dtype, device=x0.device).index_add(0, y0, x0)
            stats["class_pixel_sums"] = pix

        def class_sums(x, y, g, pix=None, counts=counts):
            local = {"counts": counts} if pix is None else {"counts": counts, "class_pixel_sums": pix}
            _, _, e = self._trunk(x, self._pixel_context(x, y, local), g)
            return torch.zeros(num_classes, e.shape[1], dtype=e.dtype, device=e.device).index_add(0, y, e)

        if checkpointed:
            stats["class_sums"] = streamed(class_sums, chunk, (x0, y0, guide), (stats.get("class_pixel_sums"), counts),
                                           self.parameters(), reduce="sum")
            return stats
        sums = None
        for i in range(0, len(x0), chunk):
            part = class_sums(x0[i:i + chunk], y0[i:i + chunk], guide[i:i + chunk] if guide is not None else None,
                              stats.get("class_pixel_sums"))
            sums = part if sums is None else sums + part
        stats["class_sums"] = sums
        return stats

    # the activations one folded (1-channel) image keeps for a backward pass, in floats per pixel:
    # full resolution (inputs, stem, upsampled body, concatenation, up conv, output) and half
    # resolution (down conv and each block's conv, norm, FiLM, ReLU, conv, sum); an upper bound
    GRAD_BUDGET = 2**28  # bytes of activations a training pass keeps before it is checkpointed

    def grad_chunk(self, pixels: int) -> int:
        """Folded images per checkpointed chunk of a training pass at ``pixels`` (H x W) an image."""
        c = self.config
        full = 4 + 4 * c.stem_width + 2 * c.width
        half = (2 + 7 * c.blocks) * c.width / 4
        return max(1, int(self.GRAD_BUDGET // (4 * pixels * (full + half))))

    INFER_BUDGET = 2**30  # bytes of activations a no-grad pass over one chunk may keep (generate)

    def infer_chunk(self, pixels: int) -> int:
        """Folded images per chunk of generate() at ``pixels`` an image: grad_chunk's per-pixel upper
        bound within INFER_BUDGET (652 at 28 px, so Fashion-MNIST keeps 256-image chunks; 28 at 128 px,
        where 768 folded images kept 11 GB)."""
        return max(1, int(self.INFER_BUDGET * self.grad_chunk(pixels) // self.GRAD_BUDGET))

    def _fold(self, x0, y0, guide):
        """(M, C, H, W) -> (M*C, 1, H, W) for a grey generator on C-channel data (else unchanged);
        returns the folded inputs and C (the fold, 1 when nothing was folded)."""
        c = x0.shape[1]
        if c == self.config.channels:
            return x0, y0, guide, 1
        flat = lambda t: None if t is None else t.reshape(-1, 1, *t.shape[2:])  # noqa: E731
        return flat(x0), y0.repeat_interleave(c), flat(guide), c

    def _pixel_context(self, x, y, stats):
        if not self.config.pixel_context:
            return None
        pix, counts = stats["class_pixel_sums"], stats["counts"]
        class_mean = pix / counts.clamp_min(1).view(-1, 1, 1, 1)                      # (K, C, H, W)
        set_mean = pix.sum(0, keepdim=True) / counts.sum()                               # (1, C, H, W)
        return class_mean[y], set_mean.expand(len(x), -1, -1, -1)

    def decode(self, x0, y0, stats: dict, guide=None):
        s, h, e = self._trunk(x0, self._pixel_context(x0, y0, stats), guide)
        counts = stats["counts"]
        class_mean = stats["class_sums"] / counts.clamp_min(1)[:, None]                # (K, cd)
        set_mean = stats["class_sums"].sum(0) / counts.sum()                            # (cd,)
        images = counts[y0] / stats.get("fold", 1)                                     # images, not channels
        ctx = torch.cat([e, class_mean[y0], set_mean.expand(len(x0), -1), torch.log(images)[:, None]], dim=1)
        ctx = self.context_proj(ctx)
        for block in self.blocks:
            h = block(h, ctx)
        up = F.interpolate(h, size=x0.shape[2:], mode="bilinear", align_corners=False)
        delta = self.out(F.relu(self.up(torch.cat([up, s], dim=1))))
        return x0 + delta

    def forward(self, x0, y0, num_classes: int | None = None, guide=None):
        self._check_input(x0, y0, guide)
        num_classes = num_classes or int(y0.max()) + 1
        shape = x0.shape
        x0, y0, guide, fold = self._fold(x0, y0, guide)
        chunk = self.grad_chunk(x0.shape[2] * x0.shape[3])
        if not torch.is_grad_enabled() or len(x0) <= chunk:
            stats = dict(self.set_statistics(x0, y0, num_classes, guide), fold=fold)
            return self.decode(x0, y0, stats, guide).reshape(shape)
        # a large set in a training pass (adaptation, meta-training): chunks whose activations are
        # recomputed in the backward pass (gradient checkpointing), so memory holds one chunk's
        # activations and the outputs; the same values and gradients as one pass
        stats = dict(self.set_statistics(x0, y0, num_classes, guide, chunk, checkpointed=True), fold=fold)
        return self._decode_chunks(x0, y0, stats, guide, chunk, checkpointed=True).reshape(shape)

    def _decode_chunks(self, x0, y0, stats: dict, guide, chunk: int, checkpointed: bool = False):
        """decode() a chunk at a time with one set context (``checkpointed``: each chunk recomputed
        in the backward pass)."""
        if checkpointed:
            fold = stats.get("fold", 1)

            def decode(x, y, g, counts, sums, pix):
                local = {"counts": counts, "class_sums": sums, "fold": fold}
                if pix is not None:
                    local["class_pixel_sums"] = pix
                return self.decode(x, y, local, g)

            return streamed(decode, chunk, (x0, y0, guide),
                            (stats["counts"], stats["class_sums"], stats.get("class_pixel_sums")), self.parameters())
        out = []
        for i in range(0, len(x0), chunk):
            out.append(self.decode(x0[i:i + chunk], y0[i:i + chunk], stats, None if guide is None else guide[i:i + chunk]))
        return torch.cat(out)

    @torch.no_grad()
    def generate(self, x0, y0, num_classes: int, guide=None, chunk: int = 256):
        """Forward in chunks of ``chunk`` images (for large IPCs; fewer where INFER_BUDGET says so): the
        same result as forward(), in bounded memory."""
        self._check_input(x0, y0, guide)
        shape = x0.shape
        x0, y0, guide, fold = self._fold(x0, y0, guide)
        chunk = min(chunk * fold, self.infer_chunk(x0.shape[-2] * x0.shape[-1]))  # bounded at any image size
        stats = dict(self.set_statistics(x0, y0, num_classes, guide, chunk), fold=fold)
        return self._decode_chunks(x0, y0, stats, guide, chunk).reshape(shape)

    def serves(self, channels: int) -> bool:
        """Whether this generator makes ``channels``-channel images: its own count, or any count by folding."""
        return channels == self.config.channels or self.config.channels == 1

    def _check_input(self, x0, y0, guide=None):
        if self.config.guide_input and (guide is None or guide.shape != x0.shape):
            raise UsageError("this generator takes the KRR-loss gradient at X_0 as input (guide=objective.guide(x0)); "
                             "pass a guide of the same shape as x0.")
        if x0.dim() != 4 or not self.serves(x0.shape[1]):
            raise UsageError(f"the generator takes {self.config.channels}-channel images (N, C, H, W); "
                             f"got shape {tuple(x0.shape)}. Use a generator made for this dataset's channels.")
        if min(x0.shape[2:]) < 4:
            raise UsageError(f"images of size {tuple(x0.shape[2:])} are too small for the generator (min 4x4).")
        if len(y0) != len(x0):
            raise UsageError("x0 and y0 differ in length.")

    # -- checkpoints: safetensors weights + JSON config/metadata, no pickle
    def save_pretrained(self, path, metadata: dict | None = None, force: bool = False) -> Path:
        path = Path(path)
        if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
            raise UsageError(f"{path} exists and is not a folder; a generator is saved as a folder.")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create folder {path}: {e.strerror}. Choose another output path.") from None
        info = {"format": CHECKPOINT_FORMAT, "mgdd_version": __version__, "config": asdict(self.config),
                "metadata": metadata or {}}
        check_output(path / "model.safetensors", force)
        check_output(path / "config.json", force)
        save_tensors(path / "model.safetensors", self.state_dict(), info, force=force)
        from .io import write_json
        write_json(path / "config.json", info, force=force)
        return path

    @classmethod
    def from_pretrained(cls, path) -> "MetaGenerator":
        path = Path(path)
        weights = path / "model.safetensors" if path.is_dir() else path
        if not weights.is_file():
            what = (f"expected {weights}" if path.is_dir() else
                    "it does not exist (a generator is a folder holding model.safetensors and config.json)")
            raise MgddError(f"no generator at {path}: {what}. Make one with `mgdd adapt` or `mgdd meta-train`.")
        tensors, info = load_tensors(weights)
        if info.get("format") != CHECKPOINT_FORMAT:
            raise CorruptFile(f"{weights} is not an mgdd generator checkpoint (format {info.get('format')!r}).")
        config = dict(info.get("config", {}))
        # the history input (each pass also reading the previous update) measured no better and
        # left mgdd after commit d363fff; configs from before record it as false
        if config.pop("history_input", False):
            raise UsageError(f"{weights} was made with history_input, an option that left mgdd after commit "
                             "d363fff; load it with mgdd at that commit.")
        try:
            model = cls(GeneratorConfig(**config))
        except (TypeError, KeyError) as e:
            raise CorruptFile(f"{weights}: generator config is invalid ({e}).") from None
        expected = model.state_dict()
        if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
            raise CorruptFile(f"{weights}: weights do not match the generator config; the checkpoint is corrupt "
                              "or from an incompatible version.")
        if not all(torch.isfinite(t).all() for t in tensors.values()):
            raise CorruptFile(f"{weights}: weights contain NaN/inf.")
        model.load_state_dict(tensors)
        model.metadata = info.get("metadata", {})
        return model

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_channels(generator: MetaGenerator, dataset) -> None:
    """The one place that refuses a generator that cannot make the data's channel count
    (a grey generator serves any count by folding; a colour one only its own)."""
    if not generator.serves(dataset.channels):
        raise UsageError(f"the generator makes {generator.config.channels}-channel images but {dataset.name} has "
                         f"{dataset.channels} channels; adapt a generator built for it (--from scratch), or a grey "
                         "one, which serves any channel count.")
