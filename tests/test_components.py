"""Each component against a second formulation on tiny data: the objective, the guide, the
coresets, the evaluation protocol, the feature cache, progress in logs, the module graph."""

import ast
import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mgdd import krr
from mgdd.errors import UsageError
from mgdd.data import sample_init


def direct_loss(objective, x, i, classes=None):
    """The KRR loss of pool network i against every training image, from the features themselves."""
    net, ds = objective.pool.nets[i], objective.dataset
    keep = torch.ones(len(ds.train_y), dtype=torch.bool) if classes is None else torch.isin(
        ds.train_y, torch.tensor(classes))
    ys = ds.train_y[keep]
    if classes is not None:
        ys = torch.tensor([list(classes).index(int(c)) for c in ys])
    c = ds.num_classes if classes is None else len(classes)
    with torch.no_grad():
        f_b = net(ds.train_x[keep])
    return krr.krr_loss(net(x), f_b, krr.centered_onehot(ys, c), objective.lam_for(len(x)), objective.mu)


@pytest.mark.parametrize("classes,subsets", [(None, False), (None, True), ([0, 2], True)])
def test_pool_loss_and_labels_equal_a_direct_whole_dataset_solve(tiny_dataset, classes, subsets):
    # the total Gram (the default) and the per-class Grams (class_subsets, meta-training) both
    # give the direct whole-dataset solve
    from mgdd.features import FeatureConfig
    from mgdd.objective import KRRObjective
    obj = KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2, cache=False, class_subsets=subsets)
    assert all(m.per_class == subsets for m in obj.moments)
    ipc = 2
    x, _ = sample_init(obj.dataset, ipc, seed=3, classes=classes)
    for i in range(obj.pool.size):
        torch.testing.assert_close(obj.pool_loss(x, i, classes), direct_loss(obj, x, i, classes)[0],
                                   rtol=1e-6, atol=1e-9)
    # loss(x, rng) is the pool loss of the network the rng draws first
    i = random.Random(7).randrange(obj.pool.size)
    torch.testing.assert_close(obj.loss(x, random.Random(7), classes), obj.pool_loss(x, i, classes))
    # labels: one least-squares solve over the stacked predictors of every pool network
    a, y = [], []
    for i, net in enumerate(obj.pool.nets):
        keep = torch.ones(len(obj.dataset.train_y), dtype=torch.bool) if classes is None else torch.isin(
            obj.dataset.train_y, torch.tensor(classes))
        ys = obj.dataset.train_y[keep]
        if classes is not None:
            ys = torch.tensor([classes.index(int(c)) for c in ys])
        with torch.no_grad():
            a.append(krr.krr_predictor(net(x), net(obj.dataset.train_x[keep]), obj.lam_for(len(x))))
        y.append(krr.centered_onehot(ys, obj.dataset.num_classes if classes is None else len(classes)))
    direct = krr.solve_labels(torch.cat(a), torch.cat(y), obj.mu).float()
    torch.testing.assert_close(obj.labels(x, classes=classes), direct, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ipc", [1, 4])
def test_feature_ridge_is_primal_ridge_regression_at_the_mean_feature_eigenvalue(tiny_dataset, ipc):
    from mgdd.features import FeatureConfig
    from mgdd.objective import KRRObjective
    obj = KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2, cache=False,
                       lam=0.3, ridge="feature")
    x, _ = sample_init(tiny_dataset, ipc, seed=2)
    y_b = krr.centered_onehot(tiny_dataset.train_y, tiny_dataset.num_classes)
    a_all = []
    for i, net in enumerate(obj.pool.nets):
        with torch.no_grad():
            f_s, f_b = net(x).double(), net(tiny_dataset.train_x.float()).double()
        d = f_s.shape[1]
        # second formulation: ridge regression on the features (primal, d x d), with the ridge
        # lam times the mean eigenvalue of F_s^T F_s, i.e. trace / d
        r = 0.3 * torch.trace(f_s.T @ f_s) / d
        a = f_b @ torch.linalg.solve(f_s.T @ f_s + r * torch.eye(d, dtype=f_s.dtype), f_s.T)   # (N, M)
        ata = a.T @ a
        y_s = torch.linalg.solve(ata + obj.mu * ata.diagonal().mean() * torch.eye(len(x), dtype=a.dtype), a.T @ y_b)
        ref = ((a @ y_s - y_b) ** 2).sum() / len(f_b)
        torch.testing.assert_close(obj.pool_loss(x, i), ref, rtol=1e-6, atol=1e-9)
        a_all.append(a)
    # the kernel-scale ridge grows with the set: lam * M / d
    assert obj.lam_for(len(x)) == pytest.approx(0.3 * len(x) / obj.pool.dim)
    direct = krr.solve_labels(torch.cat(a_all), torch.cat([y_b, y_b]), obj.mu).float()
    torch.testing.assert_close(obj.labels(x), direct, rtol=1e-4, atol=1e-5)
    assert obj.describe()["ridge"] == "feature"
    with pytest.raises(UsageError, match="ridge"):
        KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=1, cache=False, ridge="trace")


