"""Amortise the iterative method (issue #16): train the generator towards krr-pixel's solutions.

    python benchmarks/amortised_teacher.py bank  --source mnist --tasks 40 --steps 100 --out runs/teacher-bank
    python benchmarks/amortised_teacher.py train --bank runs/teacher-bank --steps 400 --holdout 10 --out runs/meta-amortised
    python benchmarks/amortised_teacher.py missing --bank runs/teacher-bank --generators meta,GEN,...

`bank` makes the teachers: for task i, X_0 = the seeded real images (seed 1000 + i, every class,
IPC cycling through --ipcs) and X* = krr-pixel from that X_0 (the default objective of the
source, Adam lr 0.03, --steps steps). Each task is one file (X_0, the generator's guide at X_0,
X*), written when finished, so an interrupted bank resumes. Task i depends only on i, so a big
bank is made by several processes at once, each with its own --shard K/N (tasks i with
i % N == K); run one process first, alone, so the source's feature moments are cached once.

`train` fits a one-pass generator (from scratch: zero-initialised, the identity) so that
G(X_0, guide(X_0)) lands on X*: the loss is ||G - X*||^2 / ||X_0 - X*||^2, the fraction of the
teacher's change still missing, averaged over a few tasks per step. Guides are cached in the
bank, so a training step is one generator forward and backward: thousands of steps cost
minutes, where a KRR-loss meta-step costs seconds. The result is a generator folder that
`benchmarks/unrolled_compare.py GEN --passes 1` scores on Fashion-MNIST (never a source).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgdd.baselines import krr_pixel  # noqa: E402
from mgdd.data import load_dataset, sample_init  # noqa: E402
from mgdd.generate import GUIDE_NETS  # noqa: E402
from mgdd.generator import GeneratorConfig, MetaGenerator  # noqa: E402
from mgdd.io import load_tensors, save_tensors, write_json, read_json  # noqa: E402
from mgdd.objective import KRRObjective  # noqa: E402


def make_bank(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    k, n = _shard(args.shard)
    dataset = load_dataset(args.source)
    obj = KRRObjective(dataset, device=args.device)
    ipcs = [int(i) for i in args.ipcs.split(",")]
    if k == 0:
        write_json(out / "bank.json", {"source": args.source, "ipcs": ipcs, "teacher_steps": args.steps, "lr": args.lr,
                                       "objective": obj.describe(), "device": args.device,
                                       "command": " ".join(sys.argv)}, force=True)
    for i in range(k, args.tasks, n):
        path = out / f"task{i:04d}.safetensors"
        if path.exists():
            continue
        ipc, seed = ipcs[i % len(ipcs)], 1000 + i
        t0 = time.perf_counter()
        teacher = krr_pixel(obj, ipc, args.steps, lr=args.lr, seed=seed, progress=False)
        x0, y0 = sample_init(dataset, ipc, seed)
        guide = obj.guide(x0, nets=GUIDE_NETS)
        with torch.no_grad():
            start, end = obj.loss(x0, random.Random(0)), obj.loss(teacher.images, random.Random(0))
        save_tensors(path, {"x0": x0.contiguous(), "y0": y0.contiguous(), "guide": guide.contiguous(),
                            "xstar": teacher.images.contiguous()},
                     {"ipc": str(ipc), "seed": str(seed), "seconds": f"{time.perf_counter() - t0:.2f}",
                      "loss_x0": f"{float(start):.6g}", "loss_xstar": f"{float(end):.6g}"})
        print(f"task {i}: ipc {ipc} seed {seed} loss {float(start):.4g} -> {float(end):.4g} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)


def _shard(text: str) -> tuple:
    """"K/N" -> (K, N), with 0 <= K < N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if not 0 <= k < n:
        raise SystemExit(f"--shard {text!r}: K must be in 0..N-1")
    return k, n


def load_bank(folder, device="cpu") -> list:
    tasks = []
    for p in sorted(Path(folder).glob("task*.safetensors")):
        tensors, _ = load_tensors(p)
        tasks.append({name: t.to(device) for name, t in tensors.items()})
    if not tasks:
        raise SystemExit(f"no tasks in {folder}; run `bank` first.")
    return tasks


def one_pass(gen, t) -> torch.Tensor:
    """G(X_0, guide(X_0)) for one banked task: (M, C, H, W)."""
    return gen(t["x0"], t["y0"], int(t["y0"].max()) + 1, guide=t["guide"])


def missing_fraction(gen, t, x=None) -> torch.Tensor:
    """||G(X_0, guide) - X*||^2 / ||X_0 - X*||^2: the fraction of the teacher's change still missing
    (x: the pass's output, when the caller already has it)."""
    x = one_pass(gen, t) if x is None else x
    return (x - t["xstar"]).pow(2).sum() / (t["x0"] - t["xstar"]).pow(2).sum()


