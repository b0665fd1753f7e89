"""How much of an adapted generator's accuracy is the draw of its adaptation tasks?

The bench adapts once per cell (seed 0) and evaluates the set 3 times, so its spread is the
evaluation's (network init, batch order) and not the adaptation's (which IPC, X_0 and pool
network each of the K steps drew). This adapts the same generator with several adaptation
seeds, generates the same IPC from the same X_0 (the bench's generation seed), and evaluates
each set with the bench's protocol. Seed 0 rebuilds the bench's own cell, which ``--check``
verifies bit for bit through its recorded digest.

    python benchmarks/adapt_seed_spread.py --steps 25 --seeds 0,1,2 --ipcs 10,50 \\
        --check results/fmnist-v2/cells --check-label mgdd-k25 --cache results/fmnist-v2/cache \\
        --out results/extra/adapt-seed-spread

One cell per seed (its adaptation and every IPC) under OUT/cells/ (resumable); OUT/table.md and OUT/table.json summarise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mgdd.bench import get_preset, set_digest  # noqa: E402
from mgdd.data import load_dataset  # noqa: E402
from mgdd.evaluate import evaluate  # noqa: E402
from mgdd.features import FeatureConfig  # noqa: E402
from mgdd.generate import generate  # noqa: E402
from mgdd.io import read_json, write_bytes, write_json  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402
from mgdd.pipeline import adapted_generator  # noqa: E402

GENERATION_SEED = 0  # the bench's seed: every set starts from the same X_0


def objective_for(cfg, dataset, cache_dir=None, device="cpu") -> KRRObjective:
    """The preset's objective, as the bench builds it (Bench.make_objective)."""
    return KRRObjective(dataset, FeatureConfig(**cfg.feature), cfg.pool_size, seed=GENERATION_SEED, lam=cfg.lam,
                        ridge=cfg.ridge, device=device, cache_dir=cache_dir)


def seed_cell(cfg, obj, source, steps, adapt_seed, ipcs, runs, epochs, device="cpu") -> dict:
    """Adapt with ``adapt_seed``, generate each of ``ipcs`` from the bench's X_0, evaluate each
    with the bench's protocol. One adaptation serves every IPC, as in the bench."""
    gen, origin, log = adapted_generator(source, obj, steps, cfg.adapt_ipcs, lr=cfg.lr_adapt, seed=adapt_seed,
                                         progress=False)
    t = cfg.eval_temperature
    by_ipc = {}
    for ipc in ipcs:
        ds = generate(gen, obj, ipc, seed=GENERATION_SEED, method="mgdd", adapted_from=origin, adapt_steps=steps,
                      adapt_ipcs=cfg.adapt_ipcs)
        res = evaluate(ds, obj.dataset, epochs=epochs, runs=runs, seed=GENERATION_SEED, progress=False,
                       soft_loss="mse" if t is None else "ce", temperature=t, device=device)
        by_ipc[str(ipc)] = {"set_sha256": set_digest(ds), "accuracies": [r["accuracy"] for r in res["per_run"]],
                            "accuracy_mean": res["accuracy_mean"], "accuracy_std": res["accuracy_std"],
                            "epochs": res["epochs"]}
    return {"adapt_seed": adapt_seed, "source": origin, "steps": steps, "adapt_ipcs": cfg.adapt_ipcs,
            "adapt_seconds": log["seconds"], "final_loss": log["history"][-1]["loss"] if log["history"] else None,
            "by_ipc": by_ipc}


def summarise(cells, bench_cells=None) -> dict:
    """Per IPC: the spread within a set (evaluation) against the spread across adaptation seeds.
    ``bench_cells`` ({ipc: cell}): the bench's own cells, which seed 0 must rebuild."""
    out = {}
    for ipc in cells[0]["by_ipc"]:
        rows = [c["by_ipc"][ipc] for c in cells]
        means = [r["accuracy_mean"] for r in rows]
        s = {"seeds": [c["adapt_seed"] for c in cells], "means": means, "mean_of_means": statistics.fmean(means),
             "std_across_seeds": statistics.stdev(means) if len(means) > 1 else None,
             "mean_std_within": statistics.fmean(r["accuracy_std"] for r in rows)}
        if bench_cells and ipc in bench_cells:
            zero = [c["by_ipc"][ipc] for c in cells if c["adapt_seed"] == 0]
            s["bench_cell"] = bench_cells[ipc].get("name")
            s["seed0_matches_bench_cell"] = bool(zero) and zero[0]["set_sha256"] == bench_cells[ipc].get("set_sha256")
        out[ipc] = s
    return out