def test_capped_ridge_is_the_feature_rule_up_to_half_the_feature_size_then_a_kernel_ridge(tiny_dataset):
    """"capped": lam M / d while M <= d / 2, then lam / 2 at every size; its labels above the cap
    are those of the kernel ridge at lam / 2, and below it those of the feature rule."""
    from mgdd.features import FeatureConfig
    from mgdd.objective import KRRObjective
    make = lambda ridge, lam=0.3: KRRObjective(tiny_dataset, FeatureConfig(width=2, depth=1, grid=2),  # noqa: E731
                                               pool_size=2, cache=False, lam=lam, ridge=ridge)
    capped, feature, kernel = make("capped"), make("feature"), make("kernel", 0.15)
    d = capped.pool.dim
    assert d == 8 and capped.describe()["ridge"] == "capped"
    assert [capped.lam_for(m) for m in (1, 4, 5, 30)] == pytest.approx([0.3 / 8, 0.15, 0.15, 0.15])
    small, _ = sample_init(tiny_dataset, 1, seed=0)    # M = 3 < d / 2
    large, _ = sample_init(tiny_dataset, 4, seed=0)    # M = 12 > d / 2
    torch.testing.assert_close(capped.labels(small), feature.labels(small))
    torch.testing.assert_close(capped.labels(large), kernel.labels(large))
    assert not torch.allclose(capped.labels(large), feature.labels(large))


def test_guide_is_the_normalised_gradient_of_the_mean_pool_loss(tiny_objective):
    obj = tiny_objective
    x0, _ = sample_init(obj.dataset, 2, seed=1)
    x = x0.clone().requires_grad_(True)
    mean = sum(direct_loss(obj, x, i)[0] for i in range(2)) / 2
    (grad,) = torch.autograd.grad(mean, x)
    ref = grad / grad.pow(2).mean().sqrt()
    torch.testing.assert_close(obj.guide(x0, nets=2), ref.float(), rtol=1e-4, atol=1e-5)


def test_fresh_objective_draws_like_the_pool_and_shares_its_labels(tiny_objective):
    from mgdd.objective import FreshObjective
    fresh = FreshObjective.sharing(tiny_objective)
    x, _ = sample_init(tiny_objective.dataset, 2, seed=0)
    r1, r2 = random.Random(5), random.Random(5)
    fresh.loss(x, r1)
    tiny_objective.loss(x, r2)
    assert r1.random() == r2.random()  # both drew (network index, step seed): the streams stay aligned
    assert torch.equal(fresh.labels(x), tiny_objective.labels(x)) and fresh.describe()["mode"] == "fresh"
    assert tiny_objective.describe()["mode"] == "pool"


# ---------------------------------------------------------------------------- coresets

def herding_reference(f, k):
    """Greedy herding written out with loops: add the point that brings the chosen mean closest to the target."""
    f = f.double().numpy()
    target, chosen = f.mean(0), []
    for _ in range(k):
        best, best_d = None, None
        for i in range(len(f)):
            if i in chosen:
                continue
            d = float(((f[chosen + [i]].mean(0) - target) ** 2).sum())
            if best_d is None or d < best_d - 1e-12:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def kcenter_reference(f, k):
    """Greedy k-center with loops: start at the point nearest the mean, then the farthest point each time."""
    f = f.double().numpy()
    dist = lambda a, b: float(((a - b) ** 2).sum())  # noqa: E731
    chosen = [int(np.argmin([dist(p, f.mean(0)) for p in f]))]
    for _ in range(k - 1):
        gaps = [min(dist(p, f[c]) for c in chosen) for p in f]
        chosen.append(int(np.argmax(gaps)))
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_herding_and_kcenter_pick_what_the_references_pick(seed):
    from mgdd.start import herding_indices, kcenter_indices
    f = torch.randn(12, 4, generator=torch.Generator().manual_seed(seed))
    assert herding_indices(f, 5) == herding_reference(f, 5)
    assert kcenter_indices(f, 5) == kcenter_reference(f, 5)


