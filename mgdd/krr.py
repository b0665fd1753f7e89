"""The objective: kernel ridge regression from synthetic to real data, least-squares labels.

For synthetic features F_s (M x d) and real features F_b (B x d) with centred one-hot
labels Y_b (B x C):

    K_ss = F_s F_s^T,  R = K_ss + lam * mean(diag K_ss) * I
    A    = F_b F_s^T R^-1                                   (B x M) KRR predictor
    Y_s* = (A^T A + mu * mean(diag A^T A) * I)^-1 A^T Y_b   (M x C) least-squares labels
    L    = ||A Y_s* - Y_b||^2 / B

Both regularisers are relative to a trace, so lam and mu mean the same at any M or B.
A^T A and A^T Y_b only need the real data through G = F_b^T F_b (d x d) and
H = F_b^T Y_b (d x C):

    A^T A = R^-1 F_s G F_s^T R^-1,   A^T Y_b = R^-1 F_s H,   ||A Y||^2 = tr(Y^T A^T A Y)

so the loss over the *whole* training set never touches a real image, and the normal
equations add up over chunks of real data and over several feature networks (stack the
rows of A for each network: sum their A^T A and A^T Y). Everything is solved in float64.

Two spaces, one answer (as scikit-learn's ridge picks primal or dual). Every M x M system
above has rank at most d, so when M > d it is solved in d x d instead, by the push-through
identity (F F^T + r I_M)^-1 F = F (F^T F + r I_d)^-1, applied twice:

    L = R^-1 F_s = F_s (F_s^T F_s + r I_d)^-1                     (M x d)
    A^T A = L G L^T,  A^T Y_b = L H,   P = L^T L                    (d x d)
    Y_s* = (L G L^T + rho I_M)^-1 L H = L (G P + rho I_d)^-1 H = L Z
    ||A Y_s* - Y_b||^2 = tr((PZ)^T G (PZ)) - 2 tr((PZ)^T H) + ||Y_b||^2

so a step costs O(M d^2) instead of O(M^3). ``space="auto"`` picks the smaller; tests hold
each path to the other. The joint label solve over P networks has rank <= P d and is
solved in that space when M exceeds it.
"""

from __future__ import annotations

import warnings

import torch

from .errors import UsageError, check_range


