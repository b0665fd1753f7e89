"""A coreset chosen on the objective itself: real images swapped in on the KRR loss (issue #39,
"a better start"). An experiment on the public API; docs/experiments.md, "A coreset picked on the
loss itself", has its measurements.

Herding picks, in pool network 0's feature space, the images whose running mean tracks the
class's feature mean; it never reads the loss the generator and krr-pixel minimise. This starts
from the herding coreset and sweeps over its slots, class-major, setting each slot to the
candidate of its class with the lowest mean loss over the pool's P networks, the other slots held:

    x_slot = argmin_j (1/P) sum_i L_i(S with x_j in the slot),
    L_i(S) = ||A Y* - Y_b||^2 / n,  A = K_bS (K_SS + lam' I)^-1,  Y* = argmin_Y ||A Y - Y_b||^2 + mu' ||Y||^2

over the real data b, from network i's cached full-data moments (krr.krr_loss_moments). Candidates of a class: herding's first ORDER_LENGTH
picks, ``candidates`` seeded random images and the image already there; their features are
computed once per network, and every trial set is scored from blocks of F F^T, F G F^T and F H
(SetLosses), a batch of M x M solves and no network pass. Not nested by default (the IPC-10 picks
need not contain the IPC-1 ones); ``nested=True`` goes level by level, so the first k picks of a
class are its IPC-k set. Cubic in M: minutes at IPC 10, hours at IPC 50 on 2 cores.

    python experiments/generator_view.py --ipcs 1 --runs 3 --rows greedy+ls-w2,shipped@greedy-w2
    python experiments/generator_view.py --ipcs 10 --runs 1 --rows greedy+ls-nw2,shipped@greedy-nw2   # nested
    python experiments/greedy_start.py --ipcs 1 --sweeps 2      # the mean pool losses beside herding's
    python experiments/greedy_start.py --orders 50              # the product's orders (mgdd/greedy.py), timed
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

import mgdd
from mgdd.distilled import distilled_meta
from mgdd.features import features
from mgdd.generate import default_guide_nets, default_passes, synthesize
from mgdd.greedy import CANDIDATES, candidate_pool
from mgdd.start import ORDER_LENGTH, class_order


class SetLosses:
    """The loss of many candidate sets at once, for one network, from the candidates' features.

    With F the features of every candidate image (rows), K = F F^T, P = F G F^T and F H are
    computed once; a set S (rows of F) then needs only their S x S and S x C blocks. Its loss is
    krr.krr_loss_moments' dual form, batched over sets: R = K_SS + lam' I (lam' = lam mean diag
    K_SS), A^T A = R^-1 P_SS R^-1, A^T Y = R^-1 (F H)_S, Y* = (A^T A + mu' I)^-1 A^T Y
    (mu' = mu mean diag A^T A), L = (<Y*, A^T A Y*> - 2 <Y*, A^T Y> + yy) / n.
    """

    def __init__(self, f: torch.Tensor, moments: tuple, lam: float, mu: float):
        gram, cross, self.yy, self.n = moments
        f = f.double()
        self.k, self.p, self.fh = f @ f.T, f @ gram.double() @ f.T, f @ cross.double()
        self.lam, self.mu = lam, mu

    def __call__(self, sets: torch.Tensor) -> torch.Tensor:
        """Losses (B,) of the sets (B, M) of row indices."""
        sets = sets.to(self.k.device)
        i, j = sets[:, :, None], sets[:, None, :]
        k, p, h = self.k[i, j], self.p[i, j], self.fh[sets]
        eye = torch.eye(sets.shape[1], dtype=k.dtype, device=k.device)
        r = k + self.lam * k.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * eye
        ata = torch.linalg.solve(r, torch.linalg.solve(r, p).transpose(1, 2))
        ata = (ata + ata.transpose(1, 2)) / 2
        aty = torch.linalg.solve(r, h)
        y = torch.linalg.solve(ata + self.mu * ata.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * eye, aty)
        return ((y * (ata @ y)).sum((1, 2)) - 2 * (y * aty).sum((1, 2)) + self.yy) / self.n


def greedy_indices(objective, ipc: int, candidates: int = CANDIDATES, sweeps: int = 1, seed: int = 0,
                   nested: bool = False) -> list:
    """Per class, the training-set indices of ``ipc`` real images: the herding coreset, then
    ``sweeps`` sweeps of swaps, slot by slot, each to the candidate (or the image already there)
    with the lowest mean pool loss. Candidates of a class: herding's first ORDER_LENGTH picks and
    ``candidates`` seeded random images.

    nested: level by level instead, so the first k picks of a class are its IPC-k set: level k
    adds to each class the first herding pick it does not hold yet, then sweeps over the level-k
    slots only (the first k - 1 held), scoring sets of k images a class."""
    ds = objective.dataset
    k_cls = ds.num_classes
    order = [class_order(objective, c, max(ipc, ORDER_LENGTH), "herding") for c in range(k_cls)]
    cand = candidate_pool(objective, order, candidates, seed)
    flat = torch.cat(cand)
    x = ds.train_x[flat].float().to(objective.device)
    with torch.no_grad():
        scorers = [SetLosses(features(net, x), m.for_classes(None), objective.lam_for(ipc * k_cls), objective.mu)
                   for net, m in zip(objective.pool.nets, objective.moments)]
    pos = {int(i): r for r, i in enumerate(flat)}
    offsets = [0]
    for c in cand:
        offsets.append(offsets[-1] + len(c))

    def sweep(per_class: list, slots) -> None:
        """Each (class, level) slot in turn to its best option, the rest held (in place)."""
        for c, level in slots:
            rows = torch.tensor([r for p in per_class for r in p])   # class-major, as the set is laid out
            slot = sum(len(p) for p in per_class[:c]) + level
            held = set(rows.tolist()) - {int(rows[slot])}
            options = torch.tensor([j for j in range(offsets[c], offsets[c + 1]) if j not in held])
            trials = rows.repeat(len(options), 1)
            trials[:, slot] = options     # the image already there is one of the options
            losses = sum(s(trials) for s in scorers) / len(scorers)
            per_class[c][level] = int(options[int(losses.argmin().item())])

    if not nested:
        per_class = [[pos[int(i)] for i in order[c][:ipc]] for c in range(k_cls)]
        for _ in range(sweeps):
            sweep(per_class, [(c, level) for c in range(k_cls) for level in range(ipc)])
    else:
        per_class = [[] for _ in range(k_cls)]
        for level in range(ipc):
            for c in range(k_cls):
                per_class[c].append(next(pos[int(i)] for i in order[c] if pos[int(i)] not in per_class[c]))
            for s in scorers:
                s.lam = objective.lam_for((level + 1) * k_cls)
            for _ in range(sweeps):
                sweep(per_class, [(c, level) for c in range(k_cls)])
    return [flat[torch.tensor(p)].tolist() for p in per_class]


def greedy_ls(objective, ipc: int, candidates: int = CANDIDATES, sweeps: int = 1, seed: int = 0,
              nested: bool = False) -> mgdd.DistilledSet:
    """The greedy coreset with least-squares labels, in mgdd's class-major layout."""
    t0 = time.perf_counter()
    per_class = greedy_indices(objective, ipc, candidates, sweeps, seed, nested)
    seconds = time.perf_counter() - t0
    x = objective.dataset.train_x[torch.tensor([i for p in per_class for i in p])].float()
    t0 = time.perf_counter()
    labels = objective.labels(x)
    meta = distilled_meta(objective.dataset, ipc, "greedy+ls", seed, objective,
                          {"seconds": seconds, "label_seconds": time.perf_counter() - t0},
                          start="greedy", candidates=candidates, sweeps=sweeps, nested=nested)
    return mgdd.DistilledSet(x, labels, meta, objective.dataset.zca)


def generated_from_greedy(generator, objective, ipc: int, sweeps: int = 1, nested: bool = False) -> mgdd.DistilledSet:
    """The generator's passes from the greedy coreset in place of its herding start (the same
    weights, passes and guide; mgdd.generate's steps with X_0 swapped), then the label solve."""
    t0 = time.perf_counter()
    per_class = greedy_indices(objective, ipc, sweeps=sweeps, nested=nested)
    idx = torch.tensor([i for p in per_class for i in p])
    x0, y0 = objective.dataset.train_x[idx].clone().float(), objective.dataset.train_y[idx].clone()
    x_s = synthesize(generator, objective, x0, y0, objective.dataset.num_classes, chunk=256,
                     passes=default_passes(generator), guide_nets=default_guide_nets(generator)).float().cpu()
    t1 = time.perf_counter()
    labels = objective.labels(x_s)
    meta = distilled_meta(objective.dataset, ipc, "mgdd", 0, objective,
                          {"generate_seconds": t1 - t0, "label_seconds": time.perf_counter() - t1},
                          start=f"greedy-{'n' if nested else ''}w{sweeps}", passes=default_passes(generator))
    return mgdd.DistilledSet(x_s, labels, meta, objective.dataset.zca)


def mean_loss(objective, x) -> float:
    """The mean pool loss of a set's images over every pool network."""
    with torch.no_grad():
        return sum(objective.pool_loss(x, i).item() for i in range(objective.pool.size)) / objective.pool.size


def time_orders(objective, length: int, out: str) -> None:
    """The product's greedy orders (mgdd/greedy.py) to ``length`` levels from scratch (no cache):
    the mean pool loss and the cumulative seconds at every level, as JSON in ``out``."""
    import io
    import json
    import platform
    from contextlib import redirect_stdout

    from mgdd.greedy import greedy_orders
    buf = io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(buf):
        greedy_orders(objective, length, [class_order(objective, c, max(length, ORDER_LENGTH), "herding")
                                          for c in range(objective.dataset.num_classes)], progress=True)
    total = time.perf_counter() - t0
    levels = []
    for line in buf.getvalue().splitlines():  # "greedy start: level k/L, loss X, T s"
        k, loss, sec = line.split("level ")[1].split("/")[0], line.split("loss ")[1].split(",")[0], line.split(", ")[-1]
        levels.append({"level": int(k), "loss": float(loss), "seconds": float(sec.rstrip(" s"))})
    record = {"dataset": objective.dataset.name, "length": length, "total_seconds": round(total, 1),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}",
              "note": "seconds count the levels only; total_seconds adds the candidates' features", "levels": levels}
    Path(out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "levels"}))


