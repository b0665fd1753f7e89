"""Issue #39, step 0: what the shipped generator makes of a better start and of a real-data view,
with no meta-training (public API only, plus the generator's documented inputs).

Rows per IPC, every one ending in the exact least-squares label solve:
  random+ls, herding+ls, kmeans+ls (pixel-space k-means centroids per class; IPC 1 = class means),
  gen:random    the shipped meta generator at K = 0 from the bench's seeded random start,
  gen:herding   the same generator from the herding start (nested: IPC-k start = first k picks),
  gen:random:real / gen:herding:real
                the same, with the generator's pixel context (class-mean and set-mean images)
                taken from the real training data instead of from the start X_0.

Cheap protocol (results/ablation/calibration.md): one ConvNet-3 run, 300 epochs, seed 0.
Each finished cell is one JSON file, so the script resumes cell by cell:

    python experiments/generator_view.py --ipcs 1,10 --out results/generator-view
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import mgdd
from mgdd.start import coreset_indices
from mgdd.generate import synthesize, default_passes
from mgdd.distilled import DistilledSet, distilled_meta


def kmeans_centroids(x: torch.Tensor, k: int, seed: int = 0, iters: int = 30) -> torch.Tensor:
    """Lloyd's k-means on flattened images (k-means++ start); returns (k, *x.shape[1:])."""
    flat = x.reshape(len(x), -1).double()
    g = torch.Generator().manual_seed(seed)
    centres = [flat[torch.randint(len(flat), (1,), generator=g)].squeeze(0)]
    for _ in range(k - 1):
        d = torch.cdist(flat, torch.stack(centres)).min(1).values.pow(2)
        centres.append(flat[torch.multinomial(d / d.sum(), 1, generator=g)].squeeze(0))
    c = torch.stack(centres)
    for _ in range(iters):
        assign = torch.cdist(flat, c).argmin(1)
        for j in range(k):
            members = flat[assign == j]
            if len(members):
                c[j] = members.mean(0)
    return c.float().reshape(k, *x.shape[1:])


def real_pixel_stats(dataset) -> dict:
    """Per-class pixel sums and counts of the real training set, in the generator's stats layout."""
    k = dataset.num_classes
    sums = torch.zeros(k, *dataset.train_x.shape[1:], dtype=torch.float64).index_add(
        0, dataset.train_y, dataset.train_x.double())
    counts = torch.bincount(dataset.train_y, minlength=k).double()
    return {"means": (sums / counts.view(-1, 1, 1, 1)).float(), "set_mean": (sums.sum(0) / counts.sum()).float()}


def with_real_context(generator, real):
    """Make the generator read the real class-mean and set-mean images as its pixel context."""
    def ctx(x, y, stats):
        return real["means"][y], real["set_mean"].expand(len(x), -1, -1, -1)
    generator._pixel_context = ctx
    return generator


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ipcs", default="1,10")
    p.add_argument("--rows", default="random+ls,herding+ls,kmeans+ls,gen:random,gen:herding,gen:random:real,"
                                     "gen:herding:real")
    p.add_argument("--out", default="results/generator-view")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=300)
    args = p.parse_args()
    out = Path(args.out) / args.dataset
    (out / "cells").mkdir(parents=True, exist_ok=True)
    dataset = mgdd.load_dataset(args.dataset)
    objective = mgdd.KRRObjective(dataset)
    real = real_pixel_stats(dataset)
    for ipc in [int(i) for i in args.ipcs.split(",")]:
        herd = None
        for row in args.rows.split(","):
            path = out / "cells" / f"ipc{ipc}-{row.replace(':', '_').replace('+', '-')}.json"
            if path.exists():
                continue
            t0 = time.perf_counter()
            x0, y0 = mgdd.sample_init(dataset, ipc, seed=0)
            if "herding" in row:
                herd = herd if herd is not None else coreset_indices(objective, ipc, "herding")
                x0, y0 = dataset.train_x[herd].clone(), dataset.train_y[herd].clone()
            if row == "kmeans+ls":
                x0 = torch.cat([kmeans_centroids(dataset.train_x[dataset.train_y == c], ipc)
                                for c in range(dataset.num_classes)])
                y0 = torch.arange(dataset.num_classes).repeat_interleave(ipc)
            x = x0
            if row.startswith("gen:"):
                gen = mgdd.MetaGenerator.from_pretrained(mgdd.default_meta_generator(dataset.channels)).eval()
                if row.endswith(":real"):
                    with_real_context(gen, real)
                with torch.no_grad():
                    pass
                x = synthesize(gen, objective, x0, y0, dataset.num_classes, chunk=256,
                               passes=default_passes(gen)).detach()
            labels = objective.labels(x)
            seconds = time.perf_counter() - t0
            ds = DistilledSet(x.float(), labels, distilled_meta(dataset, ipc, row, 0, objective,
                                                                {"seconds": seconds}), dataset.zca)
            res = mgdd.evaluate(ds, dataset, runs=1, epochs=args.epochs, progress=False)
            cell = {"ipc": ipc, "row": row, "accuracy": 100 * res["accuracy_mean"], "seconds": seconds,
                    "protocol": f"ConvNet-3, {args.epochs} epochs, 1 run (seed 0), CE at T=0.25"}
            path.write_text(json.dumps(cell, indent=1))
            print(json.dumps(cell), flush=True)


if __name__ == "__main__":
    main()
