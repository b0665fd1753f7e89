"""Two meta-training runs' losses compared step by step (issue #16).

    python benchmarks/paired_meta_loss.py RUN BASE [--every 100]

RUN and BASE are `mgdd meta-train --algorithm unrolled` output folders (or their meta-log.json).
Runs with the same seed, tasks per step, IPC range and source draw the same task at every step
(meta.sample_task is a function of seed, step and slot), so the difference of their relative
losses (each pass's KRR loss over X_0's, averaged) at the same step is a paired comparison: its
mean over a window of steps, with a standard error, says whether RUN fits the meta-training
tasks better than BASE. The task settings are checked to match first.
"""
import argparse
import json
import statistics
from pathlib import Path

SAME_TASKS = ("seed", "tasks_per_step", "ipc_range", "min_classes", "source", "sources")


def read(path: str) -> dict:
    p = Path(path)
    return json.loads((p / "meta-log.json" if p.is_dir() else p).read_text())


def paired(a: list, b: list) -> tuple:
    """Mean of a - b, step by step, and its standard error (nan for one step)."""
    d = [x - y for x, y in zip(a, b)]
    return statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("base")
    ap.add_argument("--every", type=int, default=100, help="steps per window (100)")
    args = ap.parse_args()
    run, base = read(args.run), read(args.base)
    differ = [k for k in SAME_TASKS if run["settings"].get(k) != base["settings"].get(k)]
    if differ:
        raise SystemExit(f"the runs draw different tasks (settings differ: {', '.join(differ)}); no paired comparison.")
    a = [h["relative_loss"] for h in run["history"]]
    b = [h["relative_loss"] for h in base["history"]]
    n = min(len(a), len(b))
    print(f"| steps | {Path(args.run).name} | {Path(args.base).name} | paired difference (± s.e.) |")
    print("|---|---|---|---|")
    for lo in range(0, n, args.every):
        hi = min(lo + args.every, n)
        mean, se = paired(a[lo:hi], b[lo:hi])
        print(f"| {lo + 1}-{hi} | {statistics.mean(a[lo:hi]):.4f} | {statistics.mean(b[lo:hi]):.4f} | "
              f"{mean:+.4f} ± {se:.4f} |")


if __name__ == "__main__":
    main()
