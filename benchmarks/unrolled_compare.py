"""A few-pass (unrolled) meta generator against krr-pixel at equal time, on Fashion-MNIST (issue #16).

    python benchmarks/unrolled_compare.py GENERATOR --ipc 10 [--passes 4,8] [--runs 1]
                                          [--out results/extra/unrolled]

GENERATOR is a folder from `mgdd meta-train --algorithm unrolled` (never trained on
Fashion-MNIST), or any other generator folder (benchmarks/amortised_teacher.py's, say; its
sets keep the "unrolled-pP" names). --no-krr skips the krr-pixel run. With the default objective and the bench's seeded X_0 (seed 0), this makes and
scores, with no adaptation (K = 0):
- random+ls (X_0 itself) and a reference generator at its own pass count (--reference; by
  default the one-pass Reptile generator that shipped when these tables were made, kept in
  results/extra/meta-reptile: its cells keep their first name, "shipped-k0");
- the unrolled generator at each pass count in --passes;
- krr-pixel from the same X_0 (Adam lr 0.03), snapshotted at the step counts whose time equals
  the unrolled generator's time at its trained pass count, and 22x that time (the paper's
  target: mgdd should match what the iterative method reaches in 22x mgdd's time), and at 200.
Time = generation (guides + passes) for the generators, optimisation for krr-pixel; both exclude
the label solve, which they share. Times are measured in this process, one after the other.
The krr-pixel run is checkpointed (OUT/krr-pixel-ipcI.checkpoint.safetensors) and each of its
snapshots is saved as it is made, so a killed run resumes with the same --krr-steps.
Each set is scored with the default evaluation (ConvNet-3, 300 epochs, cross-entropy at T = 0.25);
a scored set is a cell (OUT/cells/NAME.json), reused on the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgdd.baselines import krr_pixel, random_ls  # noqa: E402
from mgdd.data import load_dataset, sample_init  # noqa: E402
from mgdd.distilled import DistilledSet  # noqa: E402
from mgdd.evaluate import evaluate  # noqa: E402
from mgdd.generate import generate  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402
from mgdd.pipeline import load_generator  # noqa: E402
from mgdd.checkpoint import step_rng  # noqa: E402
from mgdd.bench.presets import TARGET_SPEEDUP  # noqa: E402

REPTILE = (ROOT / "results" / "extra" / "meta-reptile").resolve()


def pixel_step_seconds(obj, ipc: int, steps: int = 10) -> float:
    """Mean seconds of a krr-pixel step from the bench's X_0 (after one warm-up step)."""
    x = sample_init(obj.dataset, ipc, 0)[0].clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.03)
    times = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        loss = obj.loss(x, step_rng(0, s))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generator")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--passes", default="4,8")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--score", default="all",
                    help="comma list of set-name prefixes to evaluate (others are listed with their time only)")
    ap.add_argument("--out", default=str(ROOT / "results" / "extra" / "unrolled"))
    ap.add_argument("--reference", default=str(REPTILE),
                    help="the generator the rows are compared with: a folder, or meta (the shipped one)")
    ap.add_argument("--krr-steps", default=None,
                    help="comma list of krr-pixel step counts to snapshot (default: equal time, 22x, 200); "
                         "give the same list to resume a killed run")
    ap.add_argument("--no-krr", action="store_true",
                    help="skip the krr-pixel run (its step counts are still computed from the timings)")
    args = ap.parse_args()
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "sets").mkdir(parents=True, exist_ok=True)
    dataset = load_dataset("fashion-mnist")
    obj = KRRObjective(dataset)
    gen, origin = load_generator(args.generator, dataset.channels)
    shipped, shipped_origin = load_generator(args.reference, dataset.channels)
    # cells are cached by name: another reference must not reuse the Reptile generator's cells
    ref = "shipped" if Path(args.reference).resolve() == REPTILE else Path(args.reference).name
    trained = int(gen.metadata.get("passes", 1))
    passes = [int(p) for p in args.passes.split(",")]
    ipc = args.ipc

    # 1. the sets and their times (warm up once so the first timing is not a cold start)
    generate(gen, obj, ipc, seed=0, passes=1)
    sets = {f"random+ls-ipc{ipc}": (random_ls(obj, ipc, 0), 0.0)}
    ds = generate(shipped, obj, ipc, seed=0)
    sets[f"{ref}-k0-ipc{ipc}"] = (ds, ds.meta["timing"]["generate_seconds"])
    for p in passes:
        ds = generate(gen, obj, ipc, seed=0, passes=p)
        sets[f"unrolled-p{p}-ipc{ipc}"] = (ds, ds.meta["timing"]["generate_seconds"])
    step_s = pixel_step_seconds(obj, ipc)
    mgdd_s = sets[f"unrolled-p{trained}-ipc{ipc}"][1]
    equal = max(1, round(mgdd_s / step_s))
    target = max(1, round(TARGET_SPEEDUP * mgdd_s / step_s))
    snaps = sorted({int(s) for s in args.krr_steps.split(",")} if args.krr_steps else {equal, target, 200})
    krr = {}
    saved = {s: out / "sets" / f"krr-pixel-ipc{ipc}-step{s}.safetensors" for s in snaps}

    def keep(step, ds):  # each snapshot is on disk as soon as it is made: a killed run loses none
        if step in saved:
            ds.save(saved[step], force=True)
            krr[step] = ds

    if not args.no_krr and not all(path.is_file() for path in saved.values()):
        # checkpointed: a rerun (same --krr-steps) resumes the run instead of starting over
        krr_pixel(obj, ipc, max(snaps), snapshots=snaps, lr=0.03, seed=0, progress=False, on_snapshot=keep,
                  checkpoint=out / f"krr-pixel-ipc{ipc}.checkpoint.safetensors", resume=True)
    for s, path in saved.items():
        if s not in krr and path.is_file() and not args.no_krr:
            krr[s] = DistilledSet.load(path)
    for s in krr:
        sets[f"krr-pixel-ipc{ipc}-step{s}"] = (krr[s], krr[s].meta["timing"]["seconds"])

    # 2. scores (cells are reused: the sets are seeded, so a rerun makes the same ones)
    rows = []
    for name, (ds, seconds) in sets.items():
        cell = out / "cells" / f"{name}-runs{args.runs}.json"
        wanted = args.score == "all" or name.startswith(tuple(args.score.split(",")))
        if not cell.is_file() and not wanted:
            rows.append({"set": name, "accuracy_mean": None, "accuracies": [], "seconds": seconds,
                         "passes": ds.meta.get("passes", 1)})
            continue
        if cell.is_file():
            res = json.loads(cell.read_text())
        else:
            ds.save(out / "sets" / f"{name}.safetensors", force=True)
            ev = evaluate(ds, dataset, epochs=300, runs=args.runs, seed=0, progress=False)
            res = {"set": name, "accuracy_mean": ev["accuracy_mean"], "accuracy_std": ev["accuracy_std"],
                   "accuracies": [r["accuracy"] for r in ev["per_run"]], "soft_loss": ev["soft_loss"]}
            cell.write_text(json.dumps(res, indent=2) + "\n")
        rows.append({**res, "seconds": seconds, "passes": ds.meta.get("passes", 1)})
        print(f"{name}: {100 * res['accuracy_mean']:.2f} % ({seconds:.2f} s)", flush=True)

    record = {"command": " ".join(["python benchmarks/unrolled_compare.py", *sys.argv[1:]]), "generator": origin,
              "generator_metadata": {k: gen.metadata.get(k) for k in ("algorithm", "passes", "meta_steps",
                                                                       "ipc_range", "source", "seconds")},
              "shipped": shipped_origin, "ipc": ipc, "pixel_step_seconds": step_s, "unrolled_seconds": mgdd_s,
              "krr_steps": {"equal_time": equal, "target_time": target}, "objective": obj.describe(), "rows": rows,
              "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "threads": torch.get_num_threads(), "torch": torch.__version__}}
    (out / f"ipc{ipc}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "table.md").write_text(table(out))
    print(table(out))
    return 0


def table(out: Path) -> str:
    """table.md from every ipc*.json in ``out``."""
    lines = ["# A few-pass (unrolled) meta generator against krr-pixel at equal time (Fashion-MNIST, K = 0)", ""]
    for path in sorted(out.glob("ipc*.json"), key=lambda p: int(p.stem[3:])):
        r = json.loads(path.read_text())
        m = r["generator_metadata"]
        lines += [f"## IPC {r['ipc']}", "",
                  f"`{r['command']}`. Generator {r['generator']} (meta-trained on {m['source']}, {m['algorithm']}, "
                  f"{m['passes']} passes, {m['meta_steps']} steps, IPC {m['ipc_range']}); shipped {r['shipped']}. "
                  f"A krr-pixel step took {r['pixel_step_seconds']:.3f} s here; the unrolled generator at its "
                  f"{m['passes']} passes {r['unrolled_seconds']:.2f} s, the time of "
                  f"{r['krr_steps']['equal_time']} steps (22x: {r['krr_steps']['target_time']} steps). "
                  "Seconds exclude the label solve.", "",
                  "| set | passes | seconds | accuracy % |", "|---|---|---|---|"]
        for row in r["rows"]:
            acc = "not scored" if row["accuracy_mean"] is None else f"{100 * row['accuracy_mean']:.2f}"
            if len(row["accuracies"]) > 1:
                acc += f" ± {100 * row['accuracy_std']:.2f}"
            passes = row["passes"] if not row["set"].startswith(("krr", "random")) else ""
            lines.append(f"| {row['set']} | {passes} | {row['seconds']:.2f} | {acc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