@pytest.mark.parametrize("init", ["herding", "kcenter"])
def test_krr_pixel_from_a_coreset_starts_at_that_coreset(tiny_objective, init):
    from mgdd.baselines import coreset, krr_pixel
    obj = tiny_objective
    start = {}
    krr_pixel(obj, 2, 3, snapshots=[0], init=init, progress=False, on_snapshot=lambda s, d: start.setdefault(s, d))
    picked = coreset(obj, 2, init)
    # step 0 is the coreset itself, class-major, with the coreset's own soft labels
    torch.testing.assert_close(start[0].images, picked.images)
    torch.testing.assert_close(start[0].labels, obj.labels(picked.images))
    assert start[0].meta["init"] == init and start[3].meta["init"] == init
    assert not torch.equal(start[3].images, picked.images)  # and the pixels then move
    # the default start is the seeded random X_0 and records no init (older sets read the same)
    rand = {}
    krr_pixel(obj, 2, 1, snapshots=[0], seed=5, progress=False, on_snapshot=lambda s, d: rand.setdefault(s, d))
    torch.testing.assert_close(rand[0].images, sample_init(obj.dataset, 2, seed=5)[0])
    assert "init" not in rand[0].meta
    with pytest.raises(UsageError, match="init"):
        krr_pixel(obj, 2, 1, init="mean", progress=False)


# ---------------------------------------------------------------------------- evaluation protocol

def test_evaluation_protocol_lr_drop_and_losses(tiny_dataset, monkeypatch):
    import importlib

    from mgdd.distilled import DistilledSet
    ev = importlib.import_module("mgdd.evaluate")  # the module (the package exports a function of that name)

    lrs, losses = [], []

    class SpySGD(torch.optim.SGD):
        def step(self, closure=None):
            lrs.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(ev.torch.optim, "SGD", SpySGD)
    real_soft, real_ce = ev.soft_label_loss, ev.F.cross_entropy
    monkeypatch.setattr(ev, "soft_label_loss", lambda o, t, temp: losses.append(("soft", temp)) or real_soft(o, t, temp))
    monkeypatch.setattr(ev.F, "cross_entropy", lambda *a, **k: losses.append("ce") or real_ce(*a, **k))
    x, y = sample_init(tiny_dataset, 2, seed=0)
    meta = {"dataset": "tiny", "classes": list(tiny_dataset.classes), "mean": tiny_dataset.mean,
            "std": tiny_dataset.std, "ipc": 2}
    soft = DistilledSet(x, torch.nn.functional.one_hot(y, 3).float(), meta)
    res = ev.evaluate(soft, tiny_dataset, model="mlp", epochs=4, lr=0.1, progress=False)
    # x0.1 at half; soft labels -> cross-entropy to softmax(labels / 0.25) by default
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01]) and set(losses) == {("soft", 0.25)}
    assert res["soft_loss"] == "cross-entropy, T=0.25"
    lrs.clear(), losses.clear()
    res = ev.evaluate(soft, tiny_dataset, model="mlp", epochs=2, lr=0.1, progress=False, soft_loss="mse")
    assert set(losses) == {("soft", None)} and res["soft_loss"] == "mse"  # None: MSE
    losses.clear()
    ev.evaluate(DistilledSet(x, y, meta), tiny_dataset, model="mlp", epochs=2, lr=0.1, progress=False)
    assert set(losses) == {"ce"}  # hard -> cross-entropy


