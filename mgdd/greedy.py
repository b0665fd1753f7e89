"""The greedy start: real images picked on the KRR loss itself, level by level (issue #39).

    x0, y0 = start_set(objective, 10, "greedy")      # start.py: the orders, computed once and cached
    orders = greedy_orders(objective, 10, herding)   # {class: training indices}, nested (no cache)

Herding (start.py) picks the images whose running feature mean tracks the class mean in pool
network 0; it never reads the loss that the generator and krr-pixel minimise. This picks on that
loss, the mean over the pool's P networks of

    L_i(S) = ||A Y* - Y_b||^2 / n,  A = K_bS (K_SS + lam' I)^-1,  Y* = argmin_Y ||A Y - Y_b||^2 + mu' ||Y||^2

over the real data b (krr.krr_loss_moments, from network i's cached full-data moments). Level k
(k = 1 .. length) adds to every class the first herding pick it does not hold, then sweeps (at
most ``sweeps`` times, stopping early when a sweep changes nothing) over the level-k slots, class
by class, setting each slot to the candidate of its class with the lowest mean loss, the other
slots held. The first k - 1 picks of a class are never moved at level k, so the first k picks are
the IPC-k set: one order serves every size up to ``length``, and a longer order continues a
shorter one. Candidates of a class: its herding picks (start.py passes the first
max(length, ORDER_LENGTH)) and ``candidates`` seeded random images of the class.

Scoring a slot (SwapScan) is the dual form in the set's M x M space, with every candidate at once
and no network pass (the candidates' features are computed once). For the set S held, with
R = K_SS + lam' I, G = R^-1, B = A^T A = G P G (P = F_S Gram F_S^T), c = A^T Y_b = G F_S H and
Mi = (B + mu' I)^-1 factorised once, putting candidate j in slot s changes R and P by symmetric
rank-two terms (row and column s):

    R' = R + U C U^T,  U = [e_s, d],  C = [[-d_s, 1], [1, 0]],  d = R'[:, s] - R[:, s]
    G' = G - W S W^T,  W = G U,  S = C (I + U^T G U C)^-1                       (Woodbury)
    B' = G' P' G' = B + V E V^T,  V = [G U_p, W, Q] (M x 6),  Q = G P' G U
    Y* = (B' + mu' I)^-1 c' = Mi c' - Mi V E (I + V^T Mi V E)^-1 V^T Mi c'
    L  = (yy - <Y*, c'> - mu' ||Y*||^2) / n            (as (B' + mu' I) Y* = c')

with V and E replaced by Z and T E T^T (V = Z T, Z orthonormal): V's columns differ in scale by
orders of magnitude and repeat G e_s, and the capacitance I + V^T Mi V E is well conditioned only
in such a basis. A candidate costs a few M x M products instead of five M x M solves. The ridge scales lam'
(lam * mean diag K_SS) and mu' (mu * mean diag B) are the held set's during a scan; the winner is
then scored exactly, at its own scales, and kept only when its loss is lower, so the exact mean
loss never rises. Cost per network and slot: O(M^3) per kept swap, O(M^2) per candidate, the
products by the held M x M matrices done as single GEMMs over every candidate (``_left``; 4x / 7x
faster than broadcast batched products at M = 500 / 1,000, benchmarks/greedy_scan.py). On
Fashion-MNIST, one thread of 2 shared cores: 13 s to IPC 10, 318 s to IPC 50
(results/generator-view/greedy-orders.json); levels 59-100 took 23 min more (greedy-orders-100.json).
"""

from __future__ import annotations

import time

import torch

from .errors import UsageError
from .memory import check_fits

CANDIDATES = 128  # seeded random candidates a class, beside herding's first picks
SWEEPS = 2        # at most this many sweeps of swaps a level


def _sym(a: torch.Tensor) -> torch.Tensor:
    return (a + a.transpose(-1, -2)) / 2


