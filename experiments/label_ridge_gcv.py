"""Why least-squares labels fall under hard labels at IPC 500, and which label ridge would not (issue #40).

On one H100 (results/extra/ridge-fresh/), the seed-0 random images of Fashion-MNIST at IPC 500
score 89.61 with hard labels and 86.67 with least-squares labels under the default ridges
(`capped` kernel ridge, label ridge mu = 1e-3). This script looks at the labels themselves,
without training a network, on the same images at every size:

- **agree**: the share of synthetic images whose label's largest entry is their own class;
- **true prob**: the mean probability of the own class under softmax(labels / 0.25), what the
  evaluation's cross-entropy teaches;
- **GCV**: generalised cross-validation of the label solve, a ridge regression of the real
  data's centred one-hot labels Y_b on the KRR predictor A (docs/design.md §2):

      Y_s(rho) = (A^T A + rho I)^-1 A^T Y_b,   rho = mu * mean diag(A^T A)
      GCV(mu)  = (RSS(rho) / (n C)) / (1 - dof(rho) / n)^2,  dof = sum_i e_i / (e_i + rho)

  with e_i the eigenvalues of the summed A^T A over the pool's networks, RSS = ||A Y_s - Y_b||^2
  summed over the networks, n the real training images and C the classes. Everything comes from
  the cached moments: one eigendecomposition of the M x M system gives the whole mu grid.

    python experiments/label_ridge_gcv.py --ipcs 1,10,20,50,100,200,500      # results/extra/label-gcv.json
    python experiments/label_ridge_gcv.py --table                             # results/extra/label-gcv.md
    python experiments/label_ridge_gcv.py --dataset npz:$HOME/.cache/mgdd/data/shapes/c100-32.npz \
        --cache-dir $HOME/.cache/mgdd/shapes/c100-32 --ridges capped,feature --ipcs 10 --tag c100-32
                                                              # results/extra/label-gcv-c100-32.json

The table sets the label statistics beside trained accuracies (the bench's protocol), each read from
the committed cell or log that HARD, DEFAULT_MU and _acc name.
Solving in M x M limits this script to M <= the pool's rank (8 x 1,024 at the defaults).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch

import mgdd
from mgdd import krr
from mgdd.baselines import sample_init
from mgdd.features import features
from mgdd.io import write_json

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "extra"
MUS = list(krr.GCV_MUS)


def label_stats(labels: torch.Tensor, y: torch.Tensor) -> dict:
    p = torch.softmax(labels.double() / 0.25, 1)
    return {"agree": float((labels.argmax(1) == y).double().mean()),
            "true_prob": float(p[torch.arange(len(y)), y].mean()),
            "label_norm": float(labels.double().norm(dim=1).mean())}


def label_curve(objective, x: torch.Tensor, y: torch.Tensor) -> list:
    """Every mu of the grid: its GCV error and the label statistics of its solution."""
    stats = [m.for_classes(None) for m in objective.moments]
    feats = [features(net, x) for net in objective.pool.nets]
    ata, aty = krr.stacked_normal_equations(feats, stats, objective.lam_for(len(x)))
    yy, n = sum(float(s[2]) for s in stats), stats[0][3]
    e, v = torch.linalg.eigh(ata)
    e, b = e.clamp_min(0), v.T @ aty
    rows = []
    for mu, score, coef in krr.gcv_curve(e, b, yy, n, ata.diagonal().mean(), MUS):
        rows.append({"mu": mu, "gcv": score, **label_stats(v @ coef, y)})
    return rows


def cmd_run(args) -> None:
    dataset = mgdd.load_dataset(args.dataset)
    path = OUT / (f"label-gcv-{args.tag}.json" if args.tag else "label-gcv.json")
    done = json.loads(path.read_text()) if path.is_file() else {}
    for ridge in args.ridges.split(","):
        objective = mgdd.KRRObjective(dataset, ridge=ridge, cache_dir=args.cache_dir)
        for ipc in args.ipcs:
            key = str(ipc) if ridge == "capped" else f"{ipc}-{ridge}"      # the default ridge keeps the plain key
            if key in done:
                continue
            t0 = time.perf_counter()
            x, y = sample_init(dataset, ipc, 0)                       # random+ls's images at seed 0
            rows = label_curve(objective, x, y)
            pick = min(rows, key=lambda r: r["gcv"])
            done[key] = {"ridge": ridge, "lam": objective.lam_for(len(x)), "rows": rows, "gcv_pick": pick["mu"],
                         "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}
            write_json(path, done, force=True)
            base = next(r for r in rows if r["mu"] == 1e-3)
            print(f"{ridge} IPC {ipc}: GCV picks mu = {pick['mu']}; agree {base['agree']:.3f} at mu = 1e-3, "
                  f"{pick['agree']:.3f} at the pick; own-class probability {base['true_prob']:.3f} / "
                  f"{pick['true_prob']:.3f}", flush=True)


def _acc(name: str):
    """A results/extra/ridge-fresh/ cell, or None where that label ridge was not trained."""
    p = OUT / "ridge-fresh" / f"{name}.json"
    return _cell(str(p)) if p.is_file() else None


def _view_acc(ipc: str):
    """random+ls under --label-mu gcv from experiments/generator_view.py's cells (the same seed-0 images)."""
    p = ROOT / "results" / "generator-view" / "fashion-mnist-label-gcv" / "cells" / f"ipc{ipc}-random-ls.json"
    return _fmt(json.loads(p.read_text())["accuracies"]) if p.is_file() else None


