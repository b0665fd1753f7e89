"""Do a bench's sets and adapted generators rebuild bit for bit on this machine?

    python benchmarks/rebuild_check.py results/fmnist-v2 --preset fmnist \
        --adapt mgdd-k25 --krr krr-pixel-ipc1-step2,krr-pixel-ipc1-step10 --out results/extra/rebuild-check

`--retime` checks every rebuilt set against the evaluated one bit for bit. That holds on the
machine that made the set; this measures what happens elsewhere. For each adapted generator
named (LABEL, stored under OUT/sets/LABEL-generator) it re-runs the same seeded adaptation
and reports whether the weights are identical and, if not, the distance to the stored weights
over the distance the adaptation moved them from where it started. For each krr-pixel cell
named it replays the seeded trajectory and compares the set's digest with the cell's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mgdd.baselines import krr_pixel  # noqa: E402
from mgdd.bench import Bench, read_cells, set_digest  # noqa: E402
from mgdd.generator import MetaGenerator  # noqa: E402
from mgdd.io import write_bytes, write_json  # noqa: E402
from mgdd.pipeline import load_generator  # noqa: E402


def adapt_check(bench, cells, label) -> dict:
    """Re-run LABEL's seeded adaptation; compare with the stored generator."""
    c = cells[f"{label}-adapt"]
    source = "scratch" if c["from"] == "scratch" else "meta"
    gen, _, _ = bench.adapted_generator(source, c["ipcs"], c["steps"])
    stored = MetaGenerator.from_pretrained(bench.out / "sets" / f"{label}-generator").state_dict()
    start = load_generator(source, bench.dataset.channels, seed=bench.seed)[0].state_dict()
    now = gen.state_dict()
    dist = sum(((now[k] - stored[k]).double() ** 2).sum() for k in stored).sqrt().item()
    moved = sum(((stored[k] - start[k]).double() ** 2).sum() for k in stored).sqrt().item()
    return {"label": label, "steps": c["steps"], "identical": all(torch.equal(now[k], stored[k]) for k in stored),
            "distance": dist, "moved": moved, "ratio": dist / moved if moved else None,
            "max_abs": max((now[k] - stored[k]).abs().max().item() for k in stored)}


def krr_check(bench, cells, names) -> list:
    """Replay each named krr-pixel cell's trajectory (one run per IPC); compare set digests."""
    out, by_ipc = [], {}
    for n in names:  # krr-pixel-ipc{I}-step{S}
        ipc, step = n.removeprefix("krr-pixel-ipc").split("-step")
        by_ipc.setdefault(int(ipc), []).append(int(step))
    for ipc, steps in by_ipc.items():
        got = {}
        krr_pixel(bench.objective(), ipc, max(steps), sorted(steps), lr=bench.cfg.lr_pixel, seed=bench.seed,
                  on_snapshot=lambda s, ds: got.__setitem__(s, set_digest(ds)), progress=False)
        for s in sorted(steps):
            name = f"krr-pixel-ipc{ipc}-step{s}"
            out.append({"cell": name, "identical": got[s] == cells[name]["set_sha256"]})
    return out


def table(adapts, krrs, cmd) -> str:
    lines = [f"`{cmd}`", "", f"Machine: {torch.__version__}, {torch.get_num_threads()} threads.", "",
             "| adapted generator | steps | bit-identical | distance to stored | distance moved by adaptation | ratio | max abs |",
             "|---|---|---|---|---|---|---|"]
    for a in adapts:
        ratio = f"{a['ratio']:.3f}" if a["ratio"] is not None else ""
        lines.append(f"| {a['label']} | {a['steps']} | {'yes' if a['identical'] else 'no'} | {a['distance']:.4g} | "
                     f"{a['moved']:.4g} | {ratio} | {a['max_abs']:.3g} |")
    lines += ["", "| krr-pixel cell | set rebuilds bit for bit |", "|---|---|"]
    lines += [f"| {k['cell']} | {'yes' if k['identical'] else 'no'} |" for k in krrs]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bench", help="a finished bench folder")
    p.add_argument("--preset", required=True)
    p.add_argument("--adapt", default="", help="adapted generator labels, e.g. mgdd-k25,scratch-k25")
    p.add_argument("--krr", default="", help="krr-pixel cells, e.g. krr-pixel-ipc1-step2")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    bench = Bench(a.preset, a.bench, data_dir=a.data_dir, resume=True)
    cells = read_cells(a.bench)
    adapts = [adapt_check(bench, cells, label) for label in filter(None, a.adapt.split(","))]
    krrs = krr_check(bench, cells, list(filter(None, a.krr.split(","))))
    cmd = "python benchmarks/rebuild_check.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "table.json", {"command": cmd, "adapt": adapts, "krr": krrs}, force=True)
    text = table(adapts, krrs, cmd)
    write_bytes(out / "table.md", text.encode(), force=True)
    print(text)


if __name__ == "__main__":
    main()
