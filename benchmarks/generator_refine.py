"""Is the generator's set a better start for pixel steps than X_0? (issue #16)

    python benchmarks/generator_refine.py [--ipc 10] [--steps 10,25,50,200] [--generator meta]
                                          [--runs 1] [--score refine,krr,generator,random]
                                          [--held-out-seed 2] [--out results/extra/refine]

With the default objective on Fashion-MNIST (seed 0, the bench's X_0), this makes:
- ``random+ls``: X_0 with solved labels;
- ``generator``: the generator's set with no adaptation (K = 0, its own pass count);
- ``refine-stepN``: krr-pixel (Adam lr 0.03, the same step seeds) started from the generator's
  set instead of X_0, after N steps;
- ``krr-stepN``: krr-pixel from X_0 after N steps (the bench's krr-pixel sets).
For each set it records the full-data KRR loss averaged over the objective's 8 pool networks
(what both methods minimise) and over 2 held-out random networks of the same architecture
(pool seed 2: the default objective uses seed 0, and the generators meta-trained so far seeds
0 and 1): a loss that falls on the pool but not on held-out networks is fitted to the pool,
not to the data. Sets named by a --score prefix are evaluated (ConvNet-3, 300 epochs,
cross-entropy at T = 0.25, ``--runs`` runs); each score is a cell reused on the next run,
OUT/cells/NAME-ipcI-runsR.json, with the generator's weight digest in the name of the sets
it made (generator, refine-stepN), so another generator never reuses them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgdd.baselines import random_ls  # noqa: E402
from mgdd.bench.report import machine  # noqa: E402
from mgdd.checkpoint import step_rng  # noqa: E402
from mgdd.data import load_dataset, sample_init  # noqa: E402
from mgdd.distilled import DistilledSet, distilled_meta  # noqa: E402
from mgdd.evaluate import evaluate  # noqa: E402
from mgdd.generate import generate  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402
from mgdd.pipeline import load_generator  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from generator_passes import pool_loss  # noqa: E402

HELD_OUT_SEED, HELD_OUT_SIZE = 2, 2


def weight_digest(gen) -> str:
    """First 10 hex digits of a SHA-256 over the generator's weights (names, shapes, values)."""
    h = hashlib.sha256()
    for name, t in sorted(gen.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:10]