def test_soft_label_loss_follows_what_the_set_records(tmp_path):
    from mgdd.distilled import DEFAULT_EVALUATION, DistilledSet
    from mgdd.errors import UsageError
    from mgdd.evaluate import resolve_soft_loss

    x, y = torch.rand(4, 1, 8, 8), torch.rand(4, 2)
    meta = {"dataset": "tiny", "classes": ["a", "b"], "mean": [0.5], "std": [0.25], "ipc": 2}
    # a set saved now records cross-entropy at T = 0.25 and reads it back
    path = DistilledSet(x, y, dict(meta)).save(tmp_path / "new.safetensors")
    new = DistilledSet.load(path)
    assert new.meta["evaluation"]["soft_loss"] == "ce" and resolve_soft_loss(new) == ("ce", 0.25)
    # a set saved before the soft loss was recorded says MSE in its text, and keeps MSE
    old_eval = {**{k: v for k, v in DEFAULT_EVALUATION.items() if k not in ("soft_loss", "temperature")},
                "loss": "mse for soft labels, cross-entropy for hard"}
    old = DistilledSet.load(DistilledSet(x, y, {**meta, "evaluation": old_eval}).save(tmp_path / "old.safetensors"))
    assert resolve_soft_loss(old) == ("mse", None)
    # its own temperature; what the caller asks wins; a temperature alone means cross-entropy
    own = DistilledSet(x, y, {**meta, "evaluation": {"soft_loss": "ce", "temperature": 0.5}})
    assert resolve_soft_loss(own) == ("ce", 0.5)
    assert resolve_soft_loss(own, "mse") == ("mse", None)
    assert resolve_soft_loss(own, "ce") == ("ce", 0.5)
    assert resolve_soft_loss(old, "ce") == ("ce", 0.25)
    assert resolve_soft_loss(old, temperature=0.1) == ("ce", 0.1)
    with pytest.raises(UsageError, match="temperature is for the cross-entropy"):
        resolve_soft_loss(own, "mse", 0.5)
    with pytest.raises(UsageError, match="soft-label loss must be"):
        resolve_soft_loss(own, "kl")


def test_soft_label_cross_entropy_matches_kl_to_the_tempered_labels():
    from mgdd.evaluate import soft_label_loss
    g = torch.Generator().manual_seed(0)
    out, target = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert soft_label_loss(out, target, None).item() == pytest.approx(torch.nn.functional.mse_loss(out, target).item())
    p = torch.softmax(target / 0.5, 1)
    # cross-entropy = KL(p || q) + H(p), term by term
    kl = torch.nn.functional.kl_div(torch.log_softmax(out, 1), p, reduction="batchmean")
    entropy = -(p * p.log()).sum(1).mean()
    assert soft_label_loss(out, target, 0.5).item() == pytest.approx((kl + entropy).item(), rel=1e-6)
    # one-hot-like labels at a low temperature: the hard-label cross-entropy
    hard = torch.randint(0, 4, (5,), generator=g)
    onehot = torch.nn.functional.one_hot(hard, 4).float()
    ce = torch.nn.functional.cross_entropy(out, hard).item()
    assert soft_label_loss(out, onehot, 1e-3).item() == pytest.approx(ce, rel=1e-5)


# ---------------------------------------------------------------------------- feature cache

def test_feature_cache_is_hit_and_a_corrupt_entry_is_recomputed(tiny_dataset, tmp_path, monkeypatch):
    import mgdd.features as features
    from mgdd.features import FeatureConfig
    from mgdd.objective import KRRObjective

    calls = []
    real = features.compute_moments
    monkeypatch.setattr(features, "compute_moments", lambda *a, **k: calls.append(1) or real(*a, **k))
    build = lambda: KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2,  # noqa: E731
                                 cache_dir=tmp_path)
    first = build()
    assert len(calls) == 2 and len(list(tmp_path.glob("*.safetensors"))) == 2
    second = build()
    assert len(calls) == 2  # both networks read from the cache
    for a, b in zip(first.moments, second.moments):
        assert torch.equal(a.gram, b.gram)
    victim = sorted(tmp_path.glob("*.safetensors"))[0]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated
    third = build()
    assert len(calls) == 3  # only the damaged entry was recomputed ...
    for a, b in zip(first.moments, third.moments):
        assert torch.equal(a.gram, b.gram)
    build()
    assert len(calls) == 3  # ... and replaced by a good one


# ---------------------------------------------------------------------------- progress and structure

class FakeLog(io.StringIO):
    def isatty(self):
        return False


