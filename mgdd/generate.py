"""Generation: any IPC in one forward pass, labels by the exact full-data solve (docs/design.md §4).

``synthesize`` is the forward pass X_s = G(X_0 [, guide]) (or a few, in turn); ``task_loss`` is
one training step's loss for it, shared by adaptation and meta-training, and ``unrolled_loss``
the same for a few-pass generator; ``generate`` makes a distilled set.
"""

from __future__ import annotations

import random
import time

import torch

from .data import check_ipc
from .errors import UsageError, check_range
from .distilled import DistilledSet, distilled_meta
from .generator import MetaGenerator, check_channels
from .objective import KRRObjective
from .start import resolve_start, start_set

GUIDE_NETS = 2  # pool networks whose mean loss gradient is the generator's guide input


def synthesize(generator: MetaGenerator, objective: KRRObjective, x0, y0, num_classes: int, classes=None,
               chunk: int | None = None, passes: int = 1, guide_nets: int = GUIDE_NETS,
               rebuild_guides: bool = False):
    """X_s = G(X_0 [, guide]): one forward pass (chunked, without autograd, when ``chunk`` is given).

    With ``passes`` > 1 the generator is applied in turn, each pass reading a fresh guide at
    its own input: X_{t+1} = G(X_t, guide(X_t)), the few-pass use an unrolled generator was
    trained for (meta.py, algorithm "unrolled"). The guide is a constant input to each pass
    (no gradient flows through it); gradients flow through the generator from pass to pass.
    ``guide_nets``: how many pool networks (the first ones) the guide averages over; a generator
    records the count it was meta-trained with (default_guide_nets). ``rebuild_guides``: see each_pass.
    """
    check_range("passes", passes, 1)
    # an explicit count must fit the pool; the default takes what a smaller pool has (objective.guide)
    check_range("guide_nets", guide_nets, 1, None if guide_nets == GUIDE_NETS else objective.pool.size)
    for x in each_pass(generator, objective, x0, y0, num_classes, classes, chunk, passes, guide_nets, rebuild_guides):
        pass
    return x


def each_pass(generator: MetaGenerator, objective: KRRObjective, x0, y0, num_classes: int, classes=None,
              chunk: int | None = None, passes: int = 1, guide_nets: int = GUIDE_NETS,
              rebuild_guides: bool = False):
    """Yield X_1 ... X_passes (see synthesize): each pass reads a fresh guide at its own input.

    ``rebuild_guides``: a training pass keeps no copy of its guide for the backward, which
    computes it again (GuideRebuilt): the same gradients, one copy of the set less a pass."""
    x, y0 = x0.to(objective.device), y0.to(objective.device)
    for _ in range(passes):
        guide = objective.guide(x, classes=classes, nets=guide_nets) if generator.config.guide_input else None
        if chunk is not None:
            x = generator.generate(x, y0, num_classes, guide=guide, chunk=chunk)
        elif rebuild_guides and guide is not None and torch.is_grad_enabled():
            hooks = GuideRebuilt(guide, lambda x=x: objective.guide(x, classes=classes, nets=guide_nets))
            with torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack):
                x = generator(x, y0, num_classes, guide=guide)
        else:
            x = generator(x, y0, num_classes, guide=guide)
        yield x


