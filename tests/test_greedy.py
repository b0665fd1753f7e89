"""The greedy start (mgdd/greedy.py, issue #39): the swap scan against a direct solve, nesting,
continuation, the disk cache, and the baseline and start that use it."""

import torch

from mgdd import krr
from mgdd.features import FeatureConfig, features
from mgdd.greedy import SwapScan
from mgdd.objective import KRRObjective
from mgdd.start import class_order, coreset_indices, forget_orders, start_set


def greedy_orders(objective, length, **kw):
    """greedy.greedy_orders with herding's orders, as start.py passes them (no cache)."""
    from mgdd import greedy
    herding = [class_order(objective, c, max(length, 100), "herding") for c in range(len(objective.class_index))]
    return greedy.greedy_orders(objective, length, herding, **kw)


def direct_loss(f, moments, rows, lam_abs, mu_abs):
    """The loss of the set ``rows`` at the given absolute ridges, by explicit inverses."""
    gram, cross, yy, n = (t.double() if torch.is_tensor(t) else t for t in moments)
    fs = f[rows]
    eye = torch.eye(len(rows), dtype=torch.float64)
    g = torch.linalg.inv(fs @ fs.T + lam_abs * eye)
    b, c = g @ fs @ gram @ fs.T @ g, g @ fs @ cross
    y = torch.linalg.solve(b + mu_abs * eye, c)
    return float(((y * (b @ y)).sum() - 2 * (y * c).sum() + yy) / n)


def test_swap_scan_against_a_direct_solve(tiny_dataset):
    """hold() is krr_loss_moments' loss; scan() is, for every candidate, the direct loss of the
    set with that candidate in the slot at the held set's ridges (the rank-two updates are exact),
    and an option already in the slot scores the held loss."""
    obj = KRRObjective(tiny_dataset, FeatureConfig(width=32, depth=2), pool_size=1, cache=False)
    with torch.no_grad():
        f = features(obj.pool.nets[0], tiny_dataset.train_x.float()).double()
    moments = obj.moments[0].for_classes(None)
    scan = SwapScan(f, moments, obj.mu)
    rows = torch.tensor([0, 3, 5, 13, 16, 25, 27, 30])     # 3 classes of 12 images, class-major
    lam = obj.lam_for(len(rows))
    want, _ = krr.krr_loss_moments(f[rows], tuple(t.double() if torch.is_tensor(t) else t for t in moments),
                                   lam, obj.mu)
    assert abs(scan.hold(rows, lam) - float(want)) < 1e-9 * abs(float(want))
    options = torch.tensor([1, 2, 7, 11, 20, 35])
    for slot in (0, 4, 7):
        got = scan.scan(slot, options)
        for j, value in zip(options.tolist(), got.tolist()):
            trial = rows.clone()
            trial[slot] = j
            ref = direct_loss(f, moments, trial, scan.lam_abs, scan.mu_abs)
            assert abs(value - ref) < 1e-6 * abs(ref), (slot, j, value, ref)
    same = scan.scan(4, torch.tensor([int(rows[4])]))
    assert abs(float(same) - scan.loss) < 1e-9 * scan.loss
    # a one-slot change updates K_SS and P in place of recomputing them: the same loss and factors
    trial = rows.clone()
    trial[5] = 20
    got = scan.hold(trial, lam)
    fresh = SwapScan(f, moments, obj.mu)
    want = fresh.hold(trial, lam)
    assert abs(got - want) < 1e-9 * abs(want)
    assert torch.allclose(scan.k, fresh.k, rtol=1e-12) and torch.allclose(scan.p, fresh.p, rtol=1e-10)
    assert torch.allclose(scan.mi, fresh.mi, rtol=1e-8)


def test_greedy_orders_are_nested_continue_and_lower_the_loss(tiny_objective, tiny_dataset):
    """The first k picks of a class are its IPC-k order; a longer order continued from a shorter
    one is the one made from scratch; picks are distinct images of their class; at IPC 1 the
    mean pool loss is at most herding's (level 1 starts from herding's first pick and only
    keeps swaps that lower it)."""
    four = greedy_orders(tiny_objective, 4)
    two = greedy_orders(tiny_objective, 2)
    assert all(torch.equal(four[c][:2], two[c]) for c in range(3))
    assert all(torch.equal(greedy_orders(tiny_objective, 4, prefix=two)[c], four[c]) for c in range(3))
    for c in range(3):
        assert len(set(four[c].tolist())) == 4 and (tiny_dataset.train_y[four[c]] == c).all()

    def mean_loss(x):
        with torch.no_grad():
            return sum(tiny_objective.pool_loss(x, i).item() for i in range(2)) / 2
    greedy_x, _ = start_set(tiny_objective, 1, "greedy")
    herding_x, _ = start_set(tiny_objective, 1, "herding")
    assert mean_loss(greedy_x) <= mean_loss(herding_x) + 1e-12