def test_progress_writes_lines_in_a_log():
    from mgdd.progress import Progress
    log = FakeLog()
    bar = Progress(50, "adapt", stream=log)
    for _ in range(50):
        bar.update(1, loss=0.5)
    lines = log.getvalue().splitlines()
    assert 10 <= len(lines) <= 11 and lines[-1].startswith("[adapt] 50/50 loss 0.5")
    quiet = FakeLog()
    p = Progress(50, "adapt", enabled=False, stream=quiet)
    p.update(50)
    assert quiet.getvalue() == ""


def test_progress_estimates_the_time_left_from_this_process_rate():
    from mgdd.progress import Progress, remaining
    assert remaining(10.0, 0, 5) == ""                # no step done yet: no rate
    assert remaining(10.0, 5, 0) == ""                # finished
    assert remaining(10.0, 5, 5) == ", about 10 s left"
    assert remaining(60.0, 1, 30) == ", about 30 min left"
    assert remaining(60.0, 1, 300) == ", about 5.0 h left"
    log = FakeLog()
    bar = Progress(300, "train", stream=log, initial=200)  # a resumed job: 200 steps done before
    bar._t0 -= 100.0                                      # 100 s into this process ...
    bar.update(50)                                        # ... and 50 steps: 2 s a step, 50 left
    assert log.getvalue().splitlines()[-1] == "[train] 250/300 (100 s, about 2 min left)"
    bar.update(50)
    assert log.getvalue().splitlines()[-1] == "[train] 300/300 (100 s)"


def module_graph():
    root = Path(__file__).resolve().parents[1] / "mgdd"
    mods = {}
    for p in root.rglob("*.py"):
        parts = p.relative_to(root.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for name, p in mods.items():
        pkg = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= {t for t in [target] + [f"{target}.{a.name}" for a in node.names] if t in mods}
        graph[name] = deps - {name}
    return graph


def test_no_import_cycle_and_nothing_imports_the_cli():
    graph = module_graph()
    # a package's __init__ re-exports its modules: edges into a package are not dependencies
    packages = {"mgdd", "mgdd.bench", "mgdd.cli"}
    state = {}

    def visit(n, path):
        state[n] = "open"
        for d in graph[n] - packages:
            assert state.get(d) != "open", f"import cycle: {' -> '.join(path + [d])}"
            if d not in state:
                visit(d, path + [d])
        state[n] = "done"

    for n in graph:
        if n not in state:
            visit(n, [n])
    cli = lambda m: m == "mgdd.cli" or m.startswith("mgdd.cli.")  # noqa: E731
    assert [n for n, d in graph.items() if not cli(n) and any(cli(m) for m in d)] == ["mgdd.__main__"]



def test_damaged_feature_cache_entries_are_recomputed_not_used(tiny_dataset, tmp_path, capsys):
    """#43 (6): a cached entry with flipped bits, a NaN or a wrong shape fails its digest or shape
    check and is recomputed (with one warning line), so the labels never come from it."""
    from mgdd.features import FeatureConfig
    from mgdd.io import load_tensors, save_tensors
    from mgdd.objective import KRRObjective
    make = lambda: KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=1, cache_dir=tmp_path)  # noqa: E731
    clean = make().moments[0]
    path = next(tmp_path.glob("*-n0-total.safetensors"))
    t, info = load_tensors(path)
    assert info["sha256"]
    damages = {"bit flip": lambda t: t["gram"].view(-1)[5].mul_(1.0001),
               "nan": lambda t: t["sums"].view(-1)[0].fill_(float("nan")),
               "shape": lambda t: t.update(sums=t["sums"][:, :-1].clone())}
    for what, damage in damages.items():
        t, info = load_tensors(path)
        damage(t)
        save_tensors(path, t, info, force=True)
        capsys.readouterr()
        again = make().moments[0]
        assert "fail their check" in capsys.readouterr().err, what
        assert torch.equal(again.gram, clean.gram) and torch.equal(again.sums, clean.sums), what


def test_saved_bytes_of_an_mlp_are_its_input_and_hidden_maps():
    """Autograd keeps, per image, the flattened input and the two hidden ReLU maps of the MLP
    (d + 2 x 128 floats); the weights are kept once per step, whatever the batch."""
    from mgdd.evaluate import saved_bytes
    from mgdd.models import create_model
    per_image, fixed = saved_bytes(create_model("mlp", 1, 10, (28, 28)), (1, 28, 28), "cpu")
    assert per_image == (28 * 28 + 2 * 128) * 4 and fixed > 0


