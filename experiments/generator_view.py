"""Issue #39's ablation: the generator's start and its view of the real data, against the
one-shot rows, at K = 0 (no adaptation), on the public API only.

Rows (every one ends in the exact least-squares label solve):
  random+ls, herding+ls, kmeans+ls     one-shot baselines (kmeans at IPC 1 = the class-mean images)
  meta:previous                        the meta generator shipped before issue #39 (random start), made
                                       by `git show 5c4dbcb:mgdd/pretrained/meta-mnist/FILE` into
                                       runs/meta-previous/ (model.safetensors, config.json)
  meta:previous@herding                the same weights from the herding start (no retraining)
  meta:previous@real                   the same weights reading the real class means in place of the
                                       set's own (its pixel-context inputs swapped; no retraining)
  meta:NAME                            a generator folder runs/meta-NAME (meta-trained by the commands
                                       in results/generator-view/README.md), from its recorded start
  shipped                              the installed meta generator (since #39: meta-herding), from herding
                                       (its default start until start="auto"; pinned so the cells stand)
  shipped-kK                           the same adapted K steps on IPC 1, 10, 50 (seed 0, as `mgdd distill`),
                                       kept in runs/adapted-shipped-kK/ so later sizes reuse it; the
                                       cell's "adapt_seconds" is the adaptation, shared by every size
  krr-pixel@START-sN                   N krr-pixel steps (Adam, lr 0.03) from the START coreset
  greedy+ls, shipped@greedy            the product's greedy start (mgdd/greedy.py; nested, at most 2 sweeps
                                       a level): least-squares labels, and the shipped generator from it
  greedy+ls-wN, greedy+ls-nwN          one shot: the herding coreset, then N sweeps of swaps
                                       to the real image with the lowest KRR loss (-nwN: nested, level by level)
                                       (experiments/greedy_start.py), least-squares labels
  shipped@greedy-wN, shipped@greedy-nwN  the shipped generator from that coreset instead of herding's
  refine@ROW-sN                        N krr-pixel steps from ROW's set (any row above, e.g. shipped:
                                       the generator's set as the pixels' start), the same loop, step
                                       randomness and learning rate as krr-pixel; the cell's seconds
                                       are ROW's plus the steps' and the final label solve's

The meta:real and meta:herding-real generators read the real means as input channels, an option
that measured no better and left the product: their rows load only at commit 350edf4.
The meta:herding-sample16 generator reads a real sample in its set context (--real-sample 16),
an option that measured no better and left the product: its rows load only at commit 4b031dc.

Cheap protocol (results/ablation/calibration.md): ConvNet-3, 300 epochs, CE at T = 0.25; runs
seeded 0.. (run 0 is the calibrated one-run protocol). Each finished (row, IPC) is one JSON
file under OUT/DATASET/cells, so the script resumes cell by cell, and a cell with fewer runs
than asked is extended:

    python experiments/generator_view.py --ipcs 1 --runs 3
    python experiments/generator_view.py --ipcs 10,50 --runs 1
    python experiments/generator_view.py --table          # the Markdown table from the cells

With --label-mu MU|gcv every row's final labels use that label ridge (issue #40; the images are
the same seeded images as the default's, only the label solve changes), and the cells go to
OUT/DATASET-label-MU/cells, beside the default's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

import mgdd
from mgdd.baselines import kmeans
from mgdd.evaluate import default_device
from mgdd.pipeline import adapted_metadata, set_seconds
from mgdd.start import forget_orders

ONE_SHOT = ("random+ls", "herding+ls", "kmeans+ls")
DEFAULT_ROWS = ONE_SHOT + ("meta:previous", "meta:previous@herding", "meta:previous@real", "meta:herding", "meta:real",
                           "meta:herding-real", "meta:herding-real-600", "shipped", "shipped-k25")


def shipped(channels: int):
    return mgdd.MetaGenerator.from_pretrained(mgdd.default_meta_generator(channels)).eval()


def real_means(dataset) -> tuple:
    """The real training data's class-mean images (K, C, H, W) and set-mean image (1, C, H, W)."""
    x, y = dataset.train_x.float().double(), dataset.train_y
    means = torch.stack([x[y == c].mean(0) for c in range(dataset.num_classes)]).float()
    return means, x.mean(0, keepdim=True).float()


def real_means_swapped(generator, objective):
    """The shipped weights with their pixel context (class-mean and set-mean images of the set)
    replaced by the real data's (a diagnostic: the inputs keep their meaning, their source changes)."""
    means, set_mean = real_means(objective.dataset)
    generator._pixel_context = lambda x, y, stats: (means[y], set_mean.expand(len(x), -1, -1, -1))
    return generator


