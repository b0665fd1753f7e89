"""Issue #17: which meta generator serves colour data? A K table on a colour target.

    python benchmarks/colour_data.py                       # builds the two .npz files once
    OMP_NUM_THREADS=1 python benchmarks/colour_target.py --methods fold-k0,fold-k25,scratch-k25,random+ls
    OMP_NUM_THREADS=1 python benchmarks/colour_target.py --methods colour-k0,colour-k25 --colour-generator runs/meta-tinted

runs/meta-tinted was made by `mgdd meta-train --source npz:~/.cache/mgdd/data/colour/tinted-mnist.npz
--out runs/meta-tinted --meta-steps 100 --tasks-per-step 4 --inner-steps 5 --inner-lr 2e-3 --ipc-range 1,50
--checkpoint-every 5`, stopped (SIGTERM) at step 68 for time and finished with the same command
and --meta-steps 68 --resume; it ships, unchanged, as mgdd/pretrained/meta-tinted.
    python benchmarks/colour_target.py --report            # results/colour/table.md from the cells

Target: colour-fashion-mnist (benchmarks/colour_data.py: Fashion-MNIST, 3x32x32, each garment
in a random colour over a random two-colour gradient). Neither generator ever saw it: the grey
meta generator was meta-trained on MNIST, the colour one on tinted MNIST (solid colours).

Rows (all with the default objective, labels by least squares, seed 0):
  random+ls     real images + least-squares labels (= scratch at K = 0, the identity)
  scratch-k25   a fresh 3-channel generator adapted 25 steps
  fold-kK       the shipped GREY meta generator, channels folded into the batch, K steps
  colour-kK     a 3-channel meta generator meta-trained on tinted MNIST, K steps
Adaptation (K > 0) is on IPCs 1, 10, 50 at once, then each IPC is generated, as in `mgdd bench`.

Protocol: ConvNet-3 (mgdd's default training recipe); 3 runs at IPC 1, 1 run at IPC 10 and 50 -
results/ablation/calibration.md shows one run ranks configurations as the 3-run mean does at
IPC 10 and 50 (and not at IPC 1). 300 epochs at IPC 1 and 10, but 100 at IPC 50: on 3x32x32
images one 300-epoch IPC-50 run costs ~37 min of a CPU core, six rows would not fit a session.
That 100 epochs rank as 300 do is NOT calibrated; the table says which epochs each column used.

Cells run by IPC block (every row at IPC 1, then 10, then 50), so an interrupted run still
compares every row. Each cell is a JSON file in results/colour/cells; adapted generators are
kept in runs/colour-generators, so a run resumes where it stopped and several processes can
split the rows (--methods).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgdd.adapt import adapt  # noqa: E402
from mgdd.baselines import random_ls  # noqa: E402
from mgdd.data import load_dataset, user_data_dir  # noqa: E402
from mgdd.evaluate import evaluate  # noqa: E402
from mgdd.generate import generate  # noqa: E402
from mgdd.generator import MetaGenerator  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402
from mgdd.pipeline import PRETRAINED_DIR, SHIPPED, load_generator  # noqa: E402

OUT = ROOT / "results" / "colour"
IPCS = [1, 10, 50]
RUNS = {1: 3, 10: 1, 50: 1}
EPOCHS = {1: 300, 10: 300, 50: 100}
GENERATORS = ROOT / "runs" / "colour-generators"
METHODS = ["random+ls", "scratch-k25", "fold-k0", "fold-k25", "colour-k0", "colour-k25"]


def source_of(method: str, colour_generator: str) -> str:
    if method.startswith("scratch"):
        return "scratch"
    if method.startswith("fold"):
        return str(PRETRAINED_DIR / SHIPPED[1])   # the shipped grey generator; it folds the 3 channels
    return colour_generator


def adapted(method: str, objective, colour_generator):
    """The method's generator after K adaptation steps (kept on disk: adapted once, used for every IPC)."""
    k = int(method.rsplit("-k", 1)[1])
    folder = GENERATORS / method
    if (folder / "model.safetensors").exists():
        gen = MetaGenerator.from_pretrained(folder)
        return gen, gen.metadata
    gen, origin = load_generator(source_of(method, colour_generator), 3, seed=0)
    log = adapt(gen, objective, steps=k, ipcs=IPCS, lr=1e-3, seed=0, progress=False, source=origin)
    info = {"from": origin, "adapt_steps": k, "adapt_seconds": log["seconds"]}
    gen.save_pretrained(folder, metadata=info, force=True)
    return gen, info


def run_cell(method: str, ipc: int, objective, colour_generator, cells: Path) -> None:
    path = cells / f"{method}-ipc{ipc}.json"
    if path.exists():
        return
    if method == "random+ls":
        ds, info = random_ls(objective, ipc, seed=0), None
    else:
        gen, info = adapted(method, objective, colour_generator)
        ds = generate(gen, objective, ipc, seed=0, method=method)
    t0 = time.perf_counter()
    res = evaluate(ds, objective.dataset, epochs=EPOCHS[ipc], runs=RUNS[ipc], seed=0, progress=False,
                   soft_loss="mse")  # the table was made with MSE, the default then; cells must not mix
    cell = {"method": method, "ipc": ipc, "accuracy_mean": res["accuracy_mean"],
            "accuracy_std": res["accuracy_std"], "runs": res["runs"], "epochs": res["epochs"],
            "per_run": [r["accuracy"] for r in res["per_run"]], "timing": ds.meta.get("timing"),
            "generator": info, "eval_seconds": time.perf_counter() - t0,
            "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"}
    path.write_text(json.dumps(cell, indent=1) + "\n")
    print(f"{method} ipc {ipc}: {100 * res['accuracy_mean']:.2f}", flush=True)


def report(cells: Path) -> str:
    rows = {}
    for f in sorted(cells.glob("*.json")):
        c = json.loads(f.read_text())
        rows.setdefault(c["method"], {})[c["ipc"]] = c
    head = " | ".join(f"IPC {i} ({RUNS[i]} run{'s' * (RUNS[i] > 1)}, {EPOCHS[i]} ep)" for i in IPCS)
    lines = [f"| method | {head} |", "|---" * (len(IPCS) + 1) + "|"]
    for m in METHODS:
        if m not in rows:
            continue
        vals = []
        for ipc in IPCS:
            c = rows[m].get(ipc)
            if c is None:
                vals.append("-")
            elif c["runs"] > 1:
                vals.append(f"{100 * c['accuracy_mean']:.2f} ± {100 * c['accuracy_std']:.2f}")
            else:
                vals.append(f"{100 * c['accuracy_mean']:.2f}")
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS[:4]))
    ap.add_argument("--colour-generator", default=str(PRETRAINED_DIR / "meta-tinted"),
                    help="folder of the 3-channel meta generator (default: the shipped one)")
    ap.add_argument("--data", default=str(user_data_dir() / "colour" / "colour-fashion-mnist.npz"))
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    cells = OUT / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    if not args.report:
        dataset = load_dataset(f"npz:{args.data}")
        t0 = time.perf_counter()
        objective = KRRObjective(dataset, lam=1e-3, ridge="kernel")  # the table was made with these, the default then
        print(f"objective ready in {time.perf_counter() - t0:.1f} s", flush=True)
        methods = args.methods.split(",")
        for method in methods:
            if method not in METHODS:
                raise SystemExit(f"unknown method {method}; choose from {METHODS}")
        for ipc in IPCS:
            for method in methods:
                run_cell(method, ipc, objective, args.colour_generator, cells)
    table = report(cells)
    (OUT / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
