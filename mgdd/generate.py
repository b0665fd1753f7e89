"""Generation: any IPC in one forward pass, labels by the exact full-data solve (docs/design.md §4).

``synthesize`` is the one forward pass X_s = G(X_0 [, guide]); ``task_loss`` is one training
step's loss for it, shared by adaptation and meta-training; ``generate`` makes a distilled set.
"""

from __future__ import annotations

import random
import time

import torch

from .data import check_ipc, sample_init
from .distilled import DistilledSet, distilled_meta
from .generator import MetaGenerator, check_channels
from .objective import KRRObjective

GUIDE_NETS = 2  # pool networks whose mean loss gradient is the generator's guide input


def synthesize(generator: MetaGenerator, objective: KRRObjective, x0, y0, num_classes: int, classes=None,
               chunk: int | None = None):
    """X_s = G(X_0 [, guide]): the one forward pass (chunked, without autograd, when ``chunk`` is given)."""
    x0, y0 = x0.to(objective.device), y0.to(objective.device)
    guide = objective.guide(x0, classes=classes, nets=GUIDE_NETS) if generator.config.guide_input else None
    if chunk is None:
        return generator(x0, y0, num_classes, guide=guide)
    return generator.generate(x0, y0, num_classes, guide=guide, chunk=chunk)


def task_loss(generator: MetaGenerator, objective: KRRObjective, ipc: int, rng: random.Random,
              classes=None) -> torch.Tensor:
    """One training step's loss: a seeded X_0 (``ipc`` real images of each class, class-major),
    one generator pass, the KRR loss of its output against the full data of ``classes``.

    Draws from ``rng`` in a fixed order (X_0 seed, then the objective's draws), so a step is
    a function of (seed, step) alone.
    """
    num_classes = objective.dataset.num_classes if classes is None else len(classes)
    x0, _ = sample_init(objective.dataset, ipc, seed=rng.randrange(2**31), classes=classes)
    y0 = torch.arange(num_classes).repeat_interleave(ipc)  # class-major, relabelled 0..c-1
    x_s = synthesize(generator, objective, x0, y0, num_classes, classes=classes)
    return objective.loss(x_s, rng, classes=classes)


def generate(generator: MetaGenerator, objective: KRRObjective, ipc: int, seed: int = 0, chunk: int = 256,
             method: str = "mgdd", **extra_meta) -> DistilledSet:
    dataset = objective.dataset
    check_ipc(dataset, ipc)
    check_channels(generator, dataset)
    x0, y0 = sample_init(dataset, ipc, seed)
    generator.to(objective.device).eval()
    t0 = time.perf_counter()
    x_s = synthesize(generator, objective, x0, y0, dataset.num_classes, chunk=chunk)
    t1 = time.perf_counter()
    labels = objective.labels(x_s)
    t2 = time.perf_counter()
    timing = {"generate_seconds": t1 - t0, "label_seconds": t2 - t1}
    return DistilledSet(x_s.float().cpu(), labels, distilled_meta(dataset, ipc, method, seed, objective, timing,
                                                                  **extra_meta), dataset.zca)