def _left(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """a @ v[o] for every o, for a (M, M) and v (O, M, k), as one (M, M) x (M, O k) product: a
    broadcast matmul would copy a into O batched thin products, several times slower."""
    o, m, k = v.shape
    return (a @ v.transpose(0, 1).reshape(m, o * k)).reshape(m, o, k).transpose(0, 1)


def _inverse_spd(a: torch.Tensor) -> torch.Tensor:
    return _sym(torch.cholesky_inverse(torch.linalg.cholesky(_sym(a))))


class SwapScan:
    """One network's loss of a set of candidate rows, and of that set with one slot swapped to
    each of many candidates at once (the module docstring has the equations).

    f: the candidates' features (N, d); moments: (Gram, H, yy, n) over the real data."""

    def __init__(self, f: torch.Tensor, moments: tuple, mu: float):
        gram, cross, yy, n = moments
        self.f = f.double()
        self.fg = self.f @ gram.to(self.f)          # F Gram, so P's blocks are F_a Gram F_b^T
        self.fh = self.f @ cross.to(self.f)         # F H (N, C)
        self.yy, self.n, self.mu = float(yy), float(n), mu

    def hold(self, rows: torch.Tensor, lam: float) -> float:
        """Factorise the set ``rows`` (M,) at its own scales; returns its exact loss. A set that
        differs from the held one in one slot (a trial swap) updates K_SS and P's row and column
        instead of recomputing them (O(M d) instead of O(M^2 d)); the factorisations are always
        made again, at the new set's own ridge scales."""
        fs = self.f[rows]
        held = getattr(self, "rows", None)
        diff = (rows != held).nonzero() if held is not None and held.shape == rows.shape else None
        if diff is not None and len(diff) == 1:
            s = int(diff[0])
            k, p = self.k.clone(), self.p.clone()
            k_s, p_s = fs @ self.f[rows[s]], fs @ self.fg[rows[s]]
            k[s], k[:, s], p[s], p[:, s] = k_s, k_s, p_s, p_s
        else:
            k = fs @ fs.T
            p = _sym(self.fg[rows] @ fs.T)
        eye = torch.eye(len(rows), dtype=k.dtype, device=k.device)
        self.lam_abs = lam * float(k.diagonal().mean())
        g = _inverse_spd(k + self.lam_abs * eye)
        b = _sym(g @ p @ g)
        self.mu_abs = self.mu * float(b.diagonal().mean())
        mi = _inverse_spd(b + self.mu_abs * eye)
        c = g @ self.fh[rows]
        self.rows, self.k, self.p, self.g, self.b, self.mi, self.c = rows, k, p, g, b, mi, c
        self.mc = mi @ c
        self.loss = (self.yy - float((self.mc * c).sum()) - self.mu_abs * float((self.mc ** 2).sum())) / self.n
        return self.loss

    def scan(self, slot: int, options: torch.Tensor) -> torch.Tensor:
        """Losses (O,) of the held set with ``slot`` set to each of ``options`` (O,), at the held
        set's ridge scales; an option already in the slot scores the held loss."""
        s, rows, g, b, mi = slot, self.rows, self.g, self.b, self.mi
        fo = self.f[options]
        d = fo @ self.f[rows].T                                  # K'[:, s] for each option
        d[:, s] = (fo * fo).sum(1)
        d = d - self.k[s]
        pi = self.fg[options] @ self.f[rows].T
        pi[:, s] = (self.fg[options] * fo).sum(1)
        pi = pi - self.p[s]
        dh = self.fh[options] - self.fh[rows[s]]                 # (O, C)
        o = len(options)
        one = torch.ones(o, dtype=d.dtype, device=d.device)

        def pair(a, b_, c_, d_):                                 # (O, 2, 2) from four (O,) entries
            return torch.stack([torch.stack([a, b_], -1), torch.stack([c_, d_], -1)], -2)

        ge = g[:, s].expand(o, -1)                               # G e_s
        gd, gp, bd = d @ g, pi @ g, d @ b                        # G d, G pi, B d (G, B symmetric)
        w = torch.stack([ge, gd], -1)                            # W = G U (O, M, 2)
        wp = torch.stack([ge, gp], -1)                           # G U_p
        c_r = pair(-d[:, s], one, one, 0 * one)
        c_p = pair(-pi[:, s], one, one, 0 * one)
        x = pair(g[s, s] * one, gd[:, s], gd[:, s], (d * gd).sum(1))        # U^T G U
        eye2 = torch.eye(2, dtype=d.dtype, device=d.device)
        s2 = _sym(c_r @ torch.linalg.inv(eye2 + x @ c_r))
        wtu = pair(g[s, s] * one, gd[:, s], gp[:, s], (gp * d).sum(1))      # W_p^T U = U_p^T G U
        q = torch.stack([b[:, s].expand(o, -1), bd], -1) + wp @ c_p @ wtu   # G P' G U
        z = pair(b[s, s] * one, bd[:, s], bd[:, s], (d * bd).sum(1)) + wtu.transpose(1, 2) @ c_p @ wtu
        v = torch.cat([wp, w, q], -1)                            # (O, M, 6)
        e = torch.zeros(o, 6, 6, dtype=d.dtype, device=d.device)
        e[:, :2, :2], e[:, 2:4, 2:4] = c_p, s2 @ z @ s2
        e[:, 2:4, 4:], e[:, 4:, 2:4] = -s2, -s2
        # B' - B = V E V^T in an orthonormal basis of V's columns (V E V^T = Q (R E R^T) Q^T): V's
        # columns differ in scale by orders of magnitude and repeat G e_s, and the Woodbury
        # capacitance below is well conditioned only in such a basis
        v, r = torch.linalg.qr(v)
        e = r @ e @ r.transpose(1, 2)
        mv = _left(mi, v)                                        # Mi V
        wth = torch.stack([self.c[s] + g[s, s] * dh, d @ self.c + gd[:, s, None] * dh], 1)  # W^T h' (O, 2, C)
        cp = self.c + ge[:, :, None] * dh[:, None, :] - w @ (s2 @ wth)      # c' = G' h'
        mcp = self.mc + (mi @ g[:, s])[None, :, None] * dh[:, None, :] - _left(mi, w) @ (s2 @ wth)
        inner = torch.eye(e.shape[-1], dtype=d.dtype, device=d.device) + v.transpose(1, 2) @ mv @ e
        y = mcp - mv @ (e @ torch.linalg.solve(inner, mv.transpose(1, 2) @ cp))
        return (self.yy - (y * cp).sum((1, 2)) - self.mu_abs * (y * y).sum((1, 2))) / self.n


def order_key(objective, candidates: int = CANDIDATES, sweeps: int = SWEEPS, seed: int = 0) -> str:
    """What a greedy order depends on beyond the moments' cache key (data, features, pool seed)."""
    return f"greedy-l{objective.lam:g}-m{objective.mu:g}-{objective.ridge}-c{candidates}-w{sweeps}-s{seed}"


def candidate_pool(objective, herding: list, candidates: int = CANDIDATES, seed: int = 0) -> list:
    """Per class, the training-set indices a slot may take (sorted): the class's herding picks
    ``herding[c]`` and ``candidates`` seeded random images of the class."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c, idx in enumerate(objective.class_index):
        out.append(torch.cat([herding[c], idx[torch.randperm(len(idx), generator=g)[:candidates]]]).unique())
    return out


def greedy_orders(objective, length: int, herding: list, candidates: int = CANDIDATES, sweeps: int = SWEEPS,
                  seed: int = 0, prefix: dict | None = None, progress: bool = False, on_level=None) -> dict:
    """{class: training-set indices of its first ``length`` greedy picks} for every class, nested
    (module docstring). ``herding[c]``: class c's herding order, at least ``length`` picks (each
    level adds the next one; all are candidates). ``prefix``: orders already computed by the same
    settings, continued. ``on_level(orders, seconds)``, when given, is called after every level with
    the orders so far and the seconds since the call began (start.py saves them: a long search
    resumes from its last level)."""
    from .features import features

    if sweeps < 1 or candidates < 0:
        raise UsageError(f"greedy orders need sweeps >= 1 and candidates >= 0 (got {sweeps}, {candidates}).")
    ds, k_cls, pool = objective.dataset, objective.dataset.num_classes, objective.pool
    cand = candidate_pool(objective, herding, candidates, seed)
    flat = torch.cat(cand)
    n_feat, m = len(flat), length * k_cls
    # per network: F and F Gram (N x d, float64), then per slot M x M blocks and O x M x 6 pieces
    check_fits(8 * (2 * n_feat * pool.dim * pool.size + 8 * m * m + 30 * max(len(c) for c in cand) * m),
               f"the greedy start at IPC {length} ({n_feat} candidate images, {pool.size} networks)",
               "use a smaller IPC or another start (--start herding)")
    with torch.no_grad():
        x = ds.train_x[flat].float()
        scans = []
        for net, mom in zip(pool.nets, objective.moments):
            f = torch.cat([features(net, x[i:i + 1024].to(objective.device)) for i in range(0, len(x), 1024)])
            scans.append(SwapScan(f, mom.for_classes(None), objective.mu))
    pos = {int(i): r for r, i in enumerate(flat)}
    offsets = [0]
    for c in cand:
        offsets.append(offsets[-1] + len(c))
    per_class = [[pos[int(i)] for i in (prefix or {}).get(c, [])] for c in range(k_cls)]
    start_level = min(len(p) for p in per_class)
    per_class = [p[:start_level] for p in per_class]
    t0 = time.perf_counter()
    for level in range(start_level, length):
        lam = objective.lam_for((level + 1) * k_cls)
        for c in range(k_cls):
            per_class[c].append(next(pos[int(i)] for i in herding[c] if pos[int(i)] not in per_class[c]))
        rows = torch.tensor([r for p in per_class for r in p], device=scans[0].f.device)
        held_loss = sum(sc.hold(rows, lam) for sc in scans) / len(scans)
        for _ in range(sweeps):
            changed = False
            for c in range(k_cls):
                slot = c * (level + 1) + level
                held = set(per_class[c][:level])
                options = torch.tensor([j for j in range(offsets[c], offsets[c + 1]) if j not in held],
                                       device=rows.device)
                with torch.no_grad():
                    losses = sum(sc.scan(slot, options) for sc in scans) / len(scans)
                best = int(options[int(losses.argmin())])
                if best == int(rows[slot]):
                    continue
                trial = rows.clone()
                trial[slot] = best
                kept = [dict(sc.__dict__) for sc in scans]     # the held factorisations, restored on a rejection
                trial_loss = sum(sc.hold(trial, lam) for sc in scans) / len(scans)
                if trial_loss < held_loss:
                    rows, held_loss, changed = trial, trial_loss, True
                    per_class[c][level] = best
                else:
                    for sc, state in zip(scans, kept):
                        sc.__dict__.update(state)
            if not changed:
                break
        if progress:
            print(f"greedy start: level {level + 1}/{length}, loss {held_loss:.4f}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        if on_level is not None:
            on_level(_orders(flat, per_class), time.perf_counter() - t0)
    return _orders(flat, per_class)


def _orders(flat: torch.Tensor, per_class: list) -> dict:
    return {c: flat[torch.tensor(p, dtype=torch.long)] for c, p in enumerate(per_class)}
