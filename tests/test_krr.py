"""The objective checked against second formulations (numpy float64, batch vs moments)."""

import numpy as np
import pytest
import torch

from mgdd import krr
from mgdd.errors import UsageError
from mgdd.features import FeatureConfig, compute_moments, make_feature_net


def rand(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


def numpy_reference(fs, fb, yb, lam, mu):
    fs, fb, yb = fs.numpy(), fb.numpy(), yb.numpy()
    kss = fs @ fs.T
    r = kss + lam * np.mean(np.diag(kss)) * np.eye(len(fs))
    a = (fb @ fs.T) @ np.linalg.inv(r)
    ata = a.T @ a
    y = np.linalg.inv(ata + mu * np.mean(np.diag(ata)) * np.eye(len(fs))) @ a.T @ yb
    return a, y, np.sum((a @ y - yb) ** 2) / len(fb)


@pytest.mark.parametrize("m,b,d", [(5, 40, 16), (12, 30, 8), (20, 200, 64)])
def test_solve_labels_matches_numpy(m, b, d):
    fs, fb = rand(m, d, seed=1), rand(b, d, seed=2)
    yb = krr.centered_onehot(torch.arange(b) % 4, 4)
    a_ref, y_ref, l_ref = numpy_reference(fs, fb, yb, 1e-2, 1e-3)
    a = krr.krr_predictor(fs, fb, 1e-2)
    y = krr.solve_labels(a, yb, 1e-3)
    loss, _ = krr.krr_loss(fs, fb, yb, 1e-2, 1e-3)
    np.testing.assert_allclose(a.numpy(), a_ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-6, atol=1e-8)
    assert abs(loss.item() - l_ref) < 1e-9


def test_centered_onehot():
    y = krr.centered_onehot(torch.tensor([0, 2]), 4)
    assert torch.allclose(y[0], torch.tensor([0.75, -0.25, -0.25, -0.25], dtype=torch.float64))
    assert torch.allclose(y.sum(1), torch.zeros(2, dtype=torch.float64))


def test_moments_equal_batch_formulation():
    """The normal equations from G = F^T F, H = F^T Y equal those from A itself."""
    fs, fb = rand(6, 10, seed=3), rand(50, 10, seed=4)
    yb = krr.centered_onehot(torch.arange(50) % 3, 3)
    a = krr.krr_predictor(fs, fb, 1e-2)
    ata, aty = krr.normal_equations(fs, fb.T @ fb, fb.T @ yb, 1e-2)
    torch.testing.assert_close(ata, a.T @ a, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(aty, a.T @ yb, rtol=1e-9, atol=1e-10)
    loss_m, y_m = krr.krr_loss_moments(fs, (fb.T @ fb, fb.T @ yb, float((yb ** 2).sum()), 50), 1e-2, 1e-3)
    loss_b, y_b = krr.krr_loss(fs, fb, yb, 1e-2, 1e-3)
    torch.testing.assert_close(y_m, y_b, rtol=1e-7, atol=1e-9)
    assert abs(loss_m.item() - loss_b.item()) < 1e-9


@pytest.mark.parametrize("per_class", [False, True])
def test_chunked_class_moments_equal_one_shot(tiny_dataset, per_class):
    net = make_feature_net(FeatureConfig(width=8, depth=2), 1, (12, 12), seed=0)
    chunked = compute_moments(net, tiny_dataset.train_x, tiny_dataset.train_y, 3, chunk=5, per_class=per_class)
    assert chunked.gram.shape == ((3,) if per_class else ()) + (net.dim, net.dim)
    with torch.no_grad():
        f = net(tiny_dataset.train_x.float()).double()
    g, h, yy, n = chunked.for_classes()
    y = krr.centered_onehot(tiny_dataset.train_y, 3)
    torch.testing.assert_close(g, f.T @ f)
    torch.testing.assert_close(h, f.T @ y)
    assert n == 36 and abs(yy - float((y ** 2).sum())) < 1e-9
    if not per_class:  # the total Gram serves the whole class set only, and says so
        with pytest.raises(UsageError, match="class_subsets=True"):
            chunked.for_classes([0, 2])
        torch.testing.assert_close(chunked.for_classes([2, 1, 0])[1], h[:, [2, 1, 0]])  # every class, any order
        return
    # a class subset relabels to centred one-hot over the subset
    g2, h2, _, n2 = chunked.for_classes([0, 2])
    keep = tiny_dataset.train_y != 1
    y2 = krr.centered_onehot((tiny_dataset.train_y[keep] == 2).long(), 2)
    torch.testing.assert_close(g2, f[keep].T @ f[keep])
    torch.testing.assert_close(h2, f[keep].T @ y2)
    assert n2 == 24


def test_stacked_solve_equals_joint_lstsq():
    """Stacking two networks' A matrices = summing their normal equations."""
    fs1, fs2 = rand(5, 8, seed=5), rand(5, 12, seed=6)
    fb1, fb2 = rand(40, 8, seed=7), rand(40, 12, seed=8)
    yb = krr.centered_onehot(torch.arange(40) % 2, 2)
    y = krr.solve_labels_stacked([fs1, fs2], [(fb1.T @ fb1, fb1.T @ yb, 0, 40), (fb2.T @ fb2, fb2.T @ yb, 0, 40)],
                                 1e-2, 1e-3)
    a = torch.cat([krr.krr_predictor(fs1, fb1, 1e-2), krr.krr_predictor(fs2, fb2, 1e-2)])
    torch.testing.assert_close(y, krr.solve_labels(a, torch.cat([yb, yb]), 1e-3))


def test_planted_labels_are_recovered():
    fs, fb = rand(6, 30, seed=9), rand(200, 30, seed=10)
    y_true = rand(6, 3, seed=11)
    a = krr.krr_predictor(fs, fb, 1e-3)
    y = krr.solve_labels(a, a @ y_true, 1e-10)
    torch.testing.assert_close(y, y_true, rtol=1e-4, atol=1e-4)


def test_gradcheck_wrt_synthetic_features():
    fb = rand(12, 5, seed=12)
    yb = krr.centered_onehot(torch.arange(12) % 3, 3)
    fs = rand(4, 5, seed=13).requires_grad_(True)
    moments = (fb.T @ fb, fb.T @ yb, float((yb ** 2).sum()), 12)
    assert torch.autograd.gradcheck(lambda f: krr.krr_loss(f, fb, yb, 1e-1, 1e-2)[0], (fs,))
    assert torch.autograd.gradcheck(lambda f: krr.krr_loss_moments(f, moments, 1e-1, 1e-2)[0], (fs,))


@pytest.mark.parametrize("lam,mu", [(0, 1e-3), (1e-3, 0), (-1, 1e-3), (float("nan"), 1e-3)])
def test_bad_regularisers(lam, mu):
    with pytest.raises(UsageError):
        krr.krr_loss(rand(3, 4), rand(5, 4), krr.centered_onehot(torch.arange(5) % 2, 2), lam, mu)


def test_ill_conditioned_falls_back_with_warning():
    ata = torch.zeros(3, 3, dtype=torch.float64)
    ata[0, 0] = -1.0  # not positive definite: Cholesky fails
    with pytest.warns(RuntimeWarning, match="lstsq"):
        krr.solve_normal(ata, torch.ones(3, 1, dtype=torch.float64), 1e-3)


# ---------------------------------------------------------------------------- primal and dual spaces

def test_space_is_the_smaller_unless_forced():
    assert krr.pick_space(10, 64) == "dual" and krr.pick_space(100, 64) == "primal"
    assert krr.pick_space(100, 64, "dual") == "dual" and krr.pick_space(10, 64, "primal") == "primal"
    with pytest.raises(UsageError):
        krr.pick_space(10, 64, "fast")


@pytest.mark.parametrize("m,d", [(30, 8), (8, 30), (12, 12)])
def test_primal_and_dual_loss_agree_with_gradients(m, d):
    """The push-through (d x d) path and the M x M path give the same loss, labels and gradient,
    and both equal the loss from A itself (whole real batch)."""
    fb = rand(80, d, seed=20)
    yb = krr.centered_onehot(torch.arange(80) % 4, 4)
    moments = (fb.T @ fb, fb.T @ yb, float((yb ** 2).sum()), 80)
    out = {}
    for space in ("dual", "primal"):
        fs = rand(m, d, seed=21).requires_grad_(True)
        loss, y = krr.krr_loss_moments(fs, moments, 1e-2, 1e-3, space=space)
        (grad,) = torch.autograd.grad(loss, fs)
        out[space] = (loss.detach(), y.detach(), grad)
    for a, b in zip(out["dual"], out["primal"]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    direct, y_direct = krr.krr_loss(rand(m, d, seed=21), fb, yb, 1e-2, 1e-3)
    torch.testing.assert_close(out["primal"][0], direct, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(out["primal"][1], y_direct, rtol=1e-6, atol=1e-9)


def test_primal_loss_gradcheck():
    fb = rand(20, 4, seed=22)
    yb = krr.centered_onehot(torch.arange(20) % 3, 3)
    fs = rand(9, 4, seed=23).requires_grad_(True)  # M > d: the primal path
    moments = (fb.T @ fb, fb.T @ yb, float((yb ** 2).sum()), 20)
    assert torch.autograd.gradcheck(lambda f: krr.krr_loss_moments(f, moments, 1e-1, 1e-2)[0], (fs,))


@pytest.mark.parametrize("m", [5, 15, 40])  # below both d, between d and the stacked rank 20, above it
def test_stacked_labels_agree_in_every_space(m):
    fs1, fs2 = rand(m, 8, seed=24), rand(m, 12, seed=25)
    fb1, fb2 = rand(60, 8, seed=26), rand(60, 12, seed=27)
    yb = krr.centered_onehot(torch.arange(60) % 3, 3)
    moments = [(fb1.T @ fb1, fb1.T @ yb, 0, 60), (fb2.T @ fb2, fb2.T @ yb, 0, 60)]
    a = torch.cat([krr.krr_predictor(fs1, fb1, 1e-2), krr.krr_predictor(fs2, fb2, 1e-2)])
    direct = krr.solve_labels(a, torch.cat([yb, yb]), 1e-3)
    for space in ("auto", "dual", "primal"):
        y = krr.solve_labels_stacked([fs1, fs2], moments, 1e-2, 1e-3, space=space)
        torch.testing.assert_close(y, direct, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("m", [6, 30])  # M under and over the pool's rank k = 8 + 12: dual, then primal
def test_gcv_label_ridge_matches_explicit_hat_matrix(m):
    """solve_labels_gcv against the definition on the explicit stacked A: for every mu of the grid,
    RSS from the solved labels, dof = trace of the hat matrix A (A^T A + rho I)^-1 A^T, GCV with n
    the real images; the pick and its labels equal in every space."""
    fs1, fs2 = rand(m, 8, seed=31), rand(m, 12, seed=32)
    fb1, fb2 = rand(60, 8, seed=33), rand(60, 12, seed=34)
    yb = krr.centered_onehot(torch.arange(60) % 3, 3)
    moments = [(fb1.T @ fb1, fb1.T @ yb, float((yb ** 2).sum()), 60),
               (fb2.T @ fb2, fb2.T @ yb, float((yb ** 2).sum()), 60)]
    a = torch.cat([krr.krr_predictor(fs1, fb1, 1e-2), krr.krr_predictor(fs2, fb2, 1e-2)])
    y2 = torch.cat([yb, yb])
    ata = a.T @ a
    scores, labels = [], {}
    for mu in krr.GCV_MUS:
        rho = mu * ata.diagonal().mean()
        y = krr.solve_labels(a, y2, mu)
        hat = a @ torch.linalg.solve(ata + rho * torch.eye(m, dtype=a.dtype), a.T)
        rss = float(((a @ y - y2) ** 2).sum())
        scores.append((rss / (60 * 3)) / (1 - float(hat.trace()) / 60) ** 2)
        labels[mu] = y
    best = krr.GCV_MUS[int(np.argmin(scores))]
    for space in ("auto", "dual", "primal"):
        y, mu, got = krr.solve_labels_gcv([fs1, fs2], moments, 1e-2, space=space)
        np.testing.assert_allclose(got, scores, rtol=1e-6)
        assert mu == best
        torch.testing.assert_close(y, labels[best], rtol=1e-6, atol=1e-8)


def test_gcv_label_ridge_rejects_a_bad_grid():
    fs, fb = rand(4, 6, seed=35), rand(20, 6, seed=36)
    yb = krr.centered_onehot(torch.arange(20) % 2, 2)
    with pytest.raises(UsageError):
        krr.solve_labels_gcv([fs], [(fb.T @ fb, fb.T @ yb, 1.0, 20)], 1e-2, mus=(1e-3, 0.0))
