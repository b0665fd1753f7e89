"""Issue #41: what one unrolled adaptation step (4 passes, the shipped generator) holds in memory,
pass by pass, on a seeded random 10-class 3 x 64 x 64 set (no download; 100 training images a
class), one thread, one process:

    python benchmarks/adapt_memory.py --ipc 100 --out results/shapes/adapt-memory/after.json
    git archive 4597ec4 mgdd | tar x -C /tmp/before        # the package before the streamed pass
    MGDD_SRC=/tmp/before python benchmarks/adapt_memory.py --ipc 100 --out results/shapes/adapt-memory/before.json
    python benchmarks/adapt_memory.py --ipc 100 --rebuild-guides --out results/shapes/adapt-memory/rebuilt-guides.json

Without mgdd's allocator policy (keep_freed_memory), the resident size follows what is alive:
the script prints it after X_0 and after each pass's guide, generator pass and loss, in copies
of the synthetic set, and the peak of the step, backward included (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.environ.get("MGDD_SRC") or str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mgdd.data import load_dataset  # noqa: E402
from mgdd.generator import MetaGenerator  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402
from mgdd.pipeline import default_meta_generator  # noqa: E402
from mgdd.start import start_set  # noqa: E402


def resident_gb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ipc", type=int, default=100)
    p.add_argument("--out", required=True)
    p.add_argument("--rebuild-guides", action="store_true",
                   help="keep no guide for the backward, which computes each again (generate.GuideRebuilt)")
    args = p.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="mgdd-adapt-memory-"))
    rng = np.random.default_rng(0)
    np.savez(work / "fake64.npz", x_train=rng.integers(0, 256, (1000, 64, 64, 3), dtype=np.uint8),
             y_train=np.repeat(np.arange(10), 100), x_test=rng.integers(0, 256, (50, 64, 64, 3), dtype=np.uint8),
             y_test=np.repeat(np.arange(10), 5))
    ds = load_dataset(f"npz:{work / 'fake64.npz'}")
    obj = KRRObjective(ds, cache_dir=work / "cache")
    gen = MetaGenerator.from_pretrained(default_meta_generator(3))
    gen.train()
    set_gb = args.ipc * 10 * 3 * 64 * 64 * 4 / 2**30
    x0, _ = start_set(obj, args.ipc, "random", seed=0)
    y0 = torch.arange(10).repeat_interleave(args.ipc)
    r0, t0 = resident_gb(), time.perf_counter()
    rows, x, total = [], x0, 0.0
    for t in range(4):
        guide = obj.guide(x, nets=2)
        a = resident_gb()
        if args.rebuild_guides:
            from mgdd.generate import GuideRebuilt
            hooks = GuideRebuilt(guide, lambda x=x: obj.guide(x, nets=2))
            with torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack):
                x = gen(x, y0, 10, guide=guide)
        else:
            x = gen(x, y0, 10, guide=guide)
        del guide
        b = resident_gb()
        total = total + obj.pool_loss(x, 0)
        c = resident_gb()
        rows.append({"pass": t + 1, "after_guide_sets": (a - r0) / set_gb, "after_generator_sets": (b - r0) / set_gb,
                     "after_loss_sets": (c - r0) / set_gb})
        print(rows[-1], flush=True)
    before_backward = resident_gb()
    total.backward()
    out = {"ipc": args.ipc, "rebuild_guides": args.rebuild_guides, "set_gb": set_gb, "source": os.environ.get("MGDD_SRC") or "this checkout",
           "resident_after_x0_gb": r0, "resident_before_backward_gb": before_backward,
           "held_before_backward_sets": (before_backward - r0) / set_gb,
           "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "step_seconds": time.perf_counter() - t0, "passes": rows, "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "passes"}))


if __name__ == "__main__":
    main()