def pixel_steps(obj: KRRObjective, x_start: torch.Tensor, steps: list, lr: float = 0.03, seed: int = 0) -> dict:
    """{N: (images after N Adam steps, seconds)}, krr-pixel's loop from any start."""
    x = x_start.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    out, seconds = {}, 0.0
    for s in range(max(steps)):
        t0 = time.perf_counter()
        loss = obj.loss(x, step_rng(seed, s))  # krr_pixel's step seeds: the same draws of the pool
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - t0
        if s + 1 in steps:
            out[s + 1] = (x.detach().clone(), seconds)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--steps", default="10,25,50,200")
    ap.add_argument("--generator", default="meta", help="a generator folder, or meta (the shipped one)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--score", default="refine,krr,generator,random",
                    help="comma list of set-name prefixes to evaluate (the others get their losses only)")
    ap.add_argument("--held-out-seed", type=int, default=HELD_OUT_SEED,
                    help="pool seed of the held-out networks; pick one no objective or generator used (2)")
    ap.add_argument("--out", default=str(ROOT / "results" / "extra" / "refine"))
    args = ap.parse_args()
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    steps = sorted({int(s) for s in args.steps.split(",")})
    ipc = args.ipc
    dataset = load_dataset("fashion-mnist")
    obj = KRRObjective(dataset)
    held_out = KRRObjective(dataset, seed=args.held_out_seed, pool_size=HELD_OUT_SIZE)
    gen, origin = load_generator(args.generator, dataset.channels)
    digest = weight_digest(gen)

    sets = {"random+ls": (random_ls(obj, ipc, 0), 0.0)}
    ds = generate(gen, obj, ipc, seed=0)
    gen_seconds = ds.meta["timing"]["generate_seconds"]
    sets["generator"] = (ds, gen_seconds)
    x0 = sample_init(dataset, ipc, 0)[0]
    for start, name, base in ((ds.images, "refine", gen_seconds), (x0, "krr", 0.0)):
        for n, (x, seconds) in pixel_steps(obj, start, steps).items():
            meta = distilled_meta(dataset, ipc, f"{name}-step{n}", 0, obj, {"seconds": base + seconds, "steps": n})
            sets[f"{name}-step{n}"] = (DistilledSet(x, obj.labels(x), meta, dataset.zca), base + seconds)

    rows = []
    for name, (d, seconds) in sets.items():
        row = {"set": name, "seconds": seconds, "pool_loss": pool_loss(obj, d.images),
               "held_out_loss": pool_loss(held_out, d.images), "accuracy_mean": None, "accuracies": []}
        tag = f"{name}-{digest}" if name == "generator" or name.startswith("refine") else name
        cell = out / "cells" / f"{tag}-ipc{ipc}-runs{args.runs}.json"
        if cell.is_file():
            row.update(json.loads(cell.read_text()))
        elif name.startswith(tuple(args.score.split(","))):
            ev = evaluate(d, dataset, epochs=300, runs=args.runs, seed=0, progress=False)
            res = {"accuracy_mean": ev["accuracy_mean"], "accuracy_std": ev["accuracy_std"],
                   "accuracies": [r["accuracy"] for r in ev["per_run"]], "soft_loss": ev["soft_loss"]}
            cell.write_text(json.dumps(res, indent=2) + "\n")
            row.update(res)
        rows.append(row)
        acc = "not scored" if row["accuracy_mean"] is None else f"{100 * row['accuracy_mean']:.2f} %"
        print(f"{name}: loss {row['pool_loss']:.4f} / held-out {row['held_out_loss']:.4f}, {acc}", flush=True)

    record = {"command": " ".join(["python benchmarks/generator_refine.py", *sys.argv[1:]]), "ipc": ipc,
              "generator": origin, "generator_digest": digest, "generator_passes": int(gen.metadata.get("passes", 1)),
              "objective": obj.describe(), "held_out": held_out.describe(), "rows": rows,
              "machine": machine()}
    # one record per (IPC, generator): the sets that do not depend on the generator share cells
    (out / f"ipc{ipc}-{digest}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "table.md").write_text(table(out))
    print(table(out))
    return 0


def table(out: Path) -> str:
    """table.md from every ipc*.json in ``out``."""
    lines = ["# Pixel steps from the generator's set against pixel steps from X_0 (Fashion-MNIST, K = 0)", "",
             "Loss: full-data KRR loss, mean over the objective's 8 pool networks; held-out: the same over "
             f"{HELD_OUT_SIZE} random networks of a pool seed that no optimisation, objective or meta-training "
             "used. Lower is better. Seconds: generation and pixel steps, without the label solve.", ""]
    records = [json.loads(p.read_text()) for p in out.glob("ipc*-*.json")]
    for r in sorted(records, key=lambda r: (r["ipc"], r["command"])):
        lines += [f"## IPC {r['ipc']}, generator {r['generator']} ({r['generator_passes']} passes, "
                  f"weights {r['generator_digest']})", "", f"`{r['command']}`. Held-out networks: pool seed "
                  f"{r['held_out']['seed']}.", "",
                  "| set | seconds | loss (pool) | loss (held-out) | accuracy % |", "|---|---|---|---|---|"]
        for row in r["rows"]:
            acc = "not scored" if row["accuracy_mean"] is None else f"{100 * row['accuracy_mean']:.2f}"
            if len(row["accuracies"]) > 1:
                acc += f" ± {100 * row['accuracy_std']:.2f}"
            lines.append(f"| {row['set']} | {row['seconds']:.2f} | {row['pool_loss']:.4f} | "
                         f"{row['held_out_loss']:.4f} | {acc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