def _fmt(runs: list) -> str:
    """One run as is; several as mean ± sample std (n; run 0 r0), run 0 being the figure paired with the
    1-run cells (the same seed-0 images and evaluation seed)."""
    if len(runs) == 1:
        return f"{runs[0]:.2f}"
    return f"{statistics.mean(runs):.2f} ± {statistics.stdev(runs):.2f} ({len(runs)}; run 0 {runs[0]:.2f})"


def _cell(path: str):
    """Test accuracies (%) run by run from a committed `mgdd evaluate` / bench cell, formatted by _fmt."""
    d = json.loads((ROOT / path).read_text())
    runs = [r["accuracy"] for r in d["per_run"]] if "per_run" in d else d.get("accuracies") or [d["accuracy_mean"]]
    return _fmt([100 * a for a in runs])


def _log(path: str, method: str, ipc: int):
    """The figure `mgdd evaluate` printed for METHOD at IPC in a committed log, where no cell was kept:
    "87.24 +- 0.12" (runs > 1, mean ± std) or "89.61 (1 run)"."""
    pat = re.compile(rf"^{re.escape(method)}\s+{ipc}\s+\S+\s+\d+\s+(\d+)\s.*?(\d+\.\d+)(?: \+- (\d+\.\d+))?\s*(?:\(1 run\))?\s*$")
    for line in (ROOT / path).read_text().splitlines():
        m = pat.match(line)
        if m:
            return f"{m[2]} ± {m[3]} ({m[1]})" if m[3] else m[2]
    raise SystemExit(f"{path}: no {method} IPC {ipc} line")


# Where each trained accuracy comes from (ConvNet-3, 300 epochs, the bench's protocol, seed-0 images):
# hard labels, and least-squares labels under mu = 1e-3 with the `capped` kernel ridge (which is the
# `feature` rule up to M = 512, a kernel-scale 0.05 above).
HARD = {"1": (_cell, "results/protocols/cells/random-ipc1-mgdd.json"),
        "10": (_cell, "results/protocols/cells/random-ipc10-mgdd.json"),
        "20": (_cell, "results/fmnist-v2/cells/random-ipc20.json"),
        "50": (_cell, "results/protocols/cells/random-ipc50-mgdd.json"),
        "100": (_cell, "results/fmnist-v2/cells/random-ipc100.json"),
        "200": (_log, "results/extra/unseen-sizes/h200/device_scale.log", "random", 200),
        "500": (_cell, "results/extra/ridge-fresh/random-ipc500.json")}
