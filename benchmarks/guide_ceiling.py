"""What one pass can learn from its guide, at best (issue #16).

    python benchmarks/guide_ceiling.py [--ipcs 1,10] [--out results/extra/guide-ceiling]

On a target it never saw, the generator's only window onto the target's data is its guide:
the gradient of the KRR loss at X_0 (objective.guide, from generate.GUIDE_NETS pool
networks). This measures, on Fashion-MNIST with the default objective and the bench's seeded
X_0, the full-data KRR loss (mean over the 8 pool networks; generator_passes.pool_loss):
- along the guide, X_0 - a * guide, for a range of step sizes a (the guide is RMS-normalised,
  so a is the step's RMS pixel change): the best a single step in that direction can do;
- along krr-pixel's path from the same X_0 (Adam lr 0.03, the default), with the RMS pixel
  change from X_0 and its cosine to -guide: how far, and how far off that direction, the
  iterative solution goes.
If the best step along the guide is worth a handful of pixel steps while the 200-step solution
moves mostly across it, a single pass needs knowledge of the target's curvature that one
gradient does not carry.

--directions also steps along other directions made from the target, each RMS 1 so a is
comparable: guide8 (the guide over all 8 pool networks), sign (its elementwise sign: the
direction of Adam's first step, which krr-pixel takes), sign8, and means8 (the gradient of
per-class mean-feature matching over the 8 networks: a cheaper view, linear in M, no solve).
A pass can compute elementwise maps such as the sign from its guide, so they check that the raw
gradient is not simply the wrong direction to measure the ceiling along; means8 asks whether a
cheaper view of the target carries as much.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from generator_passes import PIXEL_STEPS, pool_loss  # noqa: E402
from mgdd.checkpoint import step_rng  # noqa: E402
from mgdd.data import load_dataset, sample_init  # noqa: E402
from mgdd.generate import GUIDE_NETS  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402

STEP_SIZES = (0.01, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
DIRECTIONS = ("guide", "guide8", "sign", "sign8", "means8")


def mean_matching_gradient(obj, x0, y0) -> torch.Tensor:
    """Gradient at X_0 of sum over the pool's networks and the classes of ||mean phi(X_c) - mu_c||^2,
    mu_c the class's mean real feature (from the cached moments): a view of the target that costs
    one forward and backward, linear in M, with no M x M solve. RMS-normalised."""
    x = x0.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        total = 0.0
        for net, m in zip(obj.pool.nets, obj.moments):
            f = net(x)                                                        # (M, d)
            mu = (m.sums / m.counts[:, None]).to(f.dtype)                     # (K, d)
            for c in y0.unique():
                total = total + (f[y0 == c].mean(0) - mu[int(c)]).pow(2).sum()
        (g,) = torch.autograd.grad(total, x)
    return g / g.pow(2).mean().sqrt().clamp_min(1e-12)


def direction(obj, x0, name: str, y0=None) -> torch.Tensor:
    """An RMS-1 direction (M, C, H, W) at X_0 (labels y0, needed by means8); the step is X_0 - a * d."""
    if name == "means8":
        return mean_matching_gradient(obj, x0, y0)
    g = obj.guide(x0, nets=obj.pool.size if name.endswith("8") else GUIDE_NETS)  # RMS-normalised
    return torch.sign(g) if name.startswith("sign") else g


def along_guide(obj, x0, guide) -> list:
    return [{"a": a, "loss": pool_loss(obj, x0 - a * guide)} for a in STEP_SIZES]


def pixel_path(obj, x0, guide, lr: float = 0.03, seed: int = 0) -> list:
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    out = []
    for s in range(max(PIXEL_STEPS)):
        loss = obj.loss(x, step_rng(seed, s))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s + 1 in PIXEL_STEPS:
            d = x.detach() - x0
            out.append({"steps": s + 1, "loss": pool_loss(obj, x.detach()),
                        "rms_change": d.pow(2).mean().sqrt().item(),
                        "cos_to_guide": F.cosine_similarity(d.flatten(), -guide.flatten(), dim=0).item()})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--out", default=str(ROOT / "results" / "extra" / "guide-ceiling"))
    ap.add_argument("--directions", default="guide",
                    help=f"comma-separated, from {','.join(DIRECTIONS)}; more than guide adds a table per IPC")
    args = ap.parse_args()
    directions = args.directions.split(",")
    unknown = sorted(set(directions) - set(DIRECTIONS))
    if unknown or "guide" not in directions:
        ap.error(f"--directions: pick from {','.join(DIRECTIONS)}, guide included (got {args.directions})")
    dataset = load_dataset("fashion-mnist")
    obj = KRRObjective(dataset)  # the default objective
    rows = []
    for ipc in [int(i) for i in args.ipcs.split(",")]:
        x0, y0 = sample_init(dataset, ipc, seed=0)
        guide = obj.guide(x0, nets=GUIDE_NETS)
        row = {"ipc": ipc, "x0_loss": pool_loss(obj, x0), "along_guide": along_guide(obj, x0, guide),
               "krr_pixel": pixel_path(obj, x0, guide)}
        if len(directions) > 1:
            # guide's curve is the one just measured
            row["along"] = {d: row["along_guide"] if d == "guide" else along_guide(obj, x0, direction(obj, x0, d, y0))
                            for d in directions}
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {"command": " ".join(["python benchmarks/guide_ceiling.py", *sys.argv[1:]]),
              "objective": obj.describe(), "guide_nets": GUIDE_NETS, "rows": rows,
              "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "torch": torch.__version__}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# What one pass can learn from its guide, at best (Fashion-MNIST)", "",
             f"`{record['command']}`; default objective; guide from {GUIDE_NETS} pool networks, RMS-normalised; "
             "loss = mean over the 8 pool networks of the full-data KRR loss (lower is better).", ""]
    for r in rows:
        best = min(r["along_guide"], key=lambda e: e["loss"])
        worth = [e["steps"] for e in r["krr_pixel"] if e["loss"] <= best["loss"]]
        lines += [f"## IPC {r['ipc']}", "",
                  f"X_0: {r['x0_loss']:.5f}. Best single step along the guide: {best['loss']:.5f} at a = {best['a']}"
                  f" (krr-pixel first does as well at {worth[0] if worth else 'more than 200'} steps).", "",
                  "| step a along -guide | loss |", "|---|---|"]
        lines += [f"| {e['a']} | {e['loss']:.5f} |" for e in r["along_guide"]]
        lines += ["", "| krr-pixel steps | loss | RMS change from X_0 | cosine to -guide |", "|---|---|---|---|"]
        lines += [f"| {e['steps']} | {e['loss']:.5f} | {e['rms_change']:.3f} | {e['cos_to_guide']:.3f} |"
                  for e in r["krr_pixel"]]
        lines.append("")
        if "along" in r:
            lines += ["| direction | best a | best loss | krr-pixel first does as well at |", "|---|---|---|---|"]
            for d, curve in r["along"].items():
                b = min(curve, key=lambda e: e["loss"])
                w = [e["steps"] for e in r["krr_pixel"] if e["loss"] <= b["loss"]]
                lines.append(f"| {d} | {b['a']} | {b['loss']:.5f} | {w[0] if w else 'more than 200'} steps |")
            lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