def krr_relative(obj, gen, t, draw: int, x=None) -> torch.Tensor:
    """The KRR loss of G's set relative to X_0's, both scored by the same drawn pool network (as
    unrolled meta-training scores a pass): below 1, the pass lowered the objective."""
    x = one_pass(gen, t) if x is None else x
    with torch.no_grad():
        start = obj.loss(t["x0"], random.Random(draw))
    return obj.loss(x, random.Random(draw)) / start


@torch.no_grad()
def missing(gen, tasks) -> float:
    return sum(float(missing_fraction(gen, t)) for t in tasks) / len(tasks) if tasks else float("nan")


def train(args) -> None:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tasks = load_bank(args.bank, args.device)
    bank = read_json(Path(args.bank) / "bank.json")
    # the last --holdout tasks are never trained on: their missing fraction says whether the
    # map from (X_0, guide) to X* generalises to new initialisations of the source
    if not 0 <= args.holdout < len(tasks):
        raise SystemExit(f"--holdout {args.holdout}: the bank has {len(tasks)} tasks; hold out fewer, so some are left to train on.")
    held, tasks = tasks[len(tasks) - args.holdout:] if args.holdout else [], tasks[:len(tasks) - args.holdout]
    gen = MetaGenerator(GeneratorConfig(channels=tasks[0]["x0"].shape[1])).to(args.device)
    # --krr-weight W adds W x the pass's KRR loss relative to X_0's on the source's default
    # objective (the bank's): regress onto the teacher and lower the loss the teacher lowered
    obj = KRRObjective(load_dataset(bank["source"]), device=args.device) if args.krr_weight else None
    krr_history = []
    opt = torch.optim.Adam(gen.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    t0, history = time.perf_counter(), []
    done = 0
    for step in range(args.steps):
        if step and args.max_seconds and time.perf_counter() - t0 > args.max_seconds:  # at least one step
            print(f"stopped at step {step} of {args.steps}: --max-seconds {args.max_seconds} reached", flush=True)
            break
        done = step + 1
        total, miss_total, krr_total = 0.0, 0.0, 0.0
        for i in range(args.tasks_per_step):
            t = tasks[rng.randrange(len(tasks))]
            x = one_pass(gen, t)  # one forward serves both terms
            miss = missing_fraction(gen, t, x)
            miss_total += miss.item()
            if obj is not None:
                rel = krr_relative(obj, gen, t, draw=args.seed * 10**6 + step * args.tasks_per_step + i, x=x)
                krr_total += rel.item()
                miss = miss + args.krr_weight * rel
            total = total + miss
        loss = total / args.tasks_per_step
        krr_history.append(krr_total / args.tasks_per_step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(miss_total / args.tasks_per_step)  # the missing fraction alone, whatever the loss
        if step % args.log_every == 0 or step == args.steps - 1:
            recent = sum(history[-50:]) / len(history[-50:])
            krr_note = f", KRR loss / X_0's {sum(krr_history[-50:]) / len(krr_history[-50:]):.4f}" if obj else ""
            print(f"step {step}: missing fraction {recent:.4f}{krr_note}, held out {missing(gen, held):.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    meta = {"kind": "meta generator", "source": bank["source"], "algorithm": "amortised",
            "passes": 1, "ipc_range": [min(bank["ipcs"]), max(bank["ipcs"])],
            "teacher": {k: bank[k] for k in ("teacher_steps", "lr", "ipcs")}, "bank_tasks": len(tasks), "held_out_tasks": len(held),
            "held_out_missing_fraction": missing(gen, held) if held else None,
            "objective": bank["objective"], "meta_steps": done, "planned_steps": args.steps, "tasks_per_step": args.tasks_per_step,
            "meta_lr": args.lr, "seed": args.seed, "seconds": time.perf_counter() - t0, "device": args.device,
            "final_missing_fraction": sum(history[-50:]) / len(history[-50:]), "krr_weight": args.krr_weight,
            "final_krr_relative": sum(krr_history[-50:]) / len(krr_history[-50:]) if obj else None,
            "command": " ".join(sys.argv)}
    gen.cpu().save_pretrained(args.out, metadata=meta, force=True)
    print(json.dumps({k: meta[k] for k in ("seconds", "final_missing_fraction", "held_out_missing_fraction")}))


def score(args) -> None:
    """The missing fraction of one pass of each generator on the bank's last --holdout tasks."""
    from mgdd.pipeline import load_generator
    tasks = load_bank(args.bank, args.device)[-args.holdout:]
    rows = {}
    for source in args.generators.split(","):
        gen, origin = load_generator(source, tasks[0]["x0"].shape[1])
        gen.to(args.device).eval()
        rows[origin] = missing(gen, tasks)
        print(f"{origin}: {rows[origin]:.4f}", flush=True)
    if args.out:
        write_json(args.out, {"command": " ".join(["python", *sys.argv]), "held_out_tasks": len(tasks),
                              "missing_fraction": rows}, force=True)


def report(args) -> None:
    """table.md for a folder made by benchmarks/device_session.sh: per generator, the bank it was
    trained on, its steps, its missing fraction on the held-out tasks and its K = 0 accuracy."""
    folder = Path(args.folder)
    missed = read_json(folder / "missing-fraction.json")
    rows = []
    for gen in args.generators.split(","):
        cfg = read_json(Path(gen) / "config.json")["metadata"]
        name = Path(gen).name
        acc = {}
        for p in sorted((folder / "evals").glob(f"{name}-ipc*.json")):
            r = read_json(p)
            acc[int(p.stem.rsplit("-ipc", 1)[1])] = f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}"
        held = next((v for k, v in missed["missing_fraction"].items() if Path(k).name == name), None)
        rows.append((gen, cfg, held, acc))
    ipcs = sorted({i for *_, acc in rows for i in acc})
    bank, teacher = read_json(folder / "bank-summary.json"), read_json(folder / "bank.json")
    lines = [f"# {args.title} (issue #16)", "",
             f"Made by `{args.made_by}`; this table by "
             f"`python benchmarks/amortised_teacher.py {shlex.join(sys.argv[1:])}`.", "",
             f"The bank: {bank['tasks']} {teacher['source']} teacher tasks ({teacher['teacher_steps']} krr-pixel steps each), the last "
             f"{missed['held_out_tasks']} held out. Held-out missing fraction: ||G - X*||^2 / ||X_0 - X*||^2 on "
             "those tasks (1 = the identity). Accuracy: Fashion-MNIST, K = 0, one pass, seed-0 sets, "
             "ConvNet-3, 300 epochs, mean ± std of 3 runs, all evaluated in the same call.", "",
             "| generator | bank tasks trained on | steps | --krr-weight | trained on | held-out missing | "
             + " | ".join(f"IPC {i}" for i in ipcs) + " |", "|---|---|---|---|---|---|" + "---|" * len(ipcs)]
    for gen, cfg, held, acc in rows:
        lines.append(f"| `{gen}` | {cfg.get('bank_tasks')} | {cfg.get('meta_steps')} | {cfg.get('krr_weight', 0)} | "
                     f"{cfg.get('device', 'cpu')} | "
                     f"{'' if held is None else f'{held:.3f}'} | " + " | ".join(acc.get(i, "") for i in ipcs) + " |")
    other = {Path(k).name: v for k, v in missed["missing_fraction"].items()
             if Path(k).name not in {Path(g).name for g, *_ in rows}}
    if other:
        lines += ["", "Held-out missing fraction of the other generators scored: "
                  + ", ".join(f"`{k}` {v:.3f}" for k, v in other.items()) + "."]
    text = "\n".join(lines) + "\n"
    (folder / "table.md").write_text(text)
    print(text)


def summary(args) -> None:
    """One JSON row per banked task (its metadata: IPC, seed, seconds, losses), for a record of a
    bank whose tensors are too big to keep."""
    rows = [{"task": p.stem, **load_tensors(p)[1]} for p in sorted(Path(args.bank).glob("task*.safetensors"))]
    write_json(args.out, {"tasks": len(rows), "rows": rows}, force=True)
    print(f"bank: {len(rows)} tasks, {sum(float(r['seconds']) for r in rows):.0f} task-seconds")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bank")
    b.add_argument("--source", default="mnist")
    b.add_argument("--tasks", type=int, default=40)
    b.add_argument("--ipcs", default="1,2,5,10,20")
    b.add_argument("--steps", type=int, default=100)
    b.add_argument("--lr", type=float, default=0.03)
    b.add_argument("--shard", default="0/1", help="K/N: make only tasks i with i %% N == K (N processes at once)")
    b.add_argument("--out", required=True)
    t = sub.add_parser("train")
    t.add_argument("--bank", required=True)
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--tasks-per-step", type=int, default=2)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--holdout", type=int, default=0, help="tasks kept out of training, to measure generalisation")
    t.add_argument("--krr-weight", type=float, default=0.0,
                   help="add this times the pass's KRR loss relative to X_0's (0: regression only, as before)")
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--max-seconds", type=float, default=0,
                   help="stop after this long and save the generator as it is (0: no limit); config.json records the steps done")
    t.add_argument("--out", required=True)
    m = sub.add_parser("missing")
    m.add_argument("--bank", required=True)
    m.add_argument("--generators", default="meta")
    m.add_argument("--holdout", type=int, default=10)
    m.add_argument("--out")
    r = sub.add_parser("report")
    r.add_argument("folder")
    r.add_argument("--generators", required=True, help="comma-separated generator folders, in table order")
    r.add_argument("--title", default="Amortised krr-pixel solutions at a bigger bank")
    r.add_argument("--made-by", default="bash benchmarks/device_session.sh OUT SECONDS (step 3)",
                   help="the command that made the folder, for the table's first line")
    u = sub.add_parser("summary")
    u.add_argument("--bank", required=True)
    u.add_argument("--out", required=True)
    for p in (b, t, m):
        p.add_argument("--device", default="cpu")
    args = ap.parse_args()
    {"bank": make_bank, "train": train, "missing": score, "report": report, "summary": summary}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