def adapted_shipped(objective, steps: int, runs_dir: Path, start: str | None = None):
    """The shipped generator adapted ``steps`` steps on IPC 1, 10 and 50 (seed 0), from ``start``
    (default: herding, as the cells were made), saved once in runs_dir/adapted-shipped-kSTEPS[-START] and loaded
    from there afterwards."""
    path = runs_dir / (f"adapted-shipped-k{steps}" + (f"-{start}" if start else ""))
    if (path / "model.safetensors").is_file():
        return mgdd.MetaGenerator.from_pretrained(path).eval()
    generator = shipped(objective.dataset.channels)
    origin = "shipped:" + mgdd.default_meta_generator(objective.dataset.channels).name
    log = mgdd.adapt(generator, objective, steps=steps, ipcs=[1, 10, 50], seed=0, progress=False,
                     start=start or "herding")
    generator.save_pretrained(path, metadata=adapted_metadata(log, origin, objective.dataset.name, objective))
    return mgdd.MetaGenerator.from_pretrained(path).eval()


def refine(objective, ds: mgdd.DistilledSet, steps: int, lr: float = 0.03, seed: int = 0) -> mgdd.DistilledSet:
    """``steps`` krr-pixel steps from ds's images: krr-pixel's loop (Adam at lr, the step randomness
    random.Random(seed * 1_000_003 + s) that mgdd's loops use), then the exact label solve."""
    t0 = time.perf_counter()
    x = ds.images.clone().to(objective.device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for s in range(steps):
        loss = objective.loss(x, random.Random(seed * 1_000_003 + s))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    xs = x.detach().cpu()
    refine_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = objective.labels(xs)
    meta = dict(ds.meta, timing={"seconds": set_seconds(ds) + refine_seconds, "refine_seconds": refine_seconds,
                                 "steps": steps, "label_seconds": time.perf_counter() - t0},
                refined_from=ds.meta.get("method"))
    return mgdd.DistilledSet(xs, labels, meta, ds.zca)


def build(row: str, objective, ipc: int, runs_dir: Path) -> mgdd.DistilledSet:
    """A row's set: a one-shot baseline, ``shipped`` (the installed meta generator, from herding), or ``meta:NAME[@START][@real]``: the generator folder runs/meta-NAME, from START (default:
    its recorded start), with @real its pixel context swapped for the real means."""
    if row == "random+ls":
        return mgdd.random_ls(objective, ipc)
    if row == "herding+ls":
        return mgdd.coreset(objective, ipc, "herding", soft_labels=True)
    if row == "kmeans+ls":
        return kmeans(objective, ipc, soft_labels=True)
    if row == "shipped":  # from herding, its start when these cells were made (the product's default is now auto)
        return mgdd.generate(shipped(objective.dataset.channels), objective, ipc, start="herding")
    if row.startswith("shipped-k"):  # shipped-kN[@START]: adapted N steps from START, generated from it
        steps, _, start = row[len("shipped-k"):].partition("@")
        return mgdd.generate(adapted_shipped(objective, int(steps), runs_dir, start or None), objective, ipc,
                             start=start or "herding")
    if row.startswith("krr-pixel@"):  # krr-pixel@START-sN: N pixel steps from the START coreset (same selection)
        start, steps = row[len("krr-pixel@"):].rsplit("-s", 1)
        return mgdd.krr_pixel(objective, ipc, steps=int(steps), init=start, progress=False)
    if row == "greedy+ls":  # the product's greedy start (mgdd/greedy.py: nested, fast swap scan)
        return mgdd.coreset(objective, ipc, "greedy", soft_labels=True)
    if row == "shipped@greedy":
        return mgdd.generate(shipped(objective.dataset.channels), objective, ipc, start="greedy")
    if row.startswith("greedy+ls"):  # greedy+ls[-[n]wN]: experiments/greedy_start.py, N sweeps (default 1), n: nested
        from greedy_start import greedy_ls
        return greedy_ls(objective, ipc, sweeps=int(row.split("w")[-1]) if "-" in row else 1, nested="-nw" in row)
    if row.startswith("shipped@greedy"):  # shipped@greedy-wN: the shipped weights from the greedy coreset
        from greedy_start import generated_from_greedy
        return generated_from_greedy(shipped(objective.dataset.channels), objective, ipc, int(row.split("w")[-1]),
                                     nested="-nw" in row)
    if row.startswith("refine@"):  # refine@ROW-sN: N krr-pixel steps from ROW's set
        base, steps = row[len("refine@"):].rsplit("-s", 1)
        return refine(objective, build(base, objective, ipc, runs_dir), int(steps))
    if row.startswith("meta:"):
        name, *opts = row[5:].split("@")
        gen = mgdd.MetaGenerator.from_pretrained(runs_dir / f"meta-{name}").eval()
        if "real" in opts:
            real_means_swapped(gen, objective)
        start = next((o for o in opts if o != "real"), None)
        return mgdd.generate(gen, objective, ipc, start=start)
    raise SystemExit(f"unknown row {row!r}")


def table(cells_dir: Path) -> str:
    cells = [json.loads(p.read_text()) for p in sorted(cells_dir.glob("*.json"))]
    ipcs = sorted({c["ipc"] for c in cells})
    rows = list(dict.fromkeys([r for r in DEFAULT_ROWS if any(c["row"] == r for c in cells)]
                              + [c["row"] for c in cells]))
    by = {(c["row"], c["ipc"]): c for c in cells}
    out = ["| row | " + " | ".join(f"IPC {i}" for i in ipcs) + " |", "|---|" + "---|" * len(ipcs)]
    for r in rows:
        vals = []
        for i in ipcs:
            c = by.get((r, i))
            if c is None:
                vals.append("—")
                continue
            a = c["accuracies"]
            spread = f" ± {statistics.stdev(a):.2f}" if len(a) > 1 else ""
            vals.append(f"{statistics.mean(a):.2f}{spread} ({len(a)} run{'s' if len(a) > 1 else ''}, "
                        f"{c['seconds']:.1f} s)")
        out.append(f"| {r} | " + " | ".join(vals) + " |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ipcs", default="1,10")
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS))
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--out", default="results/generator-view")
    p.add_argument("--runs-dir", default="runs", help="where the meta:NAME generators are (runs/meta-NAME)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--device", default="cpu", help="the objective's device (cuda on a GPU; evaluation uses the GPU "
                                                     "whenever there is one); recorded in each new cell")
    p.add_argument("--label-mu", default=None, metavar="MU|gcv",
                   help="the final labels' ridge (KRRObjective(label_mu=...); issue #40); its cells go to "
                        "OUT/NAME-label-MU/ so the default's stay apart")
    p.add_argument("--cached-orders", action="store_true",
                   help="read coreset orders from mgdd's disk cache (as `mgdd precompute --start greedy --start-ipc N` "
                        "writes them) instead of each row computing its own; the cells' seconds then leave out a "
                        "search an earlier run or row made")
    p.add_argument("--table", action="store_true", help="print the table from the finished cells and stop")
    args = p.parse_args()
    label_mu = None if args.label_mu is None else (args.label_mu if args.label_mu == "gcv" else float(args.label_mu))
    base = Path(args.dataset.split(":", 1)[1]).stem if args.dataset.startswith(("npz:", "imagefolder:")) else args.dataset
    name = base + (f"-{args.image_size}" if args.image_size else "") + (f"-label-{args.label_mu}" if args.label_mu else "")
    cells_dir = Path(args.out) / name / "cells"
    if args.table:
        print(table(cells_dir))
        return
    cells_dir.mkdir(parents=True, exist_ok=True)
    dataset = mgdd.load_dataset(args.dataset, image_size=args.image_size)
    objective = mgdd.KRRObjective(dataset, label_mu=label_mu, device=args.device)
    objective.cache = args.cached_orders  # by default each row times its own coreset selection (no disk cache)
    for ipc in [int(i) for i in args.ipcs.split(",")]:
        for row in args.rows.split(","):
            path = cells_dir / f"ipc{ipc}-{row.replace(':', '_').replace('+', '-').replace('@', '_at_')}.json"
            cell = json.loads(path.read_text()) if path.exists() else None
            if cell is not None and len(cell["accuracies"]) >= args.runs:
                continue
            torch.manual_seed(0)
            forget_orders(objective)  # every row pays for its own coreset selection (unless --cached-orders)
            t0 = time.perf_counter()
            ds = build(row, objective, ipc, Path(args.runs_dir))
            wall = time.perf_counter() - t0
            done = cell["accuracies"] if cell else []
            for r in range(len(done), args.runs):
                res = mgdd.evaluate(ds, dataset, runs=1, seed=r, epochs=args.epochs, progress=False)
                done.append(100 * res["accuracy_mean"])
            adapt_seconds = ds.meta.get("adapt_seconds") or (
                json.loads((Path(args.runs_dir) / f"adapted-{row.replace('@', '-')}" / "config.json").read_text())
                ["metadata"]["seconds"]
                if row.startswith("shipped-k") else None)
            cell = {"ipc": ipc, "row": row, "accuracies": done, "seconds": set_seconds(ds), "wall_seconds": wall,
                    **({"adapt_seconds": adapt_seconds} if adapt_seconds is not None else {}),
                    "start": ds.meta.get("start", ds.meta.get("init", "random")), "passes": ds.meta.get("passes", 1),
                    **({"label_mu": label_mu, "label_mu_picked": ds.meta["objective"].get("label_mu_picked")}
                       if label_mu is not None else {}),
                    **({"cached_orders": True} if args.cached_orders else {}),
                    "protocol": f"ConvNet-3, {args.epochs} epochs, CE at T=0.25, runs seeded 0..{len(done) - 1}",
                    "devices": f"objective {args.device}, evaluation {default_device()}"}
            path.write_text(json.dumps(cell, indent=1) + "\n")
            print(json.dumps(cell), flush=True)


if __name__ == "__main__":
    main()
