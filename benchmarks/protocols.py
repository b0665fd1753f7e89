"""Every bench method under every evaluation protocol, with DD-Ranking's scores (issue #40).

    python benchmarks/protocols.py run --ipcs 1 --runs 3 --protocols mgdd,dc,dsa
    python benchmarks/protocols.py run --ipcs 10 --runs 1 --protocols mgdd,dc,dsa
    python benchmarks/protocols.py run --ipcs 1 --runs 3 --protocols mgdd-aug   # ARS: own labels with DSA
    python benchmarks/protocols.py real --epochs 10          # Acc(real, hard) for HLR: the whole training split
    python benchmarks/protocols.py table                     # results/protocols/table.md
    python benchmarks/protocols.py cost --ipc 1              # what the rfad protocol costs on this CPU
    python benchmarks/protocols.py sets --ipcs 1,10,50       # only make the sets (a GPU run carries them)

The sets are the bench's methods at seed 0 on Fashion-MNIST (runs/protocols/sets, remade
when absent): random (hard labels), random+ls, herding+ls, greedy+ls, the shipped generator at
K = 0 from the herding start (generator-k0, the default before start="auto") and from the start
it ships with (generator-auto: greedy up to 500 images), krr-pixel at its bench step count, and
krr-fresh as `mgdd baseline krr-fresh` makes it (2,000 steps, its default lr).
Each (set, protocol) is one resumable cell,
results/protocols/cells/<method>-ipc<I>-<protocol>.json: a cut run goes on where it stopped
(its training state in results/protocols/checkpoints/, git-ignored, written every minute).
The table puts every protocol's accuracy side by side, and DD-Ranking's scores from them:
Acc(syn, hard) is the dc protocol's accuracy, Acc(syn, any) the mgdd protocol's, the random
subset is random+ls under the same protocol, and Acc(real, hard) comes from the `real` cell.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import mgdd
from mgdd.io import write_json
from mgdd.distilled import set_digest
from mgdd.protocols import check_names, evaluate_protocol, hard_copy
from mgdd.scores import robust_scores

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("MGDD_PROTOCOLS_OUT", ROOT / "results" / "protocols"))  # a device run writes elsewhere
SETS = ROOT / "runs" / "protocols" / "sets"
METHODS = ["random", "random+ls", "herding+ls", "greedy+ls", "generator-k0", "generator-auto", "krr-pixel",
           "krr-fresh"]
# the set's own labels with DSA augmentation, for 1000 epochs (evaluate()'s length with augmentation, as
# DSA's; every mgdd-aug cell records it): with the mgdd column (300 epochs), what DD-Ranking's
# augmentation-robust score (ARS) reads. The bench's "-aug" cells (Preset.robust_aug) keep the preset's
# epochs instead, so there ARS compares the same length with and without augmentation.
AUG = "mgdd-aug"
KRR_STEPS = {1: 400, 10: 200, 50: 25}  # the bench's best step counts (docs/results.md §3)


def make_set(method: str, ipc: int, objective) -> mgdd.DistilledSet:
    path = SETS / f"{method}-ipc{ipc}.safetensors"
    if path.is_file():
        return mgdd.DistilledSet.load(path)
    t0 = time.perf_counter()
    if method == "random":
        ds = mgdd.random_real(objective.dataset, ipc, seed=0)
    elif method == "random+ls":
        ds = mgdd.random_ls(objective, ipc, seed=0)
    elif method == "herding+ls":
        ds = mgdd.coreset(objective, ipc, "herding", seed=0, soft_labels=True)
    elif method == "greedy+ls":
        ds = mgdd.coreset(objective, ipc, "greedy", seed=0, soft_labels=True)
    elif method in ("generator-k0", "generator-auto"):
        gen = mgdd.MetaGenerator.from_pretrained(mgdd.default_meta_generator())
        # generator-k0: the herding start every committed generator-k0 cell was made from (the shipped
        # default before start="auto"); generator-auto: the start the generator ships with (None)
        ds = mgdd.generate(gen, objective, ipc=ipc, seed=0, start="herding" if method == "generator-k0" else None)
    elif method == "krr-fresh":  # what `mgdd baseline krr-fresh --ipc I` makes: its default steps and lr, seed 0
        from mgdd.baselines import DEFAULT_STEPS, default_lr
        SETS.mkdir(parents=True, exist_ok=True)
        ds = mgdd.run_baseline("krr-fresh", objective.dataset, ipc, 0, objective, steps=DEFAULT_STEPS["krr-fresh"],
                               lr=default_lr("krr-fresh", ipc), progress=False, resume=True,
                               checkpoint=SETS / f"{method}-ipc{ipc}.checkpoint.safetensors")
    else:
        ds = mgdd.krr_pixel(objective, ipc, steps=KRR_STEPS[ipc], seed=0, progress=False)
    print(f"{method} IPC {ipc}: made in {time.perf_counter() - t0:.1f} s", flush=True)
    SETS.mkdir(parents=True, exist_ok=True)
    ds.save(path)
    return ds


def same_evaluation(ds, name: str, ipc: int, runs: int):
    """A cell that already ran this exact evaluation, or None. Under dc, and under mgdd for a
    hard-labelled set, a set is scored as its images with hard labels by ConvNet-3 for 300
    epochs, seeded 0..runs-1: two sets with the same images and classes (random and random+ls)
    get the same computation, and a hard set gets the same under mgdd and dc. Under dsa a set
    is scored as its images with hard labels too (1000 augmented epochs, the augmentation
    seeded with the run), so two sets with the same images share a dsa cell; dsa is never
    copied from or to another protocol. (Measured: random and random+ls, each run separately
    under dsa, gave identical per-run accuracies at IPC 1, 3 runs, and IPC 10.)"""
    if name in ("rfad", AUG) or (name == "mgdd" and ds.soft):
        return None
    digest = set_digest(hard_copy(ds))
    for p in sorted((OUT / "cells").glob(f"*-ipc{ipc}-*.json")):
        c = json.loads(p.read_text())
        if not (c.get("hard_digest") == digest and c.get("runs") == runs and "same_evaluation_as" not in c
                and not c.get("deviations")):  # an augmented (mgdd-aug) or shortened cell is another computation
            continue
        if name == "dsa":
            if c["protocol"] == "dsa":
                return p
        elif c["protocol"] == "dc" or (c["protocol"] == "mgdd" and c["label_kind"] == "hard"):
            return p
    return None


def columns(text: str) -> list:
    """The protocol names asked for: registered protocols (mgdd.protocols), and AUG."""
    names = text.split(",")
    registered = [n for n in names if n != AUG]
    if registered:
        check_names(registered)
    if names.count(AUG) > 1:
        raise SystemExit(f"{AUG} listed twice in {text}; name each once.")
    return names


def cmd_run(args):
    protocols = columns(args.protocols)
    dataset = mgdd.load_dataset("fashion-mnist")
    objective = mgdd.KRRObjective(dataset)
    for ipc in args.ipcs:
        for method in args.methods.split(","):
            ds = make_set(method, ipc, objective)
            for name in protocols:
                cell = OUT / "cells" / f"{method}-ipc{ipc}-{name}.json"
                if cell.is_file() and json.loads(cell.read_text())["runs"] >= args.runs:
                    continue
                same = same_evaluation(ds, name, ipc, args.runs)
                if same is not None:  # the very computation another cell ran: recorded as a copy
                    res = dict(json.loads(same.read_text()), protocol=name, same_evaluation_as=same.name,
                               method=method)
                    write_json(cell, res, force=True)
                    print(f"{method} IPC {ipc} {name}: the evaluation of {same.name}", flush=True)
                    continue
                t0 = time.perf_counter()
                ckpts = OUT / "checkpoints" / cell.stem  # a cut cell continues where it stopped (git-ignored)
                extra = {"dsa": True} if name == AUG else {}  # AUG: the mgdd protocol with DSA augmentation
                res = evaluate_protocol(ds, dataset, "mgdd" if name == AUG else name, runs=args.runs, seed=0,
                                        progress=False, checkpoint_dir=ckpts, resume=True, **extra)
                res.update(method=method, ipc=ipc, wall_seconds=time.perf_counter() - t0, torch_threads=
                           __import__("torch").get_num_threads(), hard_digest=set_digest(hard_copy(ds)),
                           digest=set_digest(ds))
                write_json(cell, res, force=True)
                shutil.rmtree(ckpts, ignore_errors=True)
                print(f"{method} IPC {ipc} {name}: {100 * res['accuracy_mean']:.2f} ± {100 * res['accuracy_std']:.2f} "
                      f"({res['runs']} runs, {res['wall_seconds']:.0f} s)", flush=True)


def cmd_sets(args):
    """Make the sets only, here, so a device run scores the very files the CPU cells scored."""
    objective = mgdd.KRRObjective(mgdd.load_dataset("fashion-mnist"))
    for ipc in args.ipcs:
        for method in args.methods.split(","):
            make_set(method, ipc, objective)
    print(f"sets in {SETS}")


def cmd_real(args):
    """Acc(real, hard): ConvNet-3 on the whole training split, the dc protocol's network,
    optimiser and schedule at ``--epochs`` (300 is the protocol's; fewer on 2 CPU cores)."""
    from mgdd.evaluate import evaluate, real_data_set
    dataset = mgdd.load_dataset("fashion-mnist")
    cell = OUT / "cells" / f"real-hard-e{args.epochs}.json"
    t0 = time.perf_counter()
    res = evaluate(real_data_set(dataset), dataset, epochs=args.epochs, runs=1, seed=0, progress=True)
    res.update(method="real data", protocol="dc", deviations={"epochs": args.epochs},
               wall_seconds=time.perf_counter() - t0)
    write_json(cell, res, force=True)
    print(f"real data, hard labels, {args.epochs} epochs: {100 * res['accuracy_mean']:.2f}")


def cmd_cost(args):
    """What the rfad protocol costs on this machine: one training step on IPC ``--ipc`` of Fashion-
    MNIST's shape and one pass of 512 validation images through the width-1024 network."""
    import copy

    import torch

    from mgdd.protocols import RFAD_LOOP, _centred_accuracy, _outputs, _rfad_network
    net = _rfad_network(1, 10, (28, 28), RFAD_LOOP["width"])
    net0 = copy.deepcopy(net)
    x, y = torch.randn(10 * args.ipc, 1, 28, 28), torch.randn(10 * args.ipc, 10)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    out0 = _outputs(net0, x)  # f_0's outputs, once a run (protocols._rfad_run)
    t0 = time.perf_counter()
    for _ in range(3):
        loss = ((net(x) - out0 - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    step = (time.perf_counter() - t0) / 3
    vx = torch.randn(512, 1, 28, 28)
    t0 = time.perf_counter()
    _centred_accuracy(net, vx, torch.randint(0, 10, (512,)), torch.zeros(512, 10))
    valid = time.perf_counter() - t0  # one forward of 512 images: a check, f_0's outputs being kept
    # the shortest run: the best network at iteration 0, `patience` steps, a check every `eval_every`
    # on 5,000 validation images, f_0 once on them, and the 10,000 test images through f and f_0
    checks = RFAD_LOOP["patience"] // RFAD_LOOP["eval_every"] + 1
    res = {"ipc": args.ipc, "width": RFAD_LOOP["width"], "step_seconds": step, "valid_512_seconds": valid,
           "threads": torch.get_num_threads(), "device": "cpu", "f0_outputs_kept": True,
           "least_run_seconds": RFAD_LOOP["patience"] * step + (checks + 1 + 2 * 2) * valid * 5000 / 512}
    write_json(OUT / f"rfad-cpu-cost-ipc{args.ipc}.json", res, force=True)
    print(json.dumps(res, indent=1))


def _cell(method, ipc, name):
    p = OUT / "cells" / f"{method}-ipc{ipc}-{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _acc(c, reference: str | None = None):
    """A cell's accuracy; a dagger when it scored other images than ``reference`` (a hard digest)."""
    if c is None:
        return "—"
    remade = reference is not None and c.get("hard_digest") not in (None, reference)
    return f"{100 * c['accuracy_mean']:.2f}" + (f" ± {100 * c['accuracy_std']:.2f}" if c["runs"] > 1 else "") + \
        f" ({c['runs']})" + (" †" if remade else "")


def cmd_table(args):
    reals = sorted((OUT / "cells").glob("real-hard-e*.json"))
    real = json.loads(reals[-1].read_text()) if reals else None
    ipcs = sorted({int(p.stem.split("-ipc")[1].split("-")[0]) for p in (OUT / "cells").glob("*-ipc*-*.json")})
    names = ["mgdd", "dc", "dsa", "rfad", AUG]
    lines = ["# Every method under every protocol (Fashion-MNIST, seed-0 sets)", "",
             "Made by `python benchmarks/protocols.py run|real|table` (see its docstring); cells in `cells/`.",
             "Accuracy % as mean ± std (runs). mgdd: the set's own labels, soft by cross-entropy at T = 0.25; "
             "dc: hard labels, 300 epochs; dsa: hard labels, DSA augmentation, 1000 epochs; rfad: RFAD's "
             "finite-network evaluation (mgdd/protocols.py); mgdd-aug: the mgdd protocol (the set's own labels) "
             "with DSA augmentation, 1000 epochs (the augmented length; the bench's -aug cells keep 300), so "
             "ARS here reads augmentation and the longer training together. A cell whose JSON has `same_evaluation_as` is the "
             "very computation of the cell it names (a hard-labelled set under mgdd and dc, or random and "
             "random+ls under dc or dsa: the same images, classes, network and seeds), copied, not rerun.", ""]
    if real is not None:
        lines += [f"Acc(real, hard) = {100 * real['accuracy_mean']:.2f}: ConvNet-3 on the whole training split, hard "
                  f"labels, {real['epochs']} epochs (`{reals[-1].name}`; the dc protocol's 300 epochs did not fit "
                  "2 CPU cores), used for HLR and LRS.", ""]
    marked = False  # some cell scored other images than its row: the table gets the † footnote
    for ipc in ipcs:
        lines += [f"## IPC {ipc}", "",
                  "| method | " + " | ".join(names) + " | HLR | IOR | LRS | ARS |", "|---" * (len(names) + 5) + "|"]
        for method in METHODS:
            cells = {n: _cell(method, ipc, n) for n in names}
            if not any(cells.values()):
                continue
            hlr = ior = lrs = ars = "—"
            subset = "random" if method == "random" else "random+ls"
            rdm, rdm_aug = _cell(subset, ipc, "mgdd"), _cell(subset, ipc, AUG)
            if cells["mgdd"] and cells["dc"] and rdm and real:
                other = {}
                if cells[AUG] and rdm_aug:
                    other = {"syn_other": cells[AUG]["accuracy_mean"], "rdm_other": rdm_aug["accuracy_mean"]}
                s = robust_scores(cells["mgdd"]["accuracy_mean"], rdm["accuracy_mean"], cells["dc"]["accuracy_mean"],
                                  real["accuracy_mean"], **other)
                hlr, ior, lrs = f"{100 * s['hlr']:.2f}", f"{100 * s['ior']:.2f}", f"{s['lrs']:.2f}"
                ars = f"{s['ars']:.2f}" if "ars" in s else "—"
            # the images of the first cell that records them, in column order: a cell on other images is marked
            reference = next((c["hard_digest"] for c in cells.values() if c and c.get("hard_digest")), None)
            accs = [_acc(cells[n], reference) for n in names]
            marked = marked or any(a.endswith("†") for a in accs)
            lines.append(f"| {method} | " + " | ".join(accs)
                         + f" | {hlr} | {ior} | {lrs} | {ars} |")
        lines.append("")
    lines += ["HLR = Acc(real, hard) − Acc(set, hard) (the dc column; lower is better). IOR = Acc(set, its labels) − "
              "Acc(random subset, the same labels) under the mgdd protocol: random+ls for sets with least-squares "
              "labels, random for the hard-label random set (its IOR is 0 by definition). LRS = 100 (e^α − e^−1) / "
              "(e − e^−1), α = (IOR − HLR) / 2. ARS = 100 (e^β − e^−1) / (e − e^−1), β = (IOR with DSA + IOR "
              "without) / 2, IOR with DSA read from the mgdd-aug column the same way (DD-Ranking, arXiv 2505.13300; "
              "mgdd/scores.py). 26.89 is the score of IOR = HLR = 0 (β = 0): the random set's ARS by definition.", ""]
    if marked:
        lines += ["† Scored other images than the row's first cell that records them (`hard_digest` in the cell): "
                  "the same method and seed, remade on another machine or in another checkout (the sets in "
                  "runs/protocols/sets are git-ignored). Random sets and coresets remake the very same images; "
                  "the generator's and krr-pixel's images move with the recomputed feature moments, the thread "
                  "count and the device, so such a cell compares with its row only up to that change.", ""]
    (OUT / "table.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--ipcs", type=lambda t: [int(i) for i in t.split(",")], default=[1])
    r.add_argument("--runs", type=int, default=1)
    r.add_argument("--protocols", default="mgdd,dc,dsa")
    r.add_argument("--methods", default=",".join(METHODS))
    r.set_defaults(func=cmd_run)
    m = sub.add_parser("sets")
    m.add_argument("--ipcs", type=lambda t: [int(i) for i in t.split(",")], default=[1, 10, 50])
    m.add_argument("--methods", default=",".join(METHODS))
    m.set_defaults(func=cmd_sets)
    q = sub.add_parser("real")
    q.add_argument("--epochs", type=int, default=10)
    q.set_defaults(func=cmd_real)
    c = sub.add_parser("cost")
    c.add_argument("--ipc", type=int, default=1)
    c.set_defaults(func=cmd_cost)
    t = sub.add_parser("table")
    t.set_defaults(func=cmd_table)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