@pytest.mark.parametrize("stop_at", [2, 4])
def test_an_evaluation_resumed_from_its_checkpoint_ends_with_the_uninterrupted_weights(tiny_dataset, tmp_path,
                                                                                     monkeypatch, stop_at):
    """A run stopped after epoch 2 (before the learning rate drops at half of 6) or 4 (after) and
    resumed from its file ends with the weights of the run never stopped, bit for bit: the network,
    the momentum, the learning rate and the sampler's random state (DSA draws from it) are all in
    the file. A finished run's file is only tested again."""
    import importlib
    ev = importlib.import_module("mgdd.evaluate")
    from mgdd.baselines import random_real
    ds = random_real(tiny_dataset, 8, seed=0)  # 24 images, batch 16: two batches an epoch
    args = (ds, tiny_dataset, "convnet", 6, 3, 0.01, 16, True, "cpu", False)
    whole, _, _, _ = ev.fit(*args)
    ckpt = tmp_path / "seed3.safetensors"

    class Stop(Exception):
        pass

    class StopAt(ev.Progress):  # the run is killed after the checkpoint of epoch stop_at
        def update(self, n=1, **postfix):
            super().update(n, **postfix)
            if self.n == stop_at:
                raise Stop()

    monkeypatch.setattr(ev, "Progress", StopAt)
    with pytest.raises(Stop):
        ev.fit(*args, checkpoint=ckpt, checkpoint_seconds=0)
    monkeypatch.setattr(ev, "Progress", ev.Progress.__mro__[1])
    resumed, seconds, _, at = ev.fit(*args, checkpoint=ckpt, resume=True)
    assert at == stop_at and seconds > 0
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    # the finished run's file: nothing left to train, the same network
    again, _, _, at = ev.fit(*args, checkpoint=ckpt, resume=True)
    assert at == 6 and all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), again.state_dict().values()))
    # evaluate() names each run's file by its seed and reports where a run resumed
    res = ev.evaluate(ds, tiny_dataset, epochs=6, runs=2, seed=3, dsa=True, batch_size=16, progress=False,
                      checkpoint_dir=tmp_path, resume=True)
    assert [r.get("resumed_at_epoch") for r in res["per_run"]] == [6, None]
    assert (tmp_path / "seed4.safetensors").is_file()


def test_a_resumed_evaluation_refuses_another_set_or_other_settings(tiny_dataset, tmp_path):
    """A checkpoint belongs to one run: resuming it with another learning rate or on another set
    is refused before training, naming what differs; without resume the file is written over."""
    import importlib
    ev = importlib.import_module("mgdd.evaluate")
    from mgdd.baselines import random_real
    from mgdd.errors import UsageError
    ds, other = random_real(tiny_dataset, 2, seed=0), random_real(tiny_dataset, 2, seed=1)
    ckpt = tmp_path / "c.safetensors"
    ev.fit(ds, tiny_dataset, "convnet", 2, 0, 0.01, 16, False, "cpu", False, checkpoint=ckpt)
    with pytest.raises(UsageError, match=r"lr 0\.01 \(now 0\.02\)"):
        ev.fit(ds, tiny_dataset, "convnet", 2, 0, 0.02, 16, False, "cpu", False, checkpoint=ckpt, resume=True)
    with pytest.raises(UsageError, match="set "):
        ev.fit(other, tiny_dataset, "convnet", 2, 0, 0.01, 16, False, "cpu", False, checkpoint=ckpt, resume=True)
    assert ev.fit(other, tiny_dataset, "convnet", 2, 0, 0.01, 16, False, "cpu", False, checkpoint=ckpt)[3] == 0


