"""Time the one-time precompute of the default objective on Fashion-MNIST (no cache).

    python benchmarks/precompute_timing.py [--out results/extra/precompute.json]

Builds KRRObjective(fashion-mnist) with the default pool (8 random ConvNets, width 64,
depth 3) and caching off, so every network's per-class moments over the 60k training
images are computed; records the wall-clock seconds and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgdd.data import load_dataset  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "extra" / "precompute.json"))
    args = ap.parse_args()
    dataset = load_dataset("fashion-mnist")
    per_net = []
    last = [time.perf_counter()]

    def tick(i, n):
        now = time.perf_counter()
        per_net.append(round(now - last[0], 2))
        last[0] = now
        print(f"network {i}/{n}: {per_net[-1]:.1f} s", flush=True)

    obj = KRRObjective(dataset, cache=False, progress=tick)
    out = {"seconds": obj.build_seconds, "per_network_seconds": per_net, "objective": obj.describe(),
           "train_images": len(dataset.train_y), "command": "python " + " ".join(sys.argv),
           "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                       "torch": torch.__version__, "threads": torch.get_num_threads(), "device": "cpu"}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"precompute {obj.build_seconds:.1f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