def centered_onehot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) int -> (N, C) float64 with 1 - 1/C on the class and -1/C elsewhere."""
    out = torch.full((len(y), num_classes), -1.0 / num_classes, dtype=torch.float64)
    out[torch.arange(len(y)), y] += 1.0
    return out


def _check_reg(lam: float, mu: float) -> None:
    check_range("lam", lam, 0, low_open=True)
    check_range("mu", mu, 0, low_open=True)


def regularized_gram(f_s: torch.Tensor, lam: float) -> torch.Tensor:
    k_ss = f_s @ f_s.T
    ridge = lam * k_ss.diagonal().mean().clamp_min(1e-12)
    return k_ss + ridge * torch.eye(len(f_s), dtype=k_ss.dtype, device=k_ss.device)


def krr_predictor(f_s: torch.Tensor, f_b: torch.Tensor, lam: float) -> torch.Tensor:
    """A = K_bs (K_ss + lam * mean diag * I)^-1, (B x M), float64."""
    check_range("lam", lam, 0, low_open=True)
    f_s, f_b = f_s.double(), f_b.double()
    r = regularized_gram(f_s, lam)
    return torch.linalg.solve(r, f_s @ f_b.T).T  # R symmetric: (R^-1 K_sb)^T = K_bs R^-1


def solve_normal(ata: torch.Tensor, aty: torch.Tensor, mu: float) -> torch.Tensor:
    """Y = (A^T A + mu * mean(diag A^T A) * I)^-1 A^T Y via Cholesky; lstsq if that fails."""
    check_range("mu", mu, 0, low_open=True)
    m = ata.shape[0]
    ridge = mu * ata.diagonal().mean().clamp_min(1e-30)
    lhs = ata + ridge * torch.eye(m, dtype=ata.dtype, device=ata.device)
    lhs = (lhs + lhs.T) / 2
    if not bool(torch.isfinite(lhs).all() and torch.isfinite(aty).all()):
        # NaN/inf images or features: propagate NaN so the caller reports the failing step
        return torch.full_like(aty, float("nan")) + 0 * aty.sum() + 0 * lhs.sum()
    chol, info = torch.linalg.cholesky_ex(lhs)
    if int(info) == 0:
        return torch.cholesky_solve(aty, chol)
    warnings.warn("least-squares label system is ill-conditioned; falling back to lstsq", RuntimeWarning)
    return torch.linalg.lstsq(lhs, aty).solution


def solve_labels(a: torch.Tensor, y_b: torch.Tensor, mu: float) -> torch.Tensor:
    """Y_s* = argmin ||A Y - Y_b||^2 + mu' ||Y||^2 (mu' = mu * mean diag A^T A)."""
    a, y_b = a.double(), y_b.double()
    return solve_normal(a.T @ a, a.T @ y_b, mu)


def krr_loss(f_s, f_b, y_b, lam: float, mu: float, f_label=None, y_label=None) -> tuple:
    """Mini-batch loss. Labels are solved on (f_label, y_label) if given, else on (f_b, y_b).

    Solving and measuring on different real batches avoids the label fit collapsing the
    loss when M is close to B (docs/design.md §2). Returns (L, Y_s*).
    """
    _check_reg(lam, mu)
    a = krr_predictor(f_s, f_b, lam)
    if f_label is None:
        y_s = solve_labels(a, y_b, mu)
    else:
        y_s = solve_labels(krr_predictor(f_s, f_label, lam), y_label, mu)
    loss = ((a @ y_s - y_b.double()) ** 2).sum() / len(f_b)
    return loss, y_s


def normal_equations(f_s: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor, lam: float) -> tuple:
    """(A^T A, A^T Y) from real-data moments G = F_b^T F_b and H = F_b^T Y_b."""
    f_s = f_s.double()
    r = regularized_gram(f_s, lam)
    left = torch.linalg.solve(r, f_s)              # R^-1 F_s            (M x d)
    ata = left @ gram.to(left) @ left.T            # R^-1 F_s G F_s^T R^-1
    aty = left @ cross.to(left)                    # R^-1 F_s H
    return (ata + ata.T) / 2, aty


def moment_loss(ata: torch.Tensor, aty: torch.Tensor, yy: float, n: int, y_s: torch.Tensor) -> torch.Tensor:
    """||A Y_s - Y_b||^2 / n from the normal equations."""
    return (torch.sum(y_s * (ata @ y_s)) - 2 * torch.sum(y_s * aty) + yy) / n


def pick_space(m: int, rank: int, space: str = "auto") -> str:
    """'dual' (M x M systems) or 'primal' (rank x rank): the smaller, unless forced."""
    if space not in ("auto", "dual", "primal"):
        raise UsageError(f"space must be auto, dual or primal, got {space!r}.")
    if space != "auto":
        return space
    return "primal" if m > rank else "dual"


def _push_through_left(f_s: torch.Tensor, lam: float) -> torch.Tensor:
    """L = R^-1 F_s = F_s (F_s^T F_s + r I_d)^-1 with the same ridge r as regularized_gram (M x d)."""
    f_s = f_s.double()
    m, d = f_s.shape
    ridge = lam * ((f_s * f_s).sum() / m).clamp_min(1e-12)  # mean diag of K_ss = mean squared row norm
    s = f_s.T @ f_s + ridge * torch.eye(d, dtype=f_s.dtype, device=f_s.device)
    return torch.linalg.solve(s, f_s.T).T  # S symmetric: (S^-1 F^T)^T = F S^-1


def left_factor(f_s: torch.Tensor, lam: float, space: str = "auto") -> torch.Tensor:
    """L = R^-1 F_s (M x d), in the smaller space; the KRR predictor on real features F_b is F_b L^T."""
    if pick_space(f_s.shape[0], f_s.shape[1], space) == "primal":
        return _push_through_left(f_s, lam)
    f_s = f_s.double()
    return torch.linalg.solve(regularized_gram(f_s, lam), f_s)


def krr_loss_moments(f_s, moments, lam: float, mu: float, space: str = "auto") -> tuple:
    """Full-data loss for one network: moments = (G, H, yy, n). Returns (L, Y_s*).

    space: "dual" solves M x M systems, "primal" d x d ones (module docstring); "auto" the smaller.
    """
    _check_reg(lam, mu)
    gram, cross, yy, n = moments
    if f_s.shape[1] != gram.shape[0]:
        raise UsageError(f"feature dimension {f_s.shape[1]} does not match the cached moments ({gram.shape[0]}).")
    if pick_space(f_s.shape[0], f_s.shape[1], space) == "dual":
        ata, aty = normal_equations(f_s, gram, cross, lam)
        y_s = solve_normal(ata, aty, mu)
        return moment_loss(ata, aty, yy, n, y_s), y_s
    left = _push_through_left(f_s, lam)                 # L (M x d)
    gram, cross = gram.to(left), cross.to(left)
    p = left.T @ left                                   # P = L^T L (d x d)
    rho = mu * ((left @ gram) * left).sum().div(len(left)).clamp_min(1e-30)  # mu * mean diag(L G L^T)
    eye = torch.eye(len(p), dtype=p.dtype, device=p.device)
    z = torch.linalg.solve(gram @ p + rho * eye, cross)  # Z (d x C); G P + rho I is nonsingular (eig >= rho)
    pz = p @ z
    loss = (torch.sum(pz * (gram @ pz)) - 2 * torch.sum(pz * cross) + yy) / n
    return loss, left @ z


def stacked_normal_equations(features: list, moments: list, lam: float) -> tuple:
    """(sum_i A_i^T A_i, sum_i A_i^T Y_b) over the networks, M x M and M x C (each L_i = R_i^-1 F_s
    in its smaller space)."""
    ata_sum, aty_sum = 0, 0
    for f_s, (gram, cross, _, _) in zip(features, moments):
        left = left_factor(f_s, lam)
        ata = left @ gram.to(left) @ left.T
        ata_sum, aty_sum = ata_sum + (ata + ata.T) / 2, aty_sum + left @ cross.to(left)
    return ata_sum, aty_sum


def solve_labels_stacked(features: list, moments: list, lam: float, mu: float, space: str = "auto") -> torch.Tensor:
    """One joint least-squares solve over several networks (rows of A stacked).

    The summed system sum_i L_i G_i L_i^T has rank <= sum_i d_i =: k. With M <= k it is
    solved in M x M (each L_i by push-through when M > d_i); with M > k in k x k:
    Y = L_all (G_blk P_all + rho I_k)^-1 H_all, L_all = [L_1 ... L_P], G_blk = diag(G_i).
    """
    m = features[0].shape[0]
    rank = sum(f.shape[1] for f in features)
    if pick_space(m, rank, space) == "dual":
        return solve_normal(*stacked_normal_equations(features, moments, lam), mu)
    lefts = [_push_through_left(f, lam) for f in features]
    left_all = torch.cat(lefts, dim=1)                                          # (M x k)
    grams = [g.to(left_all) for g, _, _, _ in moments]
    h_all = torch.cat([h.to(left_all) for _, h, _, _ in moments])               # (k x C)
    p_all = left_all.T @ left_all
    # G_blk is block-diagonal: G_blk P_all and mean diag(L_all G_blk L_all^T) block by block, never
    # the dense k x k G_blk (P times fewer flops and one k x k matrix less)
    rho = mu * sum(((lf @ g) * lf).sum() for lf, g in zip(lefts, grams)).div(m).clamp_min(1e-30)
    offsets = [0]
    for g in grams:
        offsets.append(offsets[-1] + len(g))
    lhs = torch.cat([g @ p_all[a:b] for g, a, b in zip(grams, offsets, offsets[1:])])   # G_blk P_all
    lhs.diagonal().add_(rho)
    del lefts, p_all
    return left_all @ torch.linalg.solve(lhs, h_all)


GCV_MUS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def gcv_curve(e: torch.Tensor, b: torch.Tensor, yy: float, n: int, scale, mus=GCV_MUS) -> list:
    """[(mu, GCV error, coefficients)] over ``mus`` for a label system whose A^T A has eigenvalues ``e``
    and whose A^T Y_b is ``b`` in that eigenbasis (solve_labels_gcv's docstring has the formulae)."""
    c, out = b.shape[1], []
    for mu in mus:
        rho = mu * scale
        coef = b / (e + rho)[:, None]
        rss = float((coef * (e[:, None] * coef)).sum() - 2 * (coef * b).sum()) + yy
        dof = float((e / (e + rho)).sum())
        out.append((mu, (max(rss, 0.0) / (n * c)) / max(1 - dof / n, 1e-12) ** 2, coef))
    return out


def _gcv_pick(e, b, yy, n, scale, mus) -> tuple:
    curve = gcv_curve(e, b, yy, n, scale, mus)
    mu, _, coef = min(curve, key=lambda r: r[1])
    return mu, coef, [score for _, score, _ in curve]


def solve_labels_gcv(features: list, moments: list, lam: float, space: str = "auto", mus=GCV_MUS) -> tuple:
    """Least-squares labels with the label ridge chosen by generalised cross-validation.

    The label solve is ridge regression of the real data's labels Y_b (n x C) on the stacked
    KRR predictors A; for rho = mu * mean diag(A^T A), with e_i the eigenvalues of A^T A and
    b = U^T A^T Y_b in its eigenbasis U (a scikit-learn RidgeCV-style criterion, from moments only):

        Y(rho)   = U diag(1 / (e + rho)) b
        RSS(rho) = ||A Y(rho) - Y_b||^2 = sum_i (c_i^2 e_i - 2 c_i b_i) + ||Y_b||^2,  c = b / (e + rho)
        dof(rho) = sum_i e_i / (e_i + rho)
        GCV(mu)  = (RSS / (n C)) / (1 - dof / n)^2

    and the grid's mu of least GCV is used (``mus``; n is the real training images, each counted
    once however many networks). One eigendecomposition serves the whole grid. In the dual space
    it is A^T A itself (M x M). In the primal space (M > k = sum d_i) A^T A = B B^T with
    B = L_all G_blk^(1/2), whose nonzero eigenvalues are those of W = G^(1/2) P_all G^(1/2)
    (k x k, P_all = L_all^T L_all): W = V diag(s) V^T gives U = B V s^(-1/2) and
    b = s^(-1/2) V^T G^(1/2) P_all H_all (A^T Y_b = L_all H_all lies in the range of B, as H
    lies in that of G). Returns (Y_s, mu, GCV errors over ``mus``).
    """
    for mu in mus:
        check_range("mu", mu, 0, low_open=True)
    m = features[0].shape[0]
    rank = sum(f.shape[1] for f in features)
    yy = float(sum(float(y) for _, _, y, _ in moments))
    n = int(moments[0][3])
    if pick_space(m, rank, space) == "dual":
        ata_sum, aty_sum = stacked_normal_equations(features, moments, lam)
        e, u = torch.linalg.eigh(ata_sum)
        e = e.clamp_min(0)
        mu, coef, scores = _gcv_pick(e, u.T @ aty_sum, yy, n, ata_sum.diagonal().mean().clamp_min(1e-30), mus)
        return u @ coef, mu, scores
    lefts = [_push_through_left(f, lam) for f in features]
    left_all = torch.cat(lefts, dim=1)                                          # (M x k)
    halves = []
    for _, (gram, _, _, _) in zip(features, moments):                          # G_i^(1/2), PSD
        ge, gv = torch.linalg.eigh(gram.to(left_all))
        halves.append((gv * ge.clamp_min(0).sqrt()) @ gv.T)
    h_all = torch.cat([h.to(left_all) for _, h, _, _ in moments])               # (k x C)
    p_all = left_all.T @ left_all
    offsets = [0]
    for g in halves:
        offsets.append(offsets[-1] + len(g))
    blocks = list(zip(halves, offsets, offsets[1:]))
    gp = torch.cat([g @ p_all[a:z] for g, a, z in blocks])                      # G^(1/2) P_all
    w = torch.cat([gp[:, a:z] @ g for g, a, z in blocks], dim=1)               # G^(1/2) P_all G^(1/2)
    s, v = torch.linalg.eigh((w + w.T) / 2)
    keep = s > s.max().clamp_min(1e-300) * 1e-12                               # the range of B
    s, v = s[keep], v[:, keep]
    b = (v.T @ (gp @ h_all)) / s.sqrt()[:, None]
    scale = s.sum() / m                                                        # mean diag(A^T A) = trace / M
    mu, coef, scores = _gcv_pick(s, b, yy, n, scale, mus)
    gh_v = torch.cat([g @ v[a:z] for g, a, z in blocks])                        # G^(1/2) V
    return left_all @ (gh_v @ (coef / s.sqrt()[:, None])), mu, scores


def stacked_solve_bytes(m: int, dims: list) -> int:
    """Peak bytes of solve_labels_stacked for m images and networks of feature sizes ``dims``
    (float64): about five square systems of the space it solves in, plus the features and the
    left factors; the estimate memory.check_fits compares with what is free."""
    k = sum(dims)
    side = m if pick_space(m, k) == "dual" else k
    return 8 * (5 * side * side + 2 * m * k) + 4 * m * k
