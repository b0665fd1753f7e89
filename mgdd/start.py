"""Where a distilled set starts: X_0, the images the generator (or the pixels) move from.

    STARTS = ("random", "herding", "kcenter", "greedy")      # "auto" picks one of these per size
    x0, y0 = start_set(objective, ipc, "auto", seed=0)
    resolve_start("auto", objective, ipc)                    # "greedy" or "herding"

``random``   a seeded, class-balanced sample of real images (data.sample_init; the default of a
             generator that records no start).
``herding``  per class, greedy herding in pool network 0's feature space: pick t is the image
             that brings the mean of the t picked features closest to the class mean,
             argmin_i || (sum_{j<t} phi_j + phi_i) / t - mean_c phi ||^2.
``kcenter``  per class, greedy farthest-point cover in the same space, from the most central image.
``greedy``   real images picked on the KRR loss itself, over every pool network and all classes
             at once: level k adds each class's next herding pick, then swaps it for the
             candidate real image of its class that lowers the mean pool loss most (greedy.py).
``auto``     greedy when the set has at most AUTO_GREEDY_IMAGES = 500 images (classes x ipc, over
             the objective's classes), else herding; the shipped generator's default. The choice
             depends on the size alone, never on the device or on what is cached, so a command
             makes the same set on any machine.

Why auto. The shipped generator was meta-trained from herding, yet from the greedy start the same
weights score at least as well in every K = 0 comparison measured (Fashion-MNIST at IPC 1 to
100, digits and colour Fashion-MNIST at IPC 1 to 50; results/generator-view, docs/results.md §1). Greedy's search
costs more a level as the set grows: every level scans each class's candidates at O(M^2) a
candidate, so to IPC k over C classes about C^3 k^3 / 3 = M^3 / 3 candidate-products, the same for
10 classes at IPC 50 as for 100 at IPC 5 (M = 500). Measured on one CPU thread (Fashion-MNIST):
13 s to M = 100, 318 s to M = 500, then 23 min more to M = 1,000. Auto keeps the cold search to
about five minutes of one thread (cached beside the moments after that) and takes herding, whose
orders are one pass of the data, above it. Above 500 images the greedy start still scores higher
where measured (IPC 100: +0.34); ask for it with start="greedy" when the time is worth it.

The coresets are greedy, so they are nested: the IPC-k start is the first k images of any
larger one, and every size is still one pass from one ordering. They do not depend on the
seed. The orderings are a one-time precompute, like the feature moments, kept on disk beside
the moments, so a later process reads them: herding's and kcenter's first 100 picks a class
(one pass of the training set through pool network 0); greedy's as many levels as asked (it
costs more a level), and a larger size continues the cached levels.

Shapes: x0 (len(classes) * ipc, C, H, W), class-major; y0 (len(classes) * ipc,), the dataset's
class indices (callers on a class subset relabel them 0..c-1 by position).
"""

from __future__ import annotations

import time

import torch

from .data import check_ipc, sample_init
from .errors import unknown_name
from .progress import Progress

STARTS = ("random", "herding", "kcenter", "greedy")
START_CHOICES = ("auto", *STARTS)  # what a generator's start may be asked as; "auto" resolves per size
AUTO_GREEDY_IMAGES = 500           # auto takes greedy up to this many images in the set (docstring)


def herding_indices(f: torch.Tensor, k: int) -> list:
    """The first k herding picks among the rows of f (n, d)."""
    target, chosen, running = f.mean(0), [], torch.zeros_like(f[0])
    available = torch.ones(len(f), dtype=torch.bool)
    for t in range(1, k + 1):
        # pick the point that brings the mean of the chosen set closest to the class mean
        dist = ((running[None] + f) / t - target[None]).pow(2).sum(1)
        dist[~available] = float("inf")
        i = int(dist.argmin())
        chosen.append(i); available[i] = False; running += f[i]
    return chosen


def kcenter_indices(f: torch.Tensor, k: int) -> list:
    """The first k greedy k-center picks among the rows of f (n, d), from the most central one."""
    chosen = [int((f - f.mean(0)).pow(2).sum(1).argmin())]  # start at the most central point
    dist = (f - f[chosen[0]]).pow(2).sum(1)
    for _ in range(k - 1):
        i = int(dist.argmax())
        chosen.append(i)
        dist = torch.minimum(dist, (f - f[i]).pow(2).sum(1))
    return chosen


