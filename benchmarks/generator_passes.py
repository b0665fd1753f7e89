"""What one generator pass is worth, in the objective's own terms (issue #16).

    python benchmarks/generator_passes.py [--ipcs 1,10] [--passes 8] [--out results/extra/generator-passes]

For the shipped meta generator on Fashion-MNIST (never seen in meta-training), the full-data
KRR loss (mean over the 8 pool networks, from the cached moments) of:
- X_0 (random real images, the bench's seed), then after 1..P generator passes applied in turn,
  each reading a fresh guide at its own input: X_{t+1} = G(X_t, guide(X_t));
- krr-pixel from the same X_0 (Adam lr 0.03, its default) after 1, 2, 5, 10, 25, 50, 100, 200 steps.
No network is trained on the sets: the loss is the quantity both methods minimise, so this
says how many pixel steps one pass does the work of, and whether further passes keep going.
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

from mgdd import krr  # noqa: E402
from mgdd.data import load_dataset, sample_init  # noqa: E402
from mgdd.generate import synthesize  # noqa: E402
from mgdd.checkpoint import step_rng  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402
from mgdd.pipeline import load_generator  # noqa: E402

PIXEL_STEPS = (1, 2, 5, 10, 25, 50, 100, 200)


@torch.no_grad()
def pool_loss(obj: KRRObjective, x: torch.Tensor) -> float:
    """Full-data KRR loss averaged over every pool network (what krr-pixel samples one of per step)."""
    losses = [krr.krr_loss_moments(net(x), m.for_classes(None), obj.lam_for(len(x)), obj.mu)[0].item()
              for net, m in zip(obj.pool.nets, obj.moments)]
    return sum(losses) / len(losses)


def generator_curve(obj, gen, x0, y0, passes: int) -> list:
    x, out, seconds = x0, [{"passes": 0, "loss": pool_loss(obj, x0), "seconds": 0.0}], 0.0
    for p in range(1, passes + 1):
        t0 = time.perf_counter()
        with torch.no_grad():
            x = synthesize(gen, obj, x, y0, obj.dataset.num_classes, chunk=256)  # guide + one pass
        seconds += time.perf_counter() - t0
        out.append({"passes": p, "loss": pool_loss(obj, x), "seconds": seconds})
    return out


def pixel_curve(obj, x0, lr: float = 0.03, seed: int = 0) -> list:
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    out, seconds = [], 0.0
    for s in range(max(PIXEL_STEPS)):
        t0 = time.perf_counter()
        loss = obj.loss(x, step_rng(seed, s))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - t0
        if s + 1 in PIXEL_STEPS:
            out.append({"steps": s + 1, "loss": pool_loss(obj, x.detach()), "seconds": seconds})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--passes", type=int, default=8)
    ap.add_argument("--generator", default="meta", help="meta (the shipped one) or a generator folder")
    ap.add_argument("--objective", choices=["pinned", "default"], default="pinned",
                    help="pinned: kernel ridge 1e-3, the default when results/extra/generator-passes.* was made; "
                         "default: the objective's defaults now")
    ap.add_argument("--out", default=str(ROOT / "results" / "extra" / "generator-passes"))
    args = ap.parse_args()
    dataset = load_dataset("fashion-mnist")
    obj = KRRObjective(dataset, lam=1e-3, ridge="kernel") if args.objective == "pinned" else KRRObjective(dataset)
    gen, origin = load_generator(args.generator, dataset.channels)
    gen.eval()
    rows = []
    for ipc in [int(i) for i in args.ipcs.split(",")]:
        x0, y0 = sample_init(dataset, ipc, seed=0)
        rows.append({"ipc": ipc, "generator": generator_curve(obj, gen, x0, y0, args.passes),
                     "krr_pixel": pixel_curve(obj, x0)})
        print(json.dumps(rows[-1]), flush=True)
    record = {"command": "python benchmarks/generator_passes.py " + " ".join(sys.argv[1:]), "generator": origin,
              "objective": obj.describe(), "rows": rows,
              "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "threads": torch.get_num_threads(), "torch": torch.__version__}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# One generator pass against pixel steps, in full-data KRR loss (Fashion-MNIST)", "",
             f"`{record['command']}`; generator {origin}; loss = mean over the 8 pool networks of the "
             "full-data KRR loss (lower is better). Seconds exclude the loss evaluations.", ""]
    for r in rows:
        g, p = r["generator"], r["krr_pixel"]
        lines += [f"## IPC {r['ipc']}", "", "| generator passes | loss | s |", "|---|---|---|"]
        lines += [f"| {e['passes']} | {e['loss']:.5f} | {e['seconds']:.2f} |" for e in g]
        lines += ["", "| krr-pixel steps | loss | s |", "|---|---|---|"]
        lines += [f"| {e['steps']} | {e['loss']:.5f} | {e['seconds']:.2f} |" for e in p]
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
