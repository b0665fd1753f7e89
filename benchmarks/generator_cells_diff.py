"""Compare the meta generator's bench cells under two generators (issue #16: ship or not).

    python benchmarks/generator_cells_diff.py OLD_BENCH NEW_BENCH [--title T] [--out table.md]

OLD_BENCH and NEW_BENCH are `mgdd bench` folders of the same preset; NEW_BENCH is OLD_BENCH resumed
with `--new-generator` under another shipped generator, so every other cell is the same. For each
cell that reads the generator (mgdd-*, unseen-*) and has an accuracy in both, the table gives both
accuracies (mean ± std over the runs), the difference, and the difference over the pooled spread
sqrt(std_old^2 + std_new^2): under about 1, the two are level within the run-to-run noise.
It also gives the difference in standard errors of the difference of the two means
(sqrt((std_old^2 + std_new^2) / runs)).

`--all-cells` compares every evaluated cell instead, e.g. one preset run on two machines:

    python benchmarks/generator_cells_diff.py results/h200/fmnist results/fmnist-v2 --all-cells
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

PREFIXES = ("mgdd-", "unseen-")


def cells(folder: Path, all_cells: bool = False) -> dict:
    out = {}
    for p in sorted((folder / "cells").glob("*.json")):
        if all_cells or p.name.startswith(PREFIXES):
            c = json.loads(p.read_text())
            if "accuracy_mean" in c:
                out[p.stem] = c
    return out


def _runs(c) -> int | None:
    return c.get("runs") or len(c.get("accuracies", [])) or None


def table(old_dir: Path, new_dir: Path, title: str, all_cells: bool = False) -> str:
    old, new = cells(old_dir, all_cells), cells(new_dir, all_cells)
    gen = {k: json.loads((d / "run.json").read_text()).get("meta_generator") or {} for k, d in (("old", old_dir), ("new", new_dir))}
    lines = [f"## {title}", "",
             f"old: `{old_dir}` (generator sha256 {str(gen['old'].get('sha256'))[:12]}); "
             f"new: `{new_dir}` (sha256 {str(gen['new'].get('sha256'))[:12]}).", "",
             "| cell | old % | new % | new - old | / pooled std | / s.e. | old s | new s |",
             "|---|---|---|---|---|---|---|---|"]
    diffs, apart = [], []  # apart: cells 0.1 points or more and 2 standard errors or more apart
    for name in sorted(set(old) & set(new)):
        o, n = old[name], new[name]
        d = 100 * (n["accuracy_mean"] - o["accuracy_mean"])
        pooled = 100 * math.hypot(o["accuracy_std"], n["accuracy_std"])
        runs = min(filter(None, (_runs(o), _runs(n))), default=None)
        se = pooled / math.sqrt(runs) if runs else 0.0
        diffs.append(d)
        if abs(d) >= 0.1 and (se == 0 or abs(d) / se >= 2):
            apart.append(name)
        secs = [f"{c['seconds']:.2f}" if c.get("seconds") is not None else "" for c in (o, n)]
        lines.append(f"| {name} | {100 * o['accuracy_mean']:.2f} ± {100 * o['accuracy_std']:.2f} | "
                     f"{100 * n['accuracy_mean']:.2f} ± {100 * n['accuracy_std']:.2f} | {d:+.2f} | "
                     f"{d / pooled:+.1f} | {f'{d / se:+.1f}' if se > 0 else ''} | {secs[0]} | {secs[1]} |"
                     if pooled > 0 else
                     f"| {name} | {100 * o['accuracy_mean']:.2f} | {100 * n['accuracy_mean']:.2f} | {d:+.2f} | | | "
                     f"{secs[0]} | {secs[1]} |")
    if diffs:
        lines += ["", f"{len(diffs)} cells: mean difference {sum(diffs) / len(diffs):+.2f}, "
                      f"{sum(d > 0 for d in diffs)} higher, {sum(d < 0 for d in diffs)} lower.",
                  f"{len(apart)} cells 0.1 points or more and 2 standard errors or more apart"
                  + (f": {', '.join(apart)}." if apart else ".")]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="OLD_BENCH NEW_BENCH [OLD_BENCH NEW_BENCH ...]")
    ap.add_argument("--title", action="append", help="one per pair (default: NEW_BENCH's preset)")
    ap.add_argument("--note", help="a paragraph printed under the command (how the runs were made)")
    ap.add_argument("--out", help="write the tables here (markdown) as well as to stdout")
    ap.add_argument("--all-cells", action="store_true", help="every evaluated cell, not only the generator's")
    args = ap.parse_args()
    if len(args.pairs) % 2:
        ap.error("give OLD_BENCH NEW_BENCH in pairs")
    shown = [a for i, a in enumerate(sys.argv[1:]) if a != "--note" and (i == 0 or sys.argv[i] != "--note")]
    parts = ["Made by `python " + shlex.join(["benchmarks/generator_cells_diff.py", *shown]) + "`"
             + (" (with --note, below).\n" if args.note else ".\n")]
    if args.note:
        parts.append(args.note + "\n")
    for i in range(0, len(args.pairs), 2):
        old, new = Path(args.pairs[i]), Path(args.pairs[i + 1])
        for d in (old, new):
            if not (d / "run.json").is_file():
                ap.error(f"{d} is not a bench folder (no run.json)")
        title = (args.title or [])[i // 2] if args.title and len(args.title) > i // 2 else \
            json.loads((new / "run.json").read_text()).get("preset", str(new))
        parts.append(table(old, new, title, args.all_cells))
    text = "\n".join(parts)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