class GuideRebuilt:
    """Saved-tensor hooks under which a training pass keeps no copy of its guide for the backward.

    Every tensor the pass saves for its backward that views the guide's memory (the guide, its
    folded view) is saved as its view geometry alone. The backward computes the guide again from
    the pass's input, once, with the same computation (objective.guide: the same values bit for
    bit on a CPU, up to the kernels' own nondeterminism on a GPU), serves every saved view from
    it and drops it after the last. Costs one more guide a pass; saves one copy of the set a pass
    until the backward reaches it (four guides were 2 GB of an adaptation step at 200 classes x
    64 px x IPC 50, issue #41).
    """

    class _View:
        def __init__(self, owner, shape, stride, offset):
            self.owner, self.shape, self.stride, self.offset = owner, shape, stride, offset

    def __init__(self, guide: torch.Tensor, rebuild):
        if not guide.is_contiguous():
            raise ValueError("GuideRebuilt rebuilds a contiguous guide (objective.guide returns one).")
        self.memory, self.shape = guide.untyped_storage().data_ptr(), guide.shape
        self.rebuild, self.value, self.pending = rebuild, None, 0

    def pack(self, t: torch.Tensor):
        if t.untyped_storage().data_ptr() != self.memory:
            return t
        self.pending += 1
        return self._View(self, t.shape, t.stride(), t.storage_offset())

    def unpack(self, saved):
        if not isinstance(saved, self._View):
            return saved
        if self.value is None:
            self.value = self.rebuild()
            if self.value.shape != self.shape or not self.value.is_contiguous():
                raise RuntimeError("the rebuilt guide does not have the guide's layout.")
        view = self.value.as_strided(saved.shape, saved.stride, saved.offset)
        self.pending -= 1
        if self.pending <= 0:  # the last saved view of this pass: keep no copy past it
            self.value = None
        return view


def default_passes(generator: MetaGenerator) -> int:
    """The pass count a generator was trained for (recorded by unrolled meta-training), else 1."""
    return int(getattr(generator, "metadata", {}).get("passes", 1))


def default_start(generator: MetaGenerator) -> str:
    """The start a generator generates from by default: its recorded ``generate_start`` (the shipped
    generator records "auto": meta-trained from herding, it measured better from the greedy start,
    start.py), else the start it was meta-trained or adapted from (recorded when not "random"),
    else "random"."""
    meta = getattr(generator, "metadata", {})
    return str(meta.get("generate_start", meta.get("start", "random")))


def default_guide_nets(generator: MetaGenerator) -> int:
    """The guide-network count a generator was trained with (recorded by unrolled meta-training
    when not GUIDE_NETS), else GUIDE_NETS."""
    return int(getattr(generator, "metadata", {}).get("guide_nets", GUIDE_NETS))


def task_loss(generator: MetaGenerator, objective: KRRObjective, ipc: int, rng: random.Random,
              classes=None, start: str = "random", rebuild_guides: bool = False) -> torch.Tensor:
    """One training step's loss: a seeded X_0 (``ipc`` real images of each class, class-major),
    one generator pass, the KRR loss of its output against the full data of ``classes``.

    Draws from ``rng`` in a fixed order (X_0 seed, then the objective's draws), so a step is
    a function of (seed, step) alone. ``start``: where X_0 comes from (start.py; a coreset start
    ignores the seed but still draws it, so the later draws do not depend on the start).
    """
    num_classes = objective.dataset.num_classes if classes is None else len(classes)
    x0, _ = start_set(objective, ipc, start, seed=rng.randrange(2**31), classes=classes)
    y0 = torch.arange(num_classes).repeat_interleave(ipc)  # class-major, relabelled 0..c-1
    x_s = synthesize(generator, objective, x0, y0, num_classes, classes=classes, rebuild_guides=rebuild_guides)
    return objective.loss(x_s, rng, classes=classes)


def unrolled_loss(generator: MetaGenerator, objective: KRRObjective, ipc: int, rng: random.Random, passes: int,
                  classes=None, guide_nets: int = GUIDE_NETS, start: str = "random",
                  rebuild_guides: bool = False) -> torch.Tensor:
    """One training step's loss for a few-pass generator: a seeded X_0 as in task_loss, ``passes``
    passes applied in turn (synthesize), and the mean over passes of the KRR loss of each pass's
    output divided by that of X_0.

    One pool network, drawn from ``rng``, scores every pass, so the passes are compared on one
    scale; dividing by X_0's loss makes tasks of any size and class count weigh alike. Every
    pass is scored, not only the last, so each pass learns to improve on its input.
    """
    num_classes = objective.dataset.num_classes if classes is None else len(classes)
    x0, _ = start_set(objective, ipc, start, seed=rng.randrange(2**31), classes=classes)
    y0 = torch.arange(num_classes).repeat_interleave(ipc)
    net = rng.randrange(objective.pool.size)
    with torch.no_grad():
        start = objective.pool_loss(x0, net, classes)
    total = 0.0
    for x in each_pass(generator, objective, x0, y0, num_classes, classes, passes=passes, guide_nets=guide_nets,
                       rebuild_guides=rebuild_guides):
        total = total + objective.pool_loss(x, net, classes) / start
    return total / passes


