"""Where an adaptation step's time goes, and what adapting only the FiLM layers would save.

Run from the repository root after `make install data` and a fmnist bench (for its feature cache):
    .venv/bin/python benchmarks/adapt_step_profile.py > results/extra/adapt_step_profile.json
A step = synthesize (the guide: the KRR-loss gradient at X_0 over GUIDE_NETS pool networks, then
the generator's forward pass) + the KRR loss + backward. Mean seconds over 4 timed steps after
2 warm-up steps, on the shipped meta generator and the bench's Fashion-MNIST objective.
"""

import json
import os
import platform
import time

import torch

os.environ.setdefault("MGDD_CACHE", "results/fmnist/cache")

from mgdd.allocator import keep_freed_memory  # noqa: E402
from mgdd.bench import PRESETS  # noqa: E402
from mgdd.data import load_dataset, sample_init  # noqa: E402
from mgdd.features import FeatureConfig  # noqa: E402
from mgdd.generate import GUIDE_NETS, synthesize  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402
from mgdd.pipeline import load_generator  # noqa: E402


def profile(gen, obj, ipc, film_only, warmup=2, timed=4) -> dict:
    for name, p in gen.named_parameters():
        p.requires_grad_(not film_only or ".film." in name)
    x0, y0 = sample_init(obj.dataset, ipc, 0)
    total = {"synthesize": 0.0, "loss": 0.0, "backward": 0.0}
    for r in range(warmup + timed):
        gen.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        xs = synthesize(gen, obj, x0, y0, obj.dataset.num_classes)
        t1 = time.perf_counter()
        loss = obj.pool_loss(xs, r % obj.pool.size)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        if r >= warmup:
            for k, dt in zip(total, (t1 - t0, t2 - t1, t3 - t2)):
                total[k] += dt
    out = {k: round(v / timed, 3) for k, v in total.items()}
    out["step"] = round(sum(out.values()), 3)
    return out


def main():
    cfg = PRESETS["fmnist"]
    dataset = load_dataset(cfg["dataset"])
    obj = KRRObjective(dataset, FeatureConfig(**cfg["feature"]), cfg["pool_size"], seed=0)
    gen, origin = load_generator("meta", dataset.channels)
    rows = []
    with keep_freed_memory():
        for ipc in (1, 10, 50):
            for film_only in (False, True):
                rows.append({"ipc": ipc, "params": "film" if film_only else "all",
                             **profile(gen, obj, ipc, film_only)})
    print(json.dumps({"generator": origin, "guide_nets": GUIDE_NETS, "torch": torch.__version__,
                      "cpus": os.cpu_count(), "machine": platform.machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
