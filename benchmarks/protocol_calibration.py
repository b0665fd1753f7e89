"""Does one evaluation run rank configurations as the 3-run mean does? (the ablation's cheap protocol)

    python benchmarks/protocol_calibration.py [--bench results/fmnist] [--out results/ablation/calibration.md]

Reads the bench's cells (each holds its 3 per-run accuracies under the default protocol,
ConvNet-3, 300 epochs) and, per IPC, compares the ranking by run 0 alone (what the
ablation's cheap protocol measures) with the ranking by the mean of the 3 runs: Spearman's
rho over the cells, and for every pair of cells whose means differ by at least a margin,
how often run 0 orders the pair as the mean does. No training: the figures are the
bench's own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARGINS = (0.0, 0.25, 0.5, 1.0)  # accuracy points


def ranks(values: list) -> list:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(a: list, b: list) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var


def calibrate(cells: list) -> list:
    """One row per IPC: cells, rho, and per margin (pairs, agreeing pairs)."""
    rows = []
    by_ipc = {}
    for c in cells:
        by_ipc.setdefault(c["ipc"], []).append(c)
    for ipc, group in sorted(by_ipc.items()):
        one = [100 * c["accuracies"][0] for c in group]
        mean = [100 * sum(c["accuracies"]) / len(c["accuracies"]) for c in group]
        pairs = {}
        for m in MARGINS:
            both = [(i, j) for i, j in itertools.combinations(range(len(group)), 2) if abs(mean[i] - mean[j]) >= m
                    and mean[i] != mean[j]]
            agree = sum((one[i] - one[j]) * (mean[i] - mean[j]) > 0 for i, j in both)
            pairs[m] = (len(both), agree)
        spread = [100 * (max(c["accuracies"]) - min(c["accuracies"])) for c in group]
        rows.append({"ipc": ipc, "cells": len(group), "rho": spearman(one, mean), "pairs": pairs,
                     "median_spread": sorted(spread)[len(spread) // 2]})
    return rows


def load_cells(bench: Path) -> list:
    cells = []
    for p in sorted((bench / "cells").glob("*.json")):
        c = json.loads(p.read_text())
        if c.get("runs") == 3 and len(c.get("accuracies", [])) == 3 and "-ipc" in c.get("name", ""):
            ipc = int(c["name"].split("-ipc")[1].split("-")[0])
            cells.append({"name": c["name"], "ipc": ipc, "accuracies": c["accuracies"]})
    return cells


def table(rows: list, bench: str) -> str:
    head = " | ".join(f"pairs ≥ {m} pt: agree" for m in MARGINS)
    lines = ["# Calibration: one evaluation run against the 3-run mean", "",
             f"Made by `python benchmarks/protocol_calibration.py --bench {bench}` from the bench's cells "
             "(every method and step count the bench measured; ConvNet-3, 300 epochs, 3 runs each). "
             "Run 0 is what the ablation's cheap protocol measures.", "",
             f"| IPC | cells | Spearman rho (run 0 vs mean) | {head} | median max-min over 3 runs (pt) |",
             "|---|---|---|" + "---|" * len(MARGINS) + "---|"]
    for r in rows:
        cols = " | ".join(f"{r['pairs'][m][1]}/{r['pairs'][m][0]}" for m in MARGINS)
        lines.append(f"| {r['ipc']} | {r['cells']} | {r['rho']:.3f} | {cols} | {r['median_spread']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default="results/fmnist")
    ap.add_argument("--out", default=str(ROOT / "results" / "ablation" / "calibration.md"))
    args = ap.parse_args()
    cells = load_cells(ROOT / args.bench)
    if not cells:
        print(f"no 3-run cells under {args.bench}/cells", file=sys.stderr)
        return 1
    text = table(calibrate(cells), args.bench)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
