"""Issue #39 probe: how should the grey generator fold a colour target's channels?

The shipped (grey, MNIST) generator serves C-channel images by folding each channel into a grey
image of the same class (generator.py). On the 100-class colour shape of issue #41 (10 garments x
10 colour schemes, 32 px) its 4 passes from the herding start score 71.65 at IPC 10 against 76.28
for the start itself (herding+ls), while the KRR loss barely moves (0.9993 of the start's): the
passes add channel-independent texture, at MNIST's contrast, to images whose channels carry low
within-image contrast, which reads as colour noise. Two generation-time changes, no retraining:

  contrast   each (image, channel) standardised over its pixels before the pass and restored
             after: x' = mu + s * G((x - mu) / s), the guide read in the same coordinates
             (s * g, RMS-normalised over the set again); a flat channel (s ~ 0) is left alone
  achromatic the pass's update averaged over the channels and added to each:
             x' = x + mean_c(G(x) - x); it changes brightness, never colour

and `shipped` (the generator as it ships). Cheap protocol (ConvNet-3, 300 epochs, CE at T = 0.25,
runs seeded 0..), the same herding start, passes and 8-network least-squares labels; one JSON a
(dataset, row, IPC) under results/generator-view/colour-fold/, with the loss after the passes
relative to the start's (mean over the 8 pool networks):

    python experiments/colour_fold.py --dataset c100-32 --ipcs 10 --runs 1
    python experiments/colour_fold.py --dataset colour-fashion-mnist --ipcs 1 --runs 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import mgdd
from mgdd.evaluate import evaluate
from mgdd.generate import default_guide_nets, default_passes, generate
from mgdd.pipeline import load_generator
from mgdd.start import start_set

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "generator-view" / "colour-fold"
ROWS = ("shipped", "contrast", "achromatic")


def load(name: str):
    """The dataset and its objective: a shape of issue #41 (benchmarks/shapes.py's data and cache)
    or colour Fashion-MNIST (benchmarks/colour_data.py)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import shapes
    if name in shapes.SHAPES:
        dataset = mgdd.load_dataset(f"npz:{shapes.data_dir() / (name + '.npz')}")
        return dataset, mgdd.KRRObjective(dataset, cache_dir=shapes.cache_dir(name))
    dataset = mgdd.load_dataset(f"npz:{Path.home() / '.cache/mgdd/data/colour' / (name + '.npz')}")
    return dataset, mgdd.KRRObjective(dataset)


def rms_normalised(g: torch.Tensor) -> torch.Tensor:
    return g / g.pow(2).mean().sqrt().clamp_min(1e-12)


def one_pass(row: str, gen, objective, x, y0, k: int) -> torch.Tensor:
    guide = objective.guide(x, nets=default_guide_nets(gen))
    g = lambda x, guide: gen.generate(x, y0, k, guide=guide, chunk=256)  # noqa: E731  as generate() runs it
    if row == "shipped":
        return g(x, guide)
    if row == "achromatic":
        return x + (g(x, guide) - x).mean(1, keepdim=True)
    if row == "contrast":
        mu = x.mean((2, 3), keepdim=True)
        s = x.std((2, 3), keepdim=True)
        flat = s < 1e-3
        s = torch.where(flat, torch.ones_like(s), s)
        out = mu + s * g((x - mu) / s, rms_normalised(guide * s))
        return torch.where(flat, x, out)
    raise SystemExit(f"unknown row {row}")


def make_set(row: str, dataset, objective, gen, ipc: int):
    # the shipped set, from herding as below (the product's default start is now auto): its meta, the row `shipped`
    base = generate(gen, objective, ipc, seed=0, start="herding")
    x, y0 = start_set(objective, ipc, "herding", 0)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(default_passes(gen)):
            x = one_pass(row, gen, objective, x, y0, dataset.num_classes)
    seconds = time.perf_counter() - t0
    if row == "shipped" and not torch.equal(x.float().cpu(), base.images):
        raise SystemExit("the shipped row does not rebuild generate()'s set")
    ds = mgdd.DistilledSet(x.float().cpu(), objective.labels(x), {**base.meta, "method": f"mgdd@{row}"})
    return ds, seconds


def mean_loss(objective, x) -> float:
    with torch.no_grad():
        return sum(objective.pool_loss(x, i).item() for i in range(objective.pool.size)) / objective.pool.size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="c100-32")
    ap.add_argument("--ipcs", default="10")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--no-eval", action="store_true", help="the losses only")
    args = ap.parse_args()
    dataset, objective = load(args.dataset)
    gen, origin = load_generator("meta", dataset.channels, seed=0)
    gen.eval()
    out = OUT / args.dataset
    out.mkdir(parents=True, exist_ok=True)
    for ipc in (int(i) for i in args.ipcs.split(",")):
        x0, _ = start_set(objective, ipc, "herding", 0)
        start = mean_loss(objective, x0)
        for row in args.rows.split(","):
            path = out / f"ipc{ipc}-{row}.json"
            if path.exists() and not args.no_eval:
                continue
            ds, seconds = make_set(row, dataset, objective, gen, ipc)
            cell = {"dataset": args.dataset, "ipc": ipc, "row": row, "generator": origin, "pass_seconds": seconds,
                    "relative_loss": mean_loss(objective, ds.images) / start,
                    "change_rms": (ds.images - x0.float().cpu()).pow(2).mean().sqrt().item()}
            if args.no_eval:
                print(json.dumps(cell), flush=True)
                continue
            res = evaluate(ds, dataset, runs=args.runs, seed=0, progress=False)
            cell.update(accuracies=[100 * r["accuracy"] for r in res["per_run"]],
                        protocol=f"ConvNet-3, 300 epochs, CE at T=0.25, runs seeded 0..{args.runs - 1}")
            path.write_text(json.dumps(cell, indent=1) + "\n")
            print(json.dumps(cell), flush=True)


if __name__ == "__main__":
    main()
