"""Is a method that reads several gradients much better per gradient than krr-pixel? (issue #16)

    python benchmarks/curvature_ceiling.py [--ipcs 1,10,50] [--budget 200]
                                           [--methods adam,adam8,lbfgs2,lbfgs8] [--history 20]
                                           [--out results/extra/curvature-ceiling]

guide_ceiling.py found that no step along one gradient of the target is worth more than about
10 of krr-pixel's steps. What is left for a generator that reads a few gradients (a few passes,
each with a fresh guide) is what those gradients say about the target's curvature. This bounds
it with a method built for exactly that: L-BFGS, a quasi-Newton method whose step is a
curvature model fitted to the gradients it has read, with a strong-Wolfe line search.

Cost is counted in network evaluations: one forward and backward of the M synthetic images
through one pool network, which is what a krr-pixel step costs (and about what a guide costs
per network it averages over). Methods, on Fashion-MNIST with the default objective and the
bench's seeded X_0:
- ``adam``: krr-pixel as shipped (Adam lr 0.03, one pool network drawn per step): 1 per step;
- ``adam8``: Adam lr 0.03 on the mean loss over all 8 pool networks: 8 per step;
- ``lbfgs2``: L-BFGS on the mean loss over the guide's 2 networks (what the generator reads):
  2 per evaluation, line-search evaluations included;
- ``lbfgs8``: L-BFGS on the mean over all 8: 8 per evaluation.
At each budget B the method's set is the best point it has evaluated within B (for Adam, its
iterate). Each set is scored without training a network: the full-data KRR loss averaged over
the 8 pool networks, and over 2 held-out random networks (pool seed 2, which no optimisation,
objective or meta-training used; generator_refine.py found the held-out loss orders sets as
their accuracy does). ``--score B,...`` also trains ConvNet-3 (300 epochs, the bench's
evaluation, ``--runs`` runs) on each method's set at those budgets; each score is a cell,
OUT-cells/METHOD-ipcI-bB-runsR.json, reused on the next run. If a curvature method reached
krr-pixel's 200-step loss in a few tens of evaluations, a few-pass generator would have room
to learn that; if it is no better per evaluation than Adam, a few gradients cannot carry the
plateau either.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from generator_passes import pool_loss  # noqa: E402
from generator_refine import HELD_OUT_SEED, HELD_OUT_SIZE  # noqa: E402
from mgdd.bench.report import machine  # noqa: E402
from mgdd.checkpoint import step_rng  # noqa: E402
from mgdd.data import load_dataset, sample_init  # noqa: E402
from mgdd.distilled import DistilledSet, distilled_meta  # noqa: E402
from mgdd.evaluate import evaluate  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402

METHODS = ("adam", "adam8", "lbfgs2", "lbfgs8")
BUDGETS = (1, 2, 5, 10, 25, 50, 100, 200, 400, 800)


def mean_loss(obj: KRRObjective, x: torch.Tensor, nets: int) -> torch.Tensor:
    """Mean full-data KRR loss over the first ``nets`` pool networks (costs ``nets`` evaluations)."""
    return sum(obj.pool_loss(x, i) for i in range(nets)) / nets


def run_adam(obj, x0, budget: int, nets: int | None, lr: float = 0.03, seed: int = 0) -> list:
    """[(cost, x)] after each Adam step; nets None draws one pool network per step (krr-pixel)."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    cost, out, step = 0, [], 0
    per_step = 1 if nets is None else nets
    while cost + per_step <= budget:
        loss = obj.loss(x, step_rng(seed, step)) if nets is None else mean_loss(obj, x, nets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        cost, step = cost + per_step, step + 1
        out.append((cost, x.detach().clone()))
    return out


def run_lbfgs(obj, x0, budget: int, nets: int, history: int, first_rms: float = 0.1) -> list:
    """[(cost, best x so far)] at every evaluation of L-BFGS (strong Wolfe) on the mean over ``nets``.

    torch's L-BFGS takes a first trial step of size 1 / |g|_1 along -g (RMS ~1e-5 pixel here) and
    the line search grows it at most 10x per evaluation, so it spends its first ~10 evaluations
    finding the scale. It runs instead on z with x = x0 + alpha * z, alpha set from the gradient
    at X_0 so that first trial step moves the set by ``first_rms`` RMS (guide_ceiling.py: the best
    single step along the guide is 0.1-0.3). A scalar change of variables leaves every later
    quasi-Newton step as it was; the gradient it needs is counted in the cost.
    """
    with torch.enable_grad():
        xg = x0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(mean_loss(obj, xg, nets), xg)
    alpha = first_rms * g.abs().sum().item() / g.pow(2).mean().sqrt().clamp_min(1e-12).item()
    z = torch.zeros_like(x0, requires_grad=True)
    evals = budget // nets - 1
    # tolerances at zero: stop on the evaluation budget, not on a flat stretch
    opt = torch.optim.LBFGS([z], lr=1.0, max_iter=evals, max_eval=evals, history_size=history,
                            tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
    out, best = [], [float("inf"), None]

    def closure():
        opt.zero_grad(set_to_none=True)
        x = x0 + alpha * z
        loss = mean_loss(obj, x, nets)
        loss.backward()
        if loss.item() < best[0]:
            best[:] = [loss.item(), x.detach().clone()]
        out.append(((len(out) + 2) * nets, best[1]))  # + 1 for the scaling gradient
        return loss

    opt.step(closure)
    return out


def snapshots(path: list, budgets) -> dict:
    """{B: the last x on the path whose cost is <= B}, for the budgets the path reaches."""
    snaps = {}
    for b in budgets:
        within = [x for cost, x in path if cost <= b]
        if within:
            snaps[b] = within[-1]
    return snaps


def score(obj, x: torch.Tensor, ipc: int, method: str, budget: int, runs: int, cells: Path) -> dict:
    """Accuracy of the set x with solved labels (a cell, reused if on disk)."""
    cell = cells / f"{method}-ipc{ipc}-b{budget}-runs{runs}.json"
    if cell.is_file():
        return json.loads(cell.read_text())
    meta = distilled_meta(obj.dataset, ipc, f"curvature-{method}", 0, obj, {"evaluations": budget})
    ev = evaluate(DistilledSet(x, obj.labels(x), meta, obj.dataset.zca), obj.dataset, epochs=300, runs=runs,
                  seed=0, progress=False)
    res = {"accuracy_mean": ev["accuracy_mean"], "accuracy_std": ev["accuracy_std"],
           "accuracies": [r["accuracy"] for r in ev["per_run"]]}
    cells.mkdir(parents=True, exist_ok=True)
    cell.write_text(json.dumps(res, indent=2) + "\n")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ipcs", default="1,10,50")
    ap.add_argument("--budget", type=int, default=200, help="network evaluations per method (default 200)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--history", type=int, default=20, help="L-BFGS history size (default 20)")
    ap.add_argument("--first-rms", type=float, default=0.1,
                    help="RMS pixel change of L-BFGS's first trial step (default 0.1)")
    ap.add_argument("--score", default="", help="comma-separated budgets whose sets are also evaluated")
    ap.add_argument("--runs", type=int, default=1, help="evaluation runs per scored set (default 1)")
    ap.add_argument("--out", default=str(ROOT / "results" / "extra" / "curvature-ceiling"))
    args = ap.parse_args()
    scored = {int(b) for b in args.score.split(",") if b}
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or args.budget < 1 or args.history < 1:
        ap.error(f"--methods from {','.join(METHODS)} (got {args.methods}); --budget and --history at least 1")
    budgets = [b for b in BUDGETS if b <= args.budget]
    if not scored <= set(budgets) or args.runs < 1:
        ap.error(f"--score: budgets from {','.join(map(str, budgets))} (got {args.score}); --runs at least 1")
    out = Path(args.out)
    cells = out.parent / f"{out.name}-cells"
    dataset = load_dataset("fashion-mnist")
    obj = KRRObjective(dataset)
    held_out = KRRObjective(dataset, seed=HELD_OUT_SEED, pool_size=HELD_OUT_SIZE)
    rows = []
    for ipc in [int(i) for i in args.ipcs.split(",")]:
        x0, _ = sample_init(dataset, ipc, seed=0)
        row = {"ipc": ipc, "x0": {"loss": pool_loss(obj, x0), "held_out": pool_loss(held_out, x0)}, "methods": {}}
        for m in methods:
            if m.startswith("adam"):
                path = run_adam(obj, x0, args.budget, None if m == "adam" else obj.pool.size)
            else:
                path = run_lbfgs(obj, x0, args.budget, int(m[len("lbfgs"):]), args.history, args.first_rms)
            row["methods"][m] = {str(b): {"loss": pool_loss(obj, x), "held_out": pool_loss(held_out, x),
                                          "rms_change": (x - x0).pow(2).mean().sqrt().item()}
                                 for b, x in snapshots(path, budgets).items()}
            for b, x in snapshots(path, sorted(scored)).items():
                row["methods"][m][str(b)].update(score(obj, x, ipc, m, b, args.runs, cells))
            print(json.dumps({"ipc": ipc, "method": m, "curve": row["methods"][m]}), flush=True)
        rows.append(row)
    record = {"command": " ".join(["python benchmarks/curvature_ceiling.py", *sys.argv[1:]]),
              "objective": obj.describe(), "held_out": held_out.describe(), "history": args.history,
              "first_rms": args.first_rms, "budgets": budgets, "rows": rows, "machine": machine()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    text = table(record)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


def worth(adam: dict, loss: float) -> str:
    """The fewest krr-pixel steps (of the budgets measured) whose pool loss is as low."""
    hits = [int(b) for b, e in adam.items() if e["loss"] <= loss]
    return str(min(hits)) if hits else f"more than {max(int(b) for b in adam)}"


def table(record: dict) -> str:
    lines = ["# Per network evaluation, does a curvature method beat krr-pixel? (Fashion-MNIST)", "",
             f"`{record['command']}`; default objective; L-BFGS history {record['history']}, strong-Wolfe line "
             f"search, first trial step {record['first_rms']} RMS. Cost: network evaluations (one forward and "
             "backward of the set through one pool network; a krr-pixel step is 1). Loss: full-data KRR loss, mean over the 8 pool networks / over 2 held-out "
             f"networks (pool seed {record['held_out']['seed']}); lower is better. In brackets: the fewest krr-pixel "
             "steps (of the budgets measured) with as low a pool loss.", ""]
    for r in record["rows"]:
        ms = list(r["methods"])
        lines += [f"## IPC {r['ipc']}", "", f"X_0: {r['x0']['loss']:.4f} / {r['x0']['held_out']:.4f}", "",
                  "| evaluations | " + " | ".join(ms) + " |", "|---" * (len(ms) + 1) + "|"]
        adam = r["methods"].get("adam")
        for b in record["budgets"]:
            cells = []
            for m in ms:
                e = r["methods"][m].get(str(b))
                if e is None:
                    cells.append("")
                    continue
                w = f" ({worth(adam, e['loss'])})" if adam and m != "adam" else ""
                cells.append(f"{e['loss']:.4f} / {e['held_out']:.4f}{w}")
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
        lines.append("")
        acc = [(b, m, e) for m in ms for b, e in r["methods"][m].items() if "accuracy_mean" in e]
        if acc:
            lines += ["| evaluations | method | accuracy % | held-out loss |", "|---|---|---|---|"]
            lines += [f"| {b} | {m} | {100 * e['accuracy_mean']:.2f} ± {100 * e['accuracy_std']:.2f} "
                      f"({len(e['accuracies'])} run{'s' if len(e['accuracies']) > 1 else ''}) | {e['held_out']:.4f} |"
                      for b, m, e in sorted(acc, key=lambda t: (int(t[0]), t[1]))]
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
