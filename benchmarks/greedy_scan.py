"""The greedy start's swap scan, timed two ways on the same data (issue #39): the single-GEMM
products of ``mgdd.greedy._left`` against the broadcast matmul they replaced (torch copies the
M x M matrix into O thin batched products). Synthetic features with Fashion-MNIST's shapes
(d = 1,024, 10 classes, a class's 228 candidates); the two ways alternate, so both see the same
load. Writes JSON (default results/generator-view/greedy-scan-timing.json).

    OMP_NUM_THREADS=1 python benchmarks/greedy_scan.py
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import mgdd.greedy as greedy


def timed(scan, slot, options, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        scan.scan(slot, options)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100,500,1000", help="set sizes M (images in the set)")
    p.add_argument("--candidates", type=int, default=228)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="results/generator-view/greedy-scan-timing.json")
    args = p.parse_args()
    torch.manual_seed(0)
    d, c, n_real = 1024, 10, 4000
    real = torch.randn(n_real, d).relu().double()
    moments = (real.T @ real, real.T @ torch.randn(n_real, c).double(), float(n_real), n_real)
    single = greedy._left
    rows = []
    for m in [int(s) for s in args.sizes.split(",")]:
        f = torch.randn(m + args.candidates, d).relu()
        scan = greedy.SwapScan(f, moments, 1e-3)
        scan.hold(torch.arange(m), 0.1)
        options = torch.arange(m, m + args.candidates)
        res = {}
        for name, fn in (("single_gemm", single), ("broadcast", lambda a, v: torch.matmul(a, v))):
            greedy._left = fn
            lo = scan.scan(3, options)
            res[name] = timed(scan, 3, options, args.repeats)
            res[f"{name}_losses"] = lo
        greedy._left = single
        diff = float(((res["single_gemm_losses"] - res["broadcast_losses"]).abs()
                      / res["broadcast_losses"].abs()).max())
        rows.append({"M": m, "candidates": args.candidates, "single_gemm_seconds": round(res["single_gemm"], 4),
                     "broadcast_seconds": round(res["broadcast"], 4),
                     "speedup": round(res["broadcast"] / res["single_gemm"], 2), "max_relative_loss_difference": diff})
        print(json.dumps(rows[-1]), flush=True)
    record = {"machine": f"{platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}",
              "note": "median of --repeats scans of one slot over every candidate, one network", "rows": rows}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