PICKERS = {"herding": herding_indices, "kcenter": kcenter_indices}


def check_start(start: str) -> None:
    """The one check of a start's name ("auto" or one of STARTS)."""
    if start not in START_CHOICES:
        raise unknown_name("start", start, START_CHOICES)


def resolve_start(start: str, objective, ipc: int) -> str:
    """The start ``start`` stands for at ``ipc`` images a class: "auto" is "greedy" when
    len(classes) * ipc <= AUTO_GREEDY_IMAGES, over every class of the objective's dataset (greedy's
    search runs over all of them at once, whatever subset a call asks for), else "herding"; any
    other name is itself."""
    check_start(start)
    if start != "auto":
        return start
    return "greedy" if len(objective.class_index) * ipc <= AUTO_GREEDY_IMAGES else "herding"


def forget_orders(objective) -> None:
    """Drop the objective's coreset orders held in memory (the disk cache stays): the next start
    reads them again, or computes them when the objective keeps no cache."""
    objective.__dict__.pop("_start_orders", None)


@torch.no_grad()
def _class_features(objective, c: int, chunk: int = 1024) -> torch.Tensor:
    net = objective.pool.nets[0]
    x = objective.dataset.train_x[objective.class_index[c]]
    return torch.cat([net(x[i:i + chunk].to(objective.device)).cpu() for i in range(0, len(x), chunk)])


# picks computed per class at least, so the common sizes (IPC 1, 10, 50, 100) share one pass of
# the data through network 0: the pass is the cost, the greedy picks are cheap
ORDER_LENGTH = 100


def order_length(method: str, ipc: int) -> int:
    """How many picks a class an order for ``ipc`` is computed to: at least ORDER_LENGTH for the
    cheap pickers, exactly ``ipc`` for greedy (a later, larger size continues it)."""
    return ipc if method == "greedy" else max(ipc, ORDER_LENGTH)


def _orders_path(objective, method: str):
    """The disk cache of ``method``'s orders, beside the objective's feature moments (same key:
    data fingerprint, feature config, pool seed; greedy's also its loss settings), or None when
    the objective keeps no cache."""
    fp = getattr(objective, "fingerprint", None)
    if not getattr(objective, "cache", False) or fp is None:
        return None
    if method == "greedy":
        from .greedy import order_key
        return objective.pool.cache_path(fp, f"{order_key(objective)}-orders")
    return objective.pool.cache_path(fp, f"n0-{method}-orders")


def _valid(objective, orders: dict, length: int) -> bool:
    """Every class has an order of ``length`` picks (or its whole class), each a distinct training
    index of that class: a damaged or foreign cache entry is recomputed, never used."""
    for c, members in enumerate(objective.class_index):
        o = orders.get(c)
        if o is None or o.dtype != torch.int64 or o.dim() != 1 or len(o) < min(length, len(members)):
            return False
        if len(set(o.tolist())) != len(o) or not torch.isin(o, members).all():
            return False
    return True


