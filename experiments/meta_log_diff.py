"""Two meta-trainings' losses, step by step: the mean and standard error of B - A per block of steps.

Runs with the same seed and tasks per step draw the same tasks, starts and scoring networks at
every step (meta.sample_task, generate.unrolled_loss), so their relative losses pair up step by
step; this prints the paired difference, the generators' own loss (not an accuracy):

    python experiments/meta_log_diff.py results/generator-view/generators/meta-herding/meta-log.json \\
        results/generator-view/generators/meta-herding-sample16/meta-log.json
"""

import argparse
import json
import statistics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--block", type=int, default=100)
    args = ap.parse_args()
    a, b = (json.load(open(p))["history"] for p in (args.a, args.b))
    n = min(len(a), len(b))
    for lo in range(0, n, args.block):
        d = [b[i]["relative_loss"] - a[i]["relative_loss"] for i in range(lo, min(lo + args.block, n))]
        if len(d) > 1:
            print(f"steps {lo + 1}-{lo + len(d)}: B - A {statistics.mean(d):+.4f} ± "
                  f"{statistics.stdev(d) / len(d) ** 0.5:.4f} (n = {len(d)})")


if __name__ == "__main__":
    main()
