"""Issue #39 probe: the shipped generator reading a guide from fresh networks.

The shipped generator's guide is the gradient of the KRR loss through the first 2 networks of
the cached pool; krr-pixel's pixels overfit those fixed networks, and krr-fresh (a new random
network and fresh real batches every step) passes krr-pixel's plateau at IPC 1 after
thousands of steps (results/krr-fresh). Does the same swap help the generator, with no
retraining? Each pass's guide here is the mean gradient of the fresh-network loss
(objective.FreshObjective, the estimator krr-fresh runs) over N draws, RMS-normalised over the
set as the pool guide is; everything else (weights, herding start, 4 passes, the 8-network
least-squares labels) as shipped.

Rows: shipped (the pool guide; must match results/generator-view's `shipped` cells) and
fresh-N for N fresh networks a pass. Cheap protocol (ConvNet-3, 300 epochs, CE at T = 0.25),
runs seeded 0..; one JSON file a (row, IPC) under results/generator-view/fresh-guide/:

    python experiments/fresh_guide.py --ipcs 1 --runs 3 --rows shipped,fresh-2,fresh-8
    python experiments/fresh_guide.py --ipcs 10 --runs 1 --rows shipped,fresh-2,fresh-8
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

import mgdd
from mgdd.evaluate import evaluate
from mgdd.generate import default_passes, generate
from mgdd.objective import FreshObjective
from mgdd.start import start_set

OUT = Path(__file__).resolve().parents[1] / "results" / "generator-view" / "fresh-guide"


def fresh_guide(fresh: FreshObjective, x, draws: int, rng: random.Random) -> torch.Tensor:
    """The mean gradient of ``draws`` fresh-network losses at x, RMS-normalised over the set."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = sum(fresh.loss(x, rng) for _ in range(draws)) / draws
        (grad,) = torch.autograd.grad(loss, x)
    return (grad / grad.pow(2).mean().sqrt().clamp_min(1e-12)).detach()


def make_set(row: str, objective, gen, ipc: int) -> mgdd.DistilledSet:
    if row == "shipped":  # from herding, as below (the product's default start is now auto)
        return generate(gen, objective, ipc, seed=0, start="herding")
    draws = int(row.split("-")[1])
    fresh, rng = FreshObjective.sharing(objective), random.Random(0)
    x, y0 = start_set(objective, ipc, "herding", 0)
    with torch.no_grad():
        for _ in range(default_passes(gen)):
            x = gen(x, y0, objective.dataset.num_classes, guide=fresh_guide(fresh, x, draws, rng))
    base = generate(gen, objective, ipc, seed=0, start="herding")  # the same meta (start, passes), then this row's images
    return mgdd.DistilledSet(x.float().cpu(), objective.labels(x), {**base.meta, "method": f"mgdd@{row}"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipcs", default="1")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--rows", default="shipped,fresh-2,fresh-8")
    args = ap.parse_args()
    dataset = mgdd.load_dataset("fashion-mnist")
    objective = mgdd.KRRObjective(dataset)
    gen = mgdd.MetaGenerator.from_pretrained(mgdd.default_meta_generator(dataset.channels)).eval()
    OUT.mkdir(parents=True, exist_ok=True)
    for ipc in (int(i) for i in args.ipcs.split(",")):
        for row in args.rows.split(","):
            path = OUT / f"ipc{ipc}-{row}.json"
            if path.exists():
                continue
            ds = make_set(row, objective, gen, ipc)
            res = evaluate(ds, dataset, runs=args.runs, seed=0, progress=False)
            cell = {"ipc": ipc, "row": row, "accuracies": [100 * r["accuracy"] for r in res["per_run"]],
                    "protocol": f"ConvNet-3, 300 epochs, CE at T=0.25, runs seeded 0..{args.runs - 1}"}
            path.write_text(json.dumps(cell, indent=1) + "\n")
            print(json.dumps(cell), flush=True)


if __name__ == "__main__":
    main()
