"""Time a krr-pixel step and the exact label solve on Fashion-MNIST at IPC 1..500, solving
the KRR systems in the M x M (dual) space and in the automatically chosen smaller space.

    python benchmarks/solve_space_timing.py [--ipcs 1,10,50,200,500] [--out results/extra/solve-spaces]

The objective is the default one (pool of 8 random ConvNets, width 64, depth 3: d = 1024).
A pixel step = features of the M synthetic images, the pool loss of one network, backward.
A label solve = features through all 8 networks and the joint least-squares solve. Each is
the median of --reps runs (dual at IPC >= 200: one run; it takes minutes). Writes JSON and
a Markdown table; the feature moments are computed once (about 5 min) and cached.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgdd import krr  # noqa: E402
from mgdd.data import load_dataset, sample_init  # noqa: E402
from mgdd.features import FeatureConfig  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402


def pixel_step(obj, x, space):
    x = x.clone().requires_grad_(True)
    t0 = time.perf_counter()
    loss, _ = krr.krr_loss_moments(obj.pool.nets[0](x), obj.moments[0].for_classes(None), obj.lam_for(len(x)), obj.mu,
                                   space=space)
    loss.backward()
    return time.perf_counter() - t0, loss.item()


def math_only(obj, feats, space):
    """The same step and solve with the features already computed: the KRR systems alone."""
    f = feats[0].clone().requires_grad_(True)
    t0 = time.perf_counter()
    loss, _ = krr.krr_loss_moments(f, obj.moments[0].for_classes(None), obj.lam_for(len(f)), obj.mu, space=space)
    loss.backward()
    t1 = time.perf_counter()
    with torch.no_grad():
        krr.solve_labels_stacked(feats, [m.for_classes(None) for m in obj.moments], obj.lam_for(len(feats[0])), obj.mu, space=space)
    return t1 - t0, time.perf_counter() - t1


@torch.no_grad()
def label_solve(obj, x, space):
    t0 = time.perf_counter()
    feats = [torch.cat([net(x[i:i + 1024]) for i in range(0, len(x), 1024)]) for net in obj.pool.nets]
    y = krr.solve_labels_stacked(feats, [m.for_classes(None) for m in obj.moments], obj.lam_for(len(feats[0])), obj.mu, space=space)
    return time.perf_counter() - t0, y


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipcs", default="1,10,50,200,500")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "results" / "extra" / "solve-spaces"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    dataset = load_dataset("fashion-mnist")
    t0 = time.perf_counter()
    obj = KRRObjective(dataset, FeatureConfig(width=64, depth=3), pool_size=8, seed=0)
    precompute = time.perf_counter() - t0
    rows = []
    for ipc in [int(i) for i in args.ipcs.split(",")]:
        x, _ = sample_init(dataset, ipc, seed=0)
        m = len(x)
        row = {"ipc": ipc, "M": m, "d": obj.pool.dim, "pool": obj.pool.size}
        with torch.no_grad():
            feats = [net(x) for net in obj.pool.nets]
        for space in ("dual", "auto"):
            reps = 1 if (space == "dual" and ipc >= 200) else args.reps
            steps = [pixel_step(obj, x, space) for _ in range(reps)]
            solves = [label_solve(obj, x, space) for _ in range(reps)]
            maths = [math_only(obj, feats, space) for _ in range(reps)]
            row[space] = {"pixel_step_s": statistics.median(s for s, _ in steps),
                          "label_solve_s": statistics.median(s for s, _ in solves),
                          "krr_step_s": statistics.median(a for a, _ in maths),
                          "krr_labels_s": statistics.median(b for _, b in maths),
                          "loss": steps[0][1], "space_used": {
                              "loss": krr.pick_space(m, obj.pool.dim, space),
                              "labels": krr.pick_space(m, obj.pool.dim * obj.pool.size, space)}, "reps": reps}
            row[space]["labels"] = solves[0][1]
            print(f"IPC {ipc} {space}: step {row[space]['pixel_step_s']:.2f}s (KRR {row[space]['krr_step_s']:.2f}s), "
                  f"labels {row[space]['label_solve_s']:.2f}s (KRR {row[space]['krr_labels_s']:.2f}s)", flush=True)
        ya, yd = row["auto"].pop("labels"), row["dual"].pop("labels")
        row["max_label_difference"] = float((ya - yd).abs().max())
        row["relative_loss_difference"] = abs(row["auto"]["loss"] - row["dual"]["loss"]) / abs(row["dual"]["loss"])
        rows.append(row)
    out = {"machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                       "torch": torch.__version__, "threads": torch.get_num_threads(), "device": "cpu"},
           "precompute_seconds": precompute, "command": "python " + " ".join(sys.argv), "rows": rows}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# Solving the KRR systems in the smaller space (Fashion-MNIST, d = 1024, pool of 8)", "",
             f"`{out['command']}` on {out['machine']['processor']}, {out['machine']['cpus']} CPUs, "
             f"torch {out['machine']['torch']}, CPU. Seconds, median of the runs shown.", "",
             "Each cell: the whole operation, and in brackets the KRR systems alone (features already computed).", "",
             "| IPC | M | pixel step, M x M | pixel step, auto (space) | label solve, M x M | label solve, auto (space) "
             "| max label diff | rel. loss diff |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, a = r["dual"], r["auto"]
        lines.append(f"| {r['ipc']} | {r['M']} | {d['pixel_step_s']:.2f} ({d['krr_step_s']:.2f}) | "
                     f"{a['pixel_step_s']:.2f} ({a['krr_step_s']:.2f}, {a['space_used']['loss']}) | "
                     f"{d['label_solve_s']:.2f} ({d['krr_labels_s']:.2f}) | {a['label_solve_s']:.2f} "
                     f"({a['krr_labels_s']:.2f}, {a['space_used']['labels']}) | {r['max_label_difference']:.1e} | "
                     f"{r['relative_loss_difference']:.1e} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {path.with_suffix('.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