DEFAULT_MU = {"1": (_cell, "results/protocols/cells/random+ls-ipc1-mgdd.json"),
              "10": (_cell, "results/protocols/cells/random+ls-ipc10-mgdd.json"),
              "20": (_cell, "results/fmnist-v2/cells/random+ls-ipc20.json"),
              "50": (_cell, "results/protocols/cells/random+ls-ipc50-mgdd.json"),
              "100": (_cell, "results/extra/unseen-sizes/ridge/random+ls-kernel0.05-ipc100-runs1.json"),
              "200": (_cell, "results/extra/unseen-sizes/ridge/random+ls-kernel0.05-ipc200-runs1.json"),
              "500": (_cell, "results/extra/ridge-fresh/random+ls-capped-ipc500.json")}


def _source(table: dict, ipc: str):
    if ipc not in table:
        return None
    read, *where = table[ipc]
    return read(*where)


def cmd_table(args) -> None:
    done = json.loads((OUT / "label-gcv.json").read_text())
    lines = ["# Least-squares labels against the label ridge (Fashion-MNIST, random images at seed 0)", "",
             "Made by `python experiments/label_ridge_gcv.py --ipcs 1,10,20,50,100,200,500` then `--table` "
             "(its docstring defines every column). agree: share of images whose label's argmax is their class; "
             "true prob: mean own-class probability under softmax(labels / 0.25); GCV pick: the mu of the grid "
             f"{MUS} with the least generalised cross-validation error. Accuracies: ConvNet-3, 300 epochs, "
             "1 run unless (3); the kernel ridge is `capped`; mu = 1e-3 was the label ridge's default until the "
             "default became `auto`, GCV's pick from 100 images a class (docs/experiments.md); hard labels and "
             "mu = 1e-3 at IPC 500 on one H100, hard labels at IPC 200 on one H200, the rest on 2 CPU cores; "
             "each figure is read from the cell or log named in the script's HARD and DEFAULT_MU.", "",
             "| IPC | M | agree, mu = 1e-3 | agree, GCV pick | GCV pick | true prob 1e-3 / pick | hard labels | LS, mu = 1e-3 | LS, mu = GCV pick (`auto` from IPC 100) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ipc in sorted((k for k in done if k.isdigit()), key=int):
        d = done[ipc]
        base = next(r for r in d["rows"] if r["mu"] == 1e-3)
        pick = next(r for r in d["rows"] if r["mu"] == d["gcv_pick"])
        mu = d["gcv_pick"]
        default = _source(DEFAULT_MU, ipc)
        picked = (_acc(f"random+ls-capped-mu{mu:g}-ipc{ipc}") or _view_acc(ipc)) if mu != 1e-3 else default
        lines.append(f"| {ipc} | {10 * int(ipc)} | {base['agree']:.3f} | {pick['agree']:.3f} | {mu:g} | "
                     f"{base['true_prob']:.3f} / {pick['true_prob']:.3f} | {_source(HARD, ipc) or '—'} | "
                     f"{default or '—'} | {picked or '—'} |")
    lines.append("")
    (OUT / "label-gcv.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ipcs", type=lambda t: [int(i) for i in t.split(",")], default=[1, 10, 20, 50, 100, 200, 500])
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--cache-dir", default=None, help="where the dataset's feature moments are cached")
    ap.add_argument("--ridges", default="capped", help="kernel ridge rules, comma-separated")
    ap.add_argument("--tag", default="", help="results/extra/label-gcv-TAG.json for another dataset")
    args = ap.parse_args(argv)
    cmd_table(args) if args.table else cmd_run(args)


if __name__ == "__main__":
    main()