def table(cells, summary, cmd) -> str:
    lines = [f"`{cmd}`", "", "| IPC | adaptation seed | K | final adaptation loss | accuracy % (runs) | mean ± std |",
             "|---|---|---|---|---|---|"]
    for ipc in summary:
        for c in cells:
            r = c["by_ipc"][ipc]
            accs = " / ".join(f"{100 * a:.2f}" for a in r["accuracies"])
            lines.append(f"| {ipc} | {c['adapt_seed']} | {c['steps']} | {c['final_loss']:.4f} | {accs} | "
                         f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} |")
    lines += ["", "| IPC | seeds | mean of the per-seed means | std across seeds | mean std within a set (evaluation) |",
              "|---|---|---|---|---|"]
    for ipc, s in summary.items():
        across = f"{100 * s['std_across_seeds']:.2f}" if s["std_across_seeds"] is not None else "n/a"
        lines.append(f"| {ipc} | {len(s['seeds'])} | {100 * s['mean_of_means']:.2f} | {across} | "
                     f"{100 * s['mean_std_within']:.2f} |")
    for ipc, s in summary.items():
        if "seed0_matches_bench_cell" in s:
            lines.append(f"\nIPC {ipc}: seed 0 rebuilds the bench cell {s['bench_cell']} bit for bit: "
                         f"{'yes' if s['seed0_matches_bench_cell'] else 'NO'}.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fmnist")
    p.add_argument("--source", default="meta", help="meta (the shipped generator) or scratch")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--ipcs", default="10,50", help="IPCs generated from each adapted generator")
    p.add_argument("--runs", type=int, default=None, help="evaluation runs per set (default: the preset's)")
    p.add_argument("--epochs", type=int, default=None, help="evaluation epochs (default: the preset's)")
    p.add_argument("--check", default=None, help="a bench's cells folder: seed 0 must rebuild its LABEL-ipcI cells")
    p.add_argument("--check-label", default=None, help="the bench's label for this K, e.g. mgdd-k25")
    p.add_argument("--cache", default=None, help="feature-moment cache folder (e.g. the bench's OUT/cache)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    cfg = get_preset(a.preset)
    seeds, ipcs = [int(s) for s in a.seeds.split(",")], [int(i) for i in a.ipcs.split(",")]
    runs, epochs = a.runs or cfg.runs, a.epochs or cfg.eval_epochs
    out = Path(a.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(cfg.dataset, a.data_dir, image_size=cfg.image_size)
    obj = objective_for(cfg, dataset, a.cache, a.device)
    cells = []
    for s in seeds:
        path = out / "cells" / f"{a.source}-k{a.steps}-seed{s}.json"
        if path.exists():
            cells.append(read_json(path))
            continue
        print(f"[seed spread] adaptation seed {s} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        c = seed_cell(cfg, obj, a.source, a.steps, s, ipcs, runs, epochs, a.device)
        c["cell_wall_seconds"] = time.perf_counter() - t0
        write_json(path, c, force=True)
        cells.append(c)
    bench_cells = {str(i): read_json(Path(a.check) / f"{a.check_label}-ipc{i}.json") for i in ipcs
                   if a.check and (Path(a.check) / f"{a.check_label}-ipc{i}.json").exists()}
    summary = summarise(cells, bench_cells)
    cmd = "python benchmarks/adapt_seed_spread.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_json(out / "table.json", {"command": cmd, "cells": cells, "summary": summary}, force=True)
    write_bytes(out / "table.md", table(cells, summary, cmd).encode(), force=True)
    print(table(cells, summary, cmd))


if __name__ == "__main__":
    main()