def compute_orders(objective, method: str, length: int = ORDER_LENGTH, prefix: dict | None = None) -> dict:
    """{class: training-set indices of its first ``length`` picks} for every class, with the
    seconds it took: the one-time precompute of a coreset start, like the feature moments (one
    pass of the training set through pool network 0, then the greedy picks per class). Read
    from the disk cache beside the moments when it is there; computed and written otherwise.
    ``prefix``: greedy orders of fewer picks already made (in memory), continued."""
    path = _orders_path(objective, method)
    before = 0.0
    if path is not None and path.is_file():
        from .errors import CorruptFile
        from .io import load_tensors
        try:
            tensors, info = load_tensors(path)
            orders = {int(k[1:]): v for k, v in tensors.items() if k.startswith("c")}
            if _valid(objective, orders, length):
                return {"orders": orders, "seconds": float(info.get("seconds", 0.0)), "cached": True}
            shortest = min((len(o) for o in orders.values()), default=0)
            longer = shortest > min((len(o) for o in (prefix or {}).values()), default=0)
            if method == "greedy" and longer and _valid(objective, orders, shortest):
                prefix, before = orders, float(info.get("seconds", 0.0))  # nested: continued below
        except (CorruptFile, ValueError, RuntimeError):
            pass  # recomputed and replaced below
    t0 = time.perf_counter()
    if method == "greedy":
        from .greedy import greedy_orders
        check_ipc(objective.dataset, length)
        herding = [class_order(objective, c, max(length, ORDER_LENGTH), "herding")
                   for c in range(len(objective.class_index))]
        done = min((len(o) for o in (prefix or {}).values()), default=0)
        bar = Progress(length, "greedy start (levels a class)", enabled=bool(getattr(objective, "progress", None)),
                       initial=done)

        def on_level(partial, sec):     # each level saved: a search stopped part-way resumes from it
            _save_orders(path, method, partial, before + sec)
            bar.update(1)
        orders = greedy_orders(objective, length, herding, prefix=prefix, on_level=on_level)
        bar.close()
    else:
        orders = {}
        for c, members in enumerate(objective.class_index):
            local = PICKERS[method](_class_features(objective, c), min(len(members), length))
            orders[c] = members[torch.tensor(local, dtype=torch.long)]
    seconds = before + time.perf_counter() - t0
    _save_orders(path, method, orders, seconds)
    return {"orders": orders, "seconds": seconds, "cached": False}


def _save_orders(path, method: str, orders: dict, seconds: float) -> None:
    """Write ``orders`` to the disk cache (atomically; nothing when the objective keeps no cache).
    Greedy's search saves every level this way, so a search stopped part-way serves the sizes it
    reached and a later call continues it (the cache check above)."""
    if path is None:
        return
    from .errors import MgddError
    from .io import save_tensors
    length = min(len(o) for o in orders.values())
    try:
        save_tensors(path, {f"c{c}": o for c, o in orders.items()},
                     {"kind": "coreset-orders", "method": method, "length": length, "seconds": seconds}, force=True)
    except (OSError, MgddError):
        pass  # caching is an optimisation (features.py warns about an unwritable cache once)


def order_seconds(objective, method: str) -> float:
    """Seconds the objective's ``method`` orders took to compute (cold), once they exist."""
    return objective.__dict__.get("_order_seconds", {}).get(method, 0.0)


def class_order(objective, c: int, ipc: int, method: str) -> torch.Tensor:
    """Training-set indices of the first ``ipc`` picks of ``method`` in class c. Every class's
    order is computed (or read from the cache) at once, up to order_length(method, ipc) picks; a
    longer request recomputes (greedy: continues), and the prefix is the same."""
    cache = objective.__dict__.setdefault("_start_orders", {})
    order = cache.get((method, c))
    if order is None or len(order) < min(ipc, len(objective.class_index[c])):
        prefix = None
        if method == "greedy" and all((method, k) in cache for k in range(len(objective.class_index))):
            prefix = {k: cache[(method, k)] for k in range(len(objective.class_index))}
        made = compute_orders(objective, method, order_length(method, ipc), prefix)
        cache.update({(method, k): v for k, v in made["orders"].items()})
        objective.__dict__.setdefault("_order_seconds", {})[method] = made["seconds"]
        order = cache[(method, c)]
    return order[:ipc]


def coreset_indices(objective, ipc: int, method: str, classes=None) -> torch.Tensor:
    """Training-set indices of a per-class coreset, class-major like sample_init: (len(classes) * ipc,)."""
    classes = range(objective.dataset.num_classes) if classes is None else classes
    return torch.cat([class_order(objective, c, ipc, method) for c in classes])


def start_set(objective, ipc: int, start: str = "random", seed: int = 0, classes=None) -> tuple:
    """X_0 and its labels: (x0, y0), class-major over ``classes`` (default all); "auto" is
    resolved at this ``ipc`` (resolve_start)."""
    start = resolve_start(start, objective, ipc)
    dataset = objective.dataset
    if start == "random":
        return sample_init(dataset, ipc, seed, classes=classes)
    check_ipc(dataset, ipc)
    idx = coreset_indices(objective, ipc, start, classes)
    return dataset.train_x[idx].clone(), dataset.train_y[idx].clone()