def test_greedy_start_is_cached_continued_and_used(tmp_path, tiny_dataset, monkeypatch):
    """start_set(..., "greedy") reads greedy's orders; a second objective reads them from the disk
    cache without a search, and a larger size continues the cached levels (the same picks as from
    scratch); the baseline `greedy` with least-squares labels is the start with objective.labels."""
    import mgdd.greedy as greedy
    from mgdd.baselines import run_baseline
    make = lambda: KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2,  # noqa: E731
                                cache=True, cache_dir=tmp_path)
    x2, y2 = start_set(make(), 2, "greedy")
    assert torch.equal(y2, torch.arange(3).repeat_interleave(2))
    assert len(list(tmp_path.glob("*greedy*-orders.safetensors"))) == 1
    calls = []
    real = greedy.greedy_orders
    monkeypatch.setattr(greedy, "greedy_orders", lambda o, n, h, **kw: (calls.append((n, kw.get("prefix"))),
                                                                        real(o, n, h, **kw))[1])
    assert torch.equal(start_set(make(), 2, "greedy")[0], x2) and calls == []
    three = coreset_indices(make(), 3, "greedy")
    assert len(calls) == 1 and calls[0][0] == 3 and calls[0][1] is not None  # continued from 2 levels
    scratch = KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2, cache=False)
    assert torch.equal(three, coreset_indices(scratch, 3, "greedy"))
    forget_orders(scratch)
    ds = run_baseline("greedy", tiny_dataset, 2, objective=scratch, soft_labels=True)
    assert torch.equal(ds.images, x2.float()) and ds.meta["method"] == "greedy+ls"
    assert torch.allclose(ds.labels, scratch.labels(x2.float()))


def test_a_swap_that_raises_the_exact_loss_is_never_kept(tiny_objective, monkeypatch):
    """The scan only ranks candidates; the exact loss decides. With the scan's ranking turned
    upside down every proposed swap is the worst candidate, so each is rejected, the held
    factorisation is restored, and the orders stay herding's."""
    import mgdd.greedy as greedy
    real = greedy.SwapScan.scan
    monkeypatch.setattr(greedy.SwapScan, "scan", lambda self, slot, options: -real(self, slot, options))
    orders = greedy_orders(tiny_objective, 3)
    for c in range(3):
        assert torch.equal(orders[c], class_order(tiny_objective, c, 3, "herding"))


def test_an_interrupted_search_resumes_from_its_last_level(tmp_path, tiny_dataset, monkeypatch):
    """Every finished level is saved to the cache: a search to IPC 4 stopped after level 2 leaves
    a cache that serves IPC 2 without a search, and the next call to IPC 4 continues from level 2
    (not from scratch) to the orders a search from scratch makes."""
    import pytest

    import mgdd.greedy as greedy
    make = lambda: KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2,  # noqa: E731
                                cache=True, cache_dir=tmp_path)
    real = greedy.greedy_orders

    def stopped(o, n, h, on_level=None, **kw):
        def hook(orders, seconds):
            on_level(orders, seconds)
            if min(len(v) for v in orders.values()) == 2:
                raise KeyboardInterrupt
        return real(o, n, h, on_level=hook, **kw)
    monkeypatch.setattr(greedy, "greedy_orders", stopped)
    with pytest.raises(KeyboardInterrupt):
        coreset_indices(make(), 4, "greedy")
    calls = []
    monkeypatch.setattr(greedy, "greedy_orders", lambda o, n, h, **kw: (calls.append((n, kw.get("prefix"))),
                                                                        real(o, n, h, **kw))[1])
    two = coreset_indices(make(), 2, "greedy")
    assert calls == []                                            # served by the saved levels
    four = coreset_indices(make(), 4, "greedy")
    assert len(calls) == 1 and all(len(p) == 2 for p in calls[0][1].values())
    scratch = KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2, cache=False)
    assert torch.equal(four, coreset_indices(scratch, 4, "greedy"))
    assert torch.equal(two, coreset_indices(scratch, 2, "greedy"))