def training_step_bytes(objective: KRRObjective, ipc: int, passes: int, num_classes: int | None = None,
                        rebuild_guides: bool = False) -> float:
    """Peak bytes of one adaptation (or meta-training) step at ``ipc`` beyond what the process
    already holds (the dataset, the moments): the passes' inputs, guides and outputs, each a copy
    of the set (2 a pass, and X_0 with a few gradient buffers; with ``rebuild_guides`` 1 a pass and
    one guide at a time), the KRR loss's float64 M x d factors for each pass, and one chunk of
    activations for the generator and for the features. At 200 classes x 64 px x IPC 50 it says
    7.8 GiB (6.4 GiB rebuilding the guides), where the step took the process from about 2.8 GB
    (its IPC 1 peak) to 9.8 GB (7.1 GB; results/shapes). memory.fits compares it with what is free."""
    ds = objective.dataset
    m = ipc * (num_classes or ds.num_classes)
    values = m * ds.channels * ds.image_size[0] * ds.image_size[1]
    copies = passes + 5 if rebuild_guides else 2 * passes + 4
    return 4 * values * copies + 8 * m * objective.pool.dim * 6 * passes + 2 * MetaGenerator.GRAD_BUDGET


def generate(generator: MetaGenerator, objective: KRRObjective, ipc: int, seed: int = 0, chunk: int = 256,
             method: str = "mgdd", passes: int | None = None, guide_nets: int | None = None,
             start: str | None = None, **extra_meta) -> DistilledSet:
    """A distilled set of ``ipc`` images per class: X_0, ``passes`` generator passes (default: as
    many as the generator was trained for), least-squares labels. ``guide_nets``: the pool
    networks each pass's guide averages over (see synthesize; default: as the generator was
    trained). ``start``: where X_0 comes from (start.py; default: default_start). The set records
    the start it used ("auto" resolved at this size, with ``start_rule: "auto"``)."""
    dataset = objective.dataset
    check_ipc(dataset, ipc)
    check_channels(generator, dataset)
    passes = default_passes(generator) if passes is None else passes
    if guide_nets is not None and not generator.config.guide_input:
        raise UsageError("this generator reads no guide (meta-trained with --no-guide), so --guide-nets (guide_nets) "
                         "does not apply to it; leave it out.")
    guide_nets = default_guide_nets(generator) if guide_nets is None else guide_nets
    check_range("passes", passes, 1)
    asked = default_start(generator) if start is None else start
    start = resolve_start(asked, objective, ipc)
    generator.to(objective.device).eval()
    t0 = time.perf_counter()  # a coreset start's selection is part of the method's time
    x0, y0 = start_set(objective, ipc, start, seed)
    x_s = synthesize(generator, objective, x0, y0, dataset.num_classes, chunk=chunk, passes=passes,
                     guide_nets=guide_nets)
    if x_s.is_cuda:  # GPU kernels run asynchronously: the passes' time is theirs only once they finish
        torch.cuda.synchronize(x_s.device)
    t1 = time.perf_counter()
    labels = objective.labels(x_s)
    t2 = time.perf_counter()
    timing = {"generate_seconds": t1 - t0, "label_seconds": t2 - t1}
    if passes != 1:  # absent means one pass: sets from before the option read the same
        extra_meta["passes"] = passes
    if guide_nets != GUIDE_NETS:  # absent means the default
        extra_meta["guide_nets"] = guide_nets
    if start != "random":  # absent means random: sets from before the option read the same
        extra_meta["start"] = start
    if asked == "auto":
        extra_meta["start_rule"] = "auto"
    return DistilledSet(x_s.float().cpu(), labels, distilled_meta(dataset, ipc, method, seed, objective, timing,
                                                                  **extra_meta), dataset.zca)
