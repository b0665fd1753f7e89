"""Issue #17: time and peak memory of each stage on colour images at 32x32 and 64x64, IPC 50.

    python benchmarks/colour_data.py        # once: builds tinted-mnist.npz
    python benchmarks/colour_cost.py [--sizes 32,64] [--eval-epochs 20]

Dataset: tinted-mnist (benchmarks/colour_data.py; 8,000 training and 2,000 test images,
3 channels), resized to each size with --image-size semantics (load_dataset(image_size=N)).
Every stage runs in its own process, so its peak resident memory (ru_maxrss, dataset load
included) is its own; every stage but evaluate also holds the objective's moments, whose
size grows with the feature dimension d = 64 * (size/8)^2 (1,024 at 32x32, 4,096 at 64x64):

  precompute   the default objective's feature moments (8 random ConvNet-3, width 64), no cache
  adapt        one adaptation step from the shipped colour meta generator, mean of 5
               steps after one warm-up step; at IPC 50 for 32x32, but at IPC 10 for 64x64: an
               IPC-50 step there would hold the 64x64 moments (~11 GB) plus about 4x the 32x32
               step's autograd memory, too close to this machine's 24 GB to risk
  generate     one generator pass at IPC 50 (guide + forward) and the least-squares label solve
  evaluate     ConvNet-3 training on the IPC-50 set (saved by generate; no objective loaded):
               --eval-epochs epochs measured, the time of
               the default 300 epochs extrapolated from them (stated as such), plus the test pass

Writes results/colour/cost.json and results/colour/cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "results" / "colour"
ADAPT_IPC = {64: 10}   # see the docstring: other sizes adapt at IPC 50


def stage(name: str, size: int, data: str, cache_dir: str, eval_epochs: int) -> dict:
    from mgdd.adapt import adapt
    from mgdd.data import load_dataset
    from mgdd.distilled import DistilledSet
    from mgdd.evaluate import evaluate
    from mgdd.generate import generate
    from mgdd.objective import KRRObjective
    from mgdd.pipeline import load_generator

    dataset = load_dataset(f"npz:{data}", image_size=size)
    out = {"stage": name, "size": size, "train_images": len(dataset.train_y)}
    set_path = Path(cache_dir) / "ipc50.safetensors"
    if name == "evaluate":  # the set from the generate stage: this process never holds the moments
        ds = DistilledSet.load(set_path)
        t0 = time.perf_counter()
        res = evaluate(ds, dataset, epochs=eval_epochs, runs=1, progress=False)
        wall = time.perf_counter() - t0
        train = res["per_run"][0]["train_seconds"]
        out.update(epochs_measured=eval_epochs, train_seconds_measured=train, test_seconds=wall - train,
                   seconds_300_epochs_extrapolated=train / eval_epochs * 300 + (wall - train))
        return out
    t0 = time.perf_counter()
    objective = KRRObjective(dataset, cache=True, cache_dir=cache_dir)
    out["feature_dim"] = objective.pool.dim
    if name == "precompute":
        out["seconds"] = time.perf_counter() - t0
        return out
    gen, origin = load_generator("meta", dataset.channels, seed=0)
    out["generator"] = origin
    if name == "adapt":
        ipc = ADAPT_IPC.get(size, 50)
        adapt(gen, objective, steps=1, ipcs=[ipc], progress=False)
        log = adapt(gen, objective, steps=5, ipcs=[ipc], seed=1, progress=False)
        out.update(seconds_per_step=log["seconds"] / 5, ipc=ipc)
        return out
    ds = generate(gen, objective, 50, seed=0)
    ds.save(set_path, force=True)
    out.update(pass_seconds=ds.meta["timing"]["generate_seconds"], label_seconds=ds.meta["timing"]["label_seconds"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,64")
    ap.add_argument("--eval-epochs", type=int, default=20)
    ap.add_argument("--data", default=None)
    ap.add_argument("--stage", default=None, help=argparse.SUPPRESS)   # internal: one stage in this process
    ap.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from mgdd.data import user_data_dir
    data = args.data or str(user_data_dir() / "colour" / "tinted-mnist.npz")
    if args.stage:
        res = stage(args.stage, args.size, data, args.cache_dir, args.eval_epochs)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return 0
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as cache:
            for name in ("precompute", "adapt", "generate", "evaluate"):
                r = subprocess.run([sys.executable, __file__, "--stage", name, "--size", str(size), "--cache-dir", cache,
                                    "--eval-epochs", str(args.eval_epochs), "--data", data],
                                   capture_output=True, text=True, check=True)
                rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
                OUT.mkdir(parents=True, exist_ok=True)
                (OUT / "cost.partial.json").write_text(json.dumps(rows, indent=1) + "\n")
    record = {"rows": rows, "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "command": " ".join(sys.argv)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cost.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = ["| image size | stage | seconds | peak memory (MB) |", "|---|---|---|---|"]
    for r in rows:
        if r["stage"] == "precompute":
            t = f"{r['seconds']:.1f} (moments of {r['train_images']} images)"
        elif r["stage"] == "adapt":
            t = f"{r['seconds_per_step']:.2f} per step (IPC {r['ipc']})"
        elif r["stage"] == "generate":
            t = f"{r['pass_seconds']:.2f} pass + {r['label_seconds']:.2f} label solve"
        else:
            t = (f"{r['seconds_300_epochs_extrapolated']:.0f} for 300 epochs (extrapolated from "
                 f"{r['epochs_measured']}: {r['train_seconds_measured']:.1f} s) incl. {r['test_seconds']:.1f} s test")
        lines.append(f"| {r['size']}x{r['size']} | {r['stage']} | {t} | {r['peak_rss_mb']:.0f} |")
    (OUT / "cost.md").write_text("\n".join(lines) + "\n")
    (OUT / "cost.partial.json").unlink()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
