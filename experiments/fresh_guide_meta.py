"""Issue #39 probe: meta-train the generator to read a guide from fresh networks.

experiments/fresh_guide.py fed the shipped generator (meta-trained on pool guides) a guide from
krr-fresh's estimator (a new random ConvNet and fresh real batches per draw) and it scored level
within the spread. The untried half: meta-train the generator on that guide, so it learns to read
it. Everything else is the shipped recipe (MNIST, unrolled, 4 passes, 300 meta-steps x 2 tasks,
IPC 1-30, herding start, seed 0); the meta-loss still scores each pass with one pool network, so
the run pairs step by step with the shipped generator's (experiments/meta_log_diff.py).

The guide of a pass at input x is

    g(x) = G / rms(G),   G = (1/N) sum_{i<N} d/dx L_fresh(x; net_i, batches_i)

with N = the generator's guide networks (2), where L_fresh is objective.FreshObjective's loss
(labels solved on one real batch of 1024 images, loss measured on another). The draws' seeds come
from a CRC-32 of x's bytes: g is a function of x alone, so a resumed run and a guide computed again
in the backward read the same networks, while every pass of every task reads new ones.

    python experiments/fresh_guide_meta.py train --out runs/meta-herding-freshguide [--resume]
    python experiments/fresh_guide_meta.py eval --ipcs 1 --runs 3
    python experiments/fresh_guide_meta.py eval --ipcs 10,20,50,100 --runs 1

eval writes cells (row "meta:herding-freshguide") in results/generator-view's format beside the
other rows (experiments/generator_view.py --table prints them together): the generator's recorded
start and passes, fresh guides at generation too, the exact 8-network least-squares labels.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import zlib
from pathlib import Path

import torch

import mgdd
from mgdd.generate import GUIDE_NETS
from mgdd.meta import generator_metadata
from mgdd.objective import FreshObjective
from mgdd.pipeline import set_seconds

ROW = "meta:herding-freshguide"
RECIPE = dict(algorithm="unrolled", passes=4, meta_steps=300, tasks_per_step=2, ipc_range=(1, 30), start="herding",
              seed=0, checkpoint_every=10)


class FreshGuideObjective(FreshObjective):
    """The pool objective (cached moments for the meta-loss and the labels) with the guide drawn
    from fresh networks and real batches, seeded by the input (see the module docstring)."""

    @classmethod
    def build(cls, dataset, **kwargs) -> "FreshGuideObjective":
        return cls.sharing(mgdd.KRRObjective(dataset, **kwargs))

    def describe(self) -> dict:
        return {**super().describe(), "mode": "pool", "guide": "fresh"}

    def guide(self, x0: torch.Tensor, classes=None, nets: int | None = None) -> torch.Tensor:
        self._check(x0)
        x = x0.detach().to(self.device).float()
        base = zlib.crc32(x.cpu().contiguous().numpy().tobytes())
        n = nets or GUIDE_NETS
        x = x.requires_grad_(True)
        with torch.enable_grad():
            loss = sum(self.loss(x, random.Random(base * 64 + i), classes) for i in range(n)) / n
            (grad,) = torch.autograd.grad(loss, x)
        return (grad / grad.pow(2).mean().sqrt().clamp_min(1e-12)).detach()


def train(args) -> None:
    out = Path(args.out)
    source = mgdd.load_dataset("mnist")
    objective = FreshGuideObjective.build(source, class_subsets=True)
    torch.manual_seed(RECIPE["seed"])
    gen = mgdd.MetaGenerator(mgdd.GeneratorConfig(channels=source.channels))
    out.mkdir(parents=True, exist_ok=True)
    recipe = {**RECIPE, "meta_steps": args.meta_steps}
    log = mgdd.meta_train(gen, objective, recipe["meta_steps"], recipe["algorithm"], recipe["tasks_per_step"],
                     ipc_range=recipe["ipc_range"], seed=recipe["seed"], checkpoint=out / "meta-checkpoint.safetensors",
                     checkpoint_every=recipe["checkpoint_every"], resume=args.resume, progress=not args.quiet,
                     log_path=out / "meta-log.json", passes=recipe["passes"], start=recipe["start"])
    command = "python experiments/fresh_guide_meta.py " + " ".join(sys.argv[1:])
    gen.save_pretrained(out, metadata=generator_metadata(source, objective, log, command), force=True)
    h = log["history"]
    print(f"meta-trained {recipe['meta_steps']} steps in {log['seconds']:.1f}s; loss relative to X_0 "
          f"{h[0]['relative_loss']:.4f} -> {h[-1]['relative_loss']:.4f}; wrote {out}/")


def evaluate_cells(args) -> None:
    dataset = mgdd.load_dataset("fashion-mnist")
    objective = FreshGuideObjective.build(dataset)
    objective.cache = False  # each set pays for its own coreset selection, as in generator_view.py
    gen = mgdd.MetaGenerator.from_pretrained(args.generator).eval()
    cells = Path(args.cells)
    cells.mkdir(parents=True, exist_ok=True)
    for ipc in (int(i) for i in args.ipcs.split(",")):
        path = cells / f"ipc{ipc}-{ROW.replace(':', '_')}.json"
        cell = json.loads(path.read_text()) if path.exists() else None
        if cell is not None and len(cell["accuracies"]) >= args.runs:
            continue
        torch.manual_seed(0)
        t0 = time.perf_counter()
        ds = mgdd.generate(gen, objective, ipc)
        wall = time.perf_counter() - t0
        done = cell["accuracies"] if cell else []
        for r in range(len(done), args.runs):
            res = mgdd.evaluate(ds, dataset, runs=1, seed=r, epochs=300, progress=False)
            done.append(100 * res["accuracy_mean"])
        cell = {"ipc": ipc, "row": ROW, "accuracies": done, "seconds": set_seconds(ds), "wall_seconds": wall,
                "start": ds.meta.get("start", "random"), "passes": ds.meta.get("passes", 1), "guide": "fresh",
                "protocol": f"ConvNet-3, 300 epochs, CE at T=0.25, runs seeded 0..{len(done) - 1}"}
        path.write_text(json.dumps(cell, indent=1) + "\n")
        print(json.dumps(cell), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", default="runs/meta-herding-freshguide")
    t.add_argument("--meta-steps", type=int, default=RECIPE["meta_steps"])
    t.add_argument("--resume", action="store_true")
    t.add_argument("--quiet", action="store_true")
    e = sub.add_parser("eval")
    e.add_argument("--generator", default="runs/meta-herding-freshguide")
    e.add_argument("--cells", default="results/generator-view/fashion-mnist/cells")
    e.add_argument("--ipcs", default="1")
    e.add_argument("--runs", type=int, default=1)
    args = p.parse_args()
    train(args) if args.cmd == "train" else evaluate_cells(args)


if __name__ == "__main__":
    main()
