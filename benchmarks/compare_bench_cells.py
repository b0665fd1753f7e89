"""Compare two bench results folders cell by cell, ignoring timings.

    python benchmarks/compare_bench_cells.py BEFORE AFTER [--out FILE]

A refactor must leave every seeded result unchanged: each cell's accuracies, per-run
accuracies, set digests, losses and settings must be equal; only wall-clock fields
(seconds, timings, cell_wall_seconds, retimed) may differ. Exits 1 if any cell differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TIME_KEYS = {"seconds", "cell_wall_seconds", "timing", "retimed"}


def strip_times(d):
    if isinstance(d, dict):
        return {k: strip_times(v) for k, v in d.items() if k not in TIME_KEYS and not k.endswith("_seconds")}
    if isinstance(d, list):
        return [strip_times(x) for x in d]
    return d


def compare(before: Path, after: Path) -> list:
    lines = []
    a = {p.name: p for p in sorted((before / "cells").glob("*.json"))}
    b = {p.name: p for p in sorted((after / "cells").glob("*.json"))}
    for name in sorted(set(a) ^ set(b)):
        lines.append(f"only in {'before' if name in a else 'after'}: {name}")
    same = 0
    for name in sorted(set(a) & set(b)):
        x, y = strip_times(json.loads(a[name].read_text())), strip_times(json.loads(b[name].read_text()))
        if x == y:
            same += 1
        else:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            lines.append(f"differs: {name} ({', '.join(keys)})")
    lines.insert(0, f"{same} of {len(set(a) | set(b))} cells identical apart from timings")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    lines = compare(args.before, args.after)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0 if len(lines) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