def test_micro_batches_train_the_same_network_and_bound_activations(tiny_dataset, monkeypatch):
    """A batch split into micro-batches makes the update of the whole batch (instance norm is per
    image); the split is chosen from the measured activations, and a batch-norm network, which
    cannot be split, is checked against the memory available instead."""
    import importlib
    ev = importlib.import_module("mgdd.evaluate")  # the module: the package exports a function of its name
    from mgdd.baselines import random_real
    from mgdd.errors import UsageError
    ds = random_real(tiny_dataset, 8, seed=0)  # 24 images, batch 16: one full and one partial batch
    args = (ds, tiny_dataset, "convnet", 4, 0, 0.01, 16, False, "cpu", False)
    whole, _, m_whole, _ = ev.fit(*args, micro_batch=None)
    assert m_whole == 16  # far under the activation budget: no split
    split, _, m, _ = ev.fit(*args, micro_batch=5)
    assert m == 5
    for (k, a), b in zip(whole.state_dict().items(), split.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    per_image, fixed = ev.saved_bytes(whole, ds.images.shape[1:], "cpu")
    monkeypatch.setattr(ev, "TRAIN_ACTIVATIONS", fixed + 3 * per_image)
    assert ev.micro_batch_size(whole, ds.images.shape[1:], 16, "cpu") == 3
    assert ev.evaluate(ds, tiny_dataset, epochs=1, progress=False)["per_run"][0]["micro_batch"] == 3
    bn = ev.create_model("convnet-bn", tiny_dataset.channels, tiny_dataset.num_classes, tiny_dataset.image_size)
    assert ev.micro_batch_size(bn, ds.images.shape[1:], 16, "cpu") == 16  # not split, and it fits
    monkeypatch.setenv("MGDD_MEMORY_LIMIT", "1K")
    with pytest.raises(UsageError, match="batch norm.*--batch-size"):
        ev.micro_batch_size(bn, ds.images.shape[1:], 16, "cpu", "convnet-bn")


def test_label_mu_gcv_and_fixed_on_the_objective(tiny_dataset):
    """label_mu: None keeps mu's labels; a number is that ridge for the labels only (the loss keeps
    mu); "gcv" is krr.solve_labels_gcv, its pick kept for the set's meta (distilled_meta)."""
    from mgdd import krr
    from mgdd.features import FeatureConfig, features
    from mgdd.objective import KRRObjective
    make = lambda **kw: KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2, cache=False, **kw)  # noqa: E731
    base, fixed, gcv = make(label_mu=None), make(label_mu=0.1), make(label_mu="gcv")
    x, _ = sample_init(tiny_dataset, 2, seed=4)
    feats = [features(net, x) for net in base.pool.nets]
    stats = [m.for_classes(None) for m in base.moments]
    lam = base.lam_for(len(x))
    torch.testing.assert_close(fixed.labels(x), krr.solve_labels_stacked(feats, stats, lam, 0.1).float())
    assert not torch.allclose(fixed.labels(x), base.labels(x))
    torch.testing.assert_close(fixed.loss(x), base.loss(x))
    want, mu, _ = krr.solve_labels_gcv(feats, stats, lam)
    torch.testing.assert_close(gcv.labels(x), want.float())
    assert gcv.describe()["label_mu"] == "gcv" and gcv.label_mu_picked == mu
    assert "label_mu" not in base.describe()
    with pytest.raises(UsageError):
        make(label_mu=-1.0)


def test_label_mu_auto_is_gcv_from_its_images_per_class(tiny_dataset, monkeypatch):
    """The default "auto": mu's labels under GCV_FROM_IPC images a class of the solve (a class subset
    counts its own classes), GCV's from it; the ridge used is kept for the set's meta either way."""
    import mgdd.objective as objective
    from mgdd.features import FeatureConfig
    make = lambda **kw: objective.KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2,  # noqa: E731
                                               cache=False, class_subsets=True, **kw)
    auto, mu, gcv = make(), make(label_mu=None), make(label_mu="gcv")
    assert auto.label_mu == objective.DEFAULT_LABEL_MU == "auto" and auto.describe()["label_mu"] == "auto"
    x, _ = sample_init(tiny_dataset, 2, seed=4)                         # 2 images a class
    monkeypatch.setattr(objective, "GCV_FROM_IPC", 3)
    torch.testing.assert_close(auto.labels(x), mu.labels(x))
    assert auto.label_mu_picked == auto.mu
    monkeypatch.setattr(objective, "GCV_FROM_IPC", 2)
    want = gcv.labels(x)
    assert not torch.allclose(want, mu.labels(x))
    torch.testing.assert_close(auto.labels(x), want)
    assert auto.label_mu_picked == gcv.label_mu_picked
    two = [0, 1]                                                        # 2 classes: 2 images a class again
    torch.testing.assert_close(auto.labels(x[:4], classes=two), gcv.labels(x[:4], classes=two))
    monkeypatch.setattr(objective, "GCV_FROM_IPC", 3)
    torch.testing.assert_close(auto.labels(x[:4], classes=two), mu.labels(x[:4], classes=two))
