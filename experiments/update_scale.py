"""Issue #39 probe: is the shipped generator's step too short or too long for the target?

Each of its passes is scaled, X_{t+1} = X_t + alpha (G(X_t, guide(X_t)) - X_t), from the
herding start it ships with, on Fashion-MNIST; reported is the KRR loss (the mean over the 8
pool networks, full-data moments) relative to the start's. alpha = 1 is the generator as
shipped. No evaluation: if the loss were lowest far from alpha = 1, a line search on the
loss at generation time would be a cheap gain worth evaluating; if not, the step length is
not what holds the generator back.

    python experiments/update_scale.py --ipcs 1,10,50     # writes results/generator-view/update-scale.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import mgdd
from mgdd.generate import default_passes
from mgdd.start import start_set

ALPHAS = (0.5, 1.0, 1.5, 2.0, 3.0)
OUT = Path(__file__).resolve().parents[1] / "results" / "generator-view" / "update-scale.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipcs", default="1,10,50")
    args = ap.parse_args()
    dataset = mgdd.load_dataset("fashion-mnist")
    objective = mgdd.KRRObjective(dataset)
    gen = mgdd.MetaGenerator.from_pretrained(mgdd.default_meta_generator(dataset.channels)).eval()
    passes = default_passes(gen)

    def mean_loss(x):
        return sum(objective.pool_loss(x, i).item() for i in range(objective.pool.size)) / objective.pool.size

    rows = {}
    with torch.no_grad():
        for ipc in (int(i) for i in args.ipcs.split(",")):
            x0, y0 = start_set(objective, ipc, "herding", 0)
            start = mean_loss(x0)
            row = {}
            for alpha in ALPHAS:
                x = x0
                for _ in range(passes):
                    x = x + alpha * (gen(x, y0, dataset.num_classes, guide=objective.guide(x)) - x)
                row[str(alpha)] = mean_loss(x) / start
            rows[str(ipc)] = row
            print(ipc, {a: round(v, 4) for a, v in row.items()}, flush=True)
    OUT.write_text(json.dumps({"dataset": dataset.name, "start": "herding", "passes": passes, "alphas": ALPHAS,
                               "relative_loss": rows,
                               "note": "mean pool loss after the passes / the herding start's"}, indent=1) + "\n")
    print(OUT)


if __name__ == "__main__":
    main()
