"""Generation: any IPC in one forward pass, labels by the exact full-data solve."""

from __future__ import annotations

import time


from . import __version__
from .data import Dataset, check_ipc, sample_init
from .distilled import DistilledSet
from .errors import UsageError
from .generator import MetaGenerator
from .objective import KRRObjective


def distilled_meta(dataset: Dataset, ipc: int, method: str, seed: int, objective: KRRObjective | None,
                   timing: dict, **extra) -> dict:
    meta = {"dataset": dataset.name, "classes": list(dataset.classes), "mean": dataset.mean, "std": dataset.std,
            "image_shape": [dataset.channels, *dataset.image_size], "ipc": ipc, "method": method, "seed": seed,
            "timing": timing, "mgdd_version": __version__}
    if objective is not None:
        meta["objective"] = objective.describe()
    meta.update(extra)
    return meta


GUIDE_NETS = 2  # pool networks whose mean loss gradient is the generator's guide input


def synthesize(generator: MetaGenerator, objective: KRRObjective, x0, y0, num_classes: int, classes=None,
               chunk: int | None = None):
    """X_s = G(X_0 [, guide]): the one forward pass (chunked, without autograd, when ``chunk`` is given)."""
    x0, y0 = x0.to(objective.device), y0.to(objective.device)
    guide = objective.guide(x0, classes=classes, nets=GUIDE_NETS) if generator.config.guide_input else None
    if chunk is None:
        return generator(x0, y0, num_classes, guide=guide)
    return generator.generate(x0, y0, num_classes, guide=guide, chunk=chunk)


def generate(generator: MetaGenerator, objective: KRRObjective, ipc: int, seed: int = 0, chunk: int = 256,
             method: str = "mgdd", **extra_meta) -> DistilledSet:
    dataset = objective.dataset
    check_ipc(dataset, ipc)
    if generator.config.channels != dataset.channels:
        raise UsageError(f"the generator makes {generator.config.channels}-channel images but {dataset.name} "
                         f"has {dataset.channels}; use a generator adapted to {dataset.name}.")
    x0, y0 = sample_init(dataset, ipc, seed)
    generator.to(objective.device).eval()
    t0 = time.perf_counter()
    x_s = synthesize(generator, objective, x0, y0, dataset.num_classes, chunk=chunk)
    t1 = time.perf_counter()
    labels = objective.labels(x_s)
    t2 = time.perf_counter()
    timing = {"generate_seconds": t1 - t0, "label_seconds": t2 - t1}
    return DistilledSet(x_s.float().cpu(), labels, distilled_meta(dataset, ipc, method, seed, objective, timing,
                                                            **extra_meta))