def main():
    import argparse
    import json
    p = argparse.ArgumentParser()
    p.add_argument("--ipcs", default="1,10")
    p.add_argument("--sweeps", type=int, default=1)
    p.add_argument("--orders", type=int, default=None, metavar="L",
                   help="time the product's greedy orders (mgdd/greedy.py) to L levels instead, into --out")
    p.add_argument("--out", default="results/generator-view/greedy-orders.json")
    args = p.parse_args()
    dataset = mgdd.load_dataset("fashion-mnist")
    objective = mgdd.KRRObjective(dataset)
    if args.orders:
        return time_orders(objective, args.orders, args.out)
    for ipc in [int(i) for i in args.ipcs.split(",")]:
        t0 = time.perf_counter()
        g = greedy_ls(objective, ipc, sweeps=args.sweeps)
        seconds = time.perf_counter() - t0
        h = mgdd.coreset(objective, ipc, "herding", soft_labels=True)
        r = mgdd.random_ls(objective, ipc)
        k = mgdd.krr_pixel(objective, ipc, steps=25, init="herding", progress=False)
        same = sum(int(a == b) for a, b in zip(g.images.flatten(1).tolist(), h.images.flatten(1).tolist()))
        print(json.dumps({"ipc": ipc, "sweeps": args.sweeps, "greedy_seconds": round(seconds, 1),
                          "images_kept_from_herding": f"{same}/{len(h.images)}",
                          "loss": {"random+ls": mean_loss(objective, r.images), "herding+ls": mean_loss(objective, h.images),
                                   "greedy+ls": mean_loss(objective, g.images),
                                   "krr-pixel@herding-s25": mean_loss(objective, k.images)}}), flush=True)


if __name__ == "__main__":
    main()
