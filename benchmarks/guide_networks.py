"""Which networks does the generator's set fit? Its guide's, the rest of the pool's, or any? (issue #16)

    python benchmarks/guide_networks.py [--ipc 10] [--nets 1,2,4,8] [--generator meta] [--runs 1]
                                        [--score 2,8] [--out results/extra/guide-nets]

The generator reads a guide, the KRR-loss gradient at its input averaged over the first
GUIDE_NETS (2) networks of the objective's pool of 8, at every pass. With the default objective
on Fashion-MNIST and the bench's seeded X_0 (seed 0), this generates the K = 0 set once for each
guide-network count in --nets (the generator's own passes, no retraining: the generators so
far were all trained with 2), and for each set, and for X_0 and krr-pixel from X_0 (10 and 200
steps), records the full-data KRR loss averaged over three groups of networks:
- "guide": pool networks 0..N-1, the ones whose gradient the guide averaged (N = the row's count);
- "rest of pool": pool networks N..7, which only the label solve and krr-pixel's steps read;
- "held-out": 2 random networks of pool seed 2, which nothing here or in meta-training used.
A set whose loss falls on the guide networks but much less on the others moves along those
networks' own gradients, not the data's. Sets whose count is in --score are evaluated
(ConvNet-3, 300 epochs, cross-entropy at T = 0.25, ``--runs`` runs); each score is a cell,
OUT/cells/guideN-DIGEST-ipcI-runsR.json, reused on the next run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgdd import krr  # noqa: E402
from mgdd.bench.report import machine  # noqa: E402
from mgdd.data import load_dataset, sample_init  # noqa: E402
from mgdd.distilled import DistilledSet, distilled_meta  # noqa: E402
from mgdd.evaluate import evaluate  # noqa: E402
from mgdd.generate import GUIDE_NETS, default_passes, synthesize  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402
from mgdd.pipeline import load_generator  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from generator_refine import HELD_OUT_SEED, HELD_OUT_SIZE, pixel_steps, weight_digest  # noqa: E402


@torch.no_grad()
def per_network_loss(obj: KRRObjective, x: torch.Tensor) -> list:
    """Full-data KRR loss of the set under each pool network of ``obj``, in pool order."""
    return [krr.krr_loss_moments(net(x), m.for_classes(None), obj.lam_for(len(x)), obj.mu)[0].item()
            for net, m in zip(obj.pool.nets, obj.moments)]


def groups(pool: list, held: list, n: int) -> dict:
    """Mean loss over the guide networks (0..n-1), the rest of the pool, and the held-out ones."""
    rest = pool[n:]
    return {"guide": sum(pool[:n]) / n, "rest": sum(rest) / len(rest) if rest else None,
            "held_out": sum(held) / len(held), "pool": sum(pool) / len(pool)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--nets", default="1,2,4,8", help="guide-network counts to generate with")
    ap.add_argument("--generator", default="meta", help="a generator folder, or meta (the shipped one)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--score", default="2,8", help="guide-network counts whose sets are evaluated ('' for none)")
    ap.add_argument("--out", default=str(ROOT / "results" / "extra" / "guide-nets"))
    args = ap.parse_args()
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    counts = sorted({int(n) for n in args.nets.split(",")})
    scored = {int(n) for n in args.score.split(",") if n}
    ipc = args.ipc
    dataset = load_dataset("fashion-mnist")
    obj = KRRObjective(dataset)
    held_out = KRRObjective(dataset, seed=HELD_OUT_SEED, pool_size=HELD_OUT_SIZE)
    gen, origin = load_generator(args.generator, dataset.channels)
    gen.eval()
    digest, passes = weight_digest(gen), default_passes(gen)
    x0, y0 = sample_init(dataset, ipc, 0)

    rows = []

    def add(name: str, x: torch.Tensor, n: int, seconds: float, cell: str | None):
        pool, held = per_network_loss(obj, x), per_network_loss(held_out, x)
        row = {"set": name, "guide_nets": n, "seconds": seconds, **groups(pool, held, n),
               "per_network": pool, "accuracy_mean": None, "accuracies": []}
        path = out / "cells" / f"{cell}-ipc{ipc}-runs{args.runs}.json" if cell else None
        if path is not None and path.is_file():
            row.update(json.loads(path.read_text()))
        elif path is not None:
            meta = distilled_meta(dataset, ipc, name, 0, obj, {"generate_seconds": seconds})
            ev = evaluate(DistilledSet(x, obj.labels(x), meta, dataset.zca), dataset, epochs=300, runs=args.runs,
                          seed=0, progress=False)
            res = {"accuracy_mean": ev["accuracy_mean"], "accuracy_std": ev["accuracy_std"],
                   "accuracies": [r["accuracy"] for r in ev["per_run"]]}
            path.write_text(json.dumps(res, indent=2) + "\n")
            row.update(res)
        rows.append(row)
        acc = "not scored" if row["accuracy_mean"] is None else f"{100 * row['accuracy_mean']:.2f} %"
        print(f"{name}: guide {row['guide']:.4f} / rest {row['rest'] or float('nan'):.4f} / "
              f"held-out {row['held_out']:.4f}, {acc}", flush=True)

    add("X_0", x0, GUIDE_NETS, 0.0, None)
    for n in counts:
        t0 = time.perf_counter()
        with torch.no_grad():
            x = synthesize(gen, obj, x0, y0, dataset.num_classes, chunk=256, passes=passes, guide_nets=n)
        add(f"generator, guide over {n}", x.float().cpu(), n, time.perf_counter() - t0,
            f"guide{n}-{digest}" if n in scored else None)
    for steps, (x, seconds) in pixel_steps(obj, x0, [10, 200]).items():
        add(f"krr-pixel {steps} steps", x, GUIDE_NETS, seconds, None)

    record = {"command": " ".join(["python benchmarks/guide_networks.py", *sys.argv[1:]]), "ipc": ipc,
              "generator": origin, "generator_digest": digest, "generator_passes": passes,
              "objective": obj.describe(), "held_out": held_out.describe(), "rows": rows, "machine": machine()}
    (out / f"ipc{ipc}-{digest}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "table.md").write_text(table(out))
    print(table(out))
    return 0


def table(out: Path) -> str:
    """table.md from every ipc*-*.json in ``out``."""
    lines = ["# Which networks the generator's set fits (Fashion-MNIST, K = 0)", "",
             "Full-data KRR loss, lower is better, averaged over: the pool networks the guide read (0..N-1), "
             "the rest of the objective's pool of 8, and 2 held-out networks (pool seed "
             f"{HELD_OUT_SEED}). krr-pixel rows and X_0 are split as for N = {GUIDE_NETS}. Seconds: generation "
             "(guides and passes) or pixel steps, without the label solve.", ""]
    records = [json.loads(p.read_text()) for p in out.glob("ipc*-*.json")]
    for r in sorted(records, key=lambda r: (r["ipc"], r["generator"])):
        lines += [f"## IPC {r['ipc']}, generator {r['generator']} ({r['generator_passes']} passes, "
                  f"weights {r['generator_digest']})", "", f"`{r['command']}`", "",
                  "| set | seconds | loss, guide nets | loss, rest of pool | loss, held-out | accuracy % |",
                  "|---|---|---|---|---|---|"]
        for row in r["rows"]:
            acc = "not scored" if row["accuracy_mean"] is None else f"{100 * row['accuracy_mean']:.2f}"
            if len(row["accuracies"]) > 1:
                acc += f" ± {100 * row['accuracy_std']:.2f}"
            rest = "—" if row["rest"] is None else f"{row['rest']:.4f}"
            lines.append(f"| {row['set']} | {row['seconds']:.2f} | {row['guide']:.4f} | {rest} | "
                         f"{row['held_out']:.4f} | {acc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
