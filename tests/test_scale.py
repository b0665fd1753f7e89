"""Issue #41: the field's shapes in bounded memory. The total-Gram layout against the per-class
one, the pooled feature grid, the streamed (chunked) features and their gradient, the memory
estimates and their refusals, and the sharded (torchrun) precompute against one process."""

import os

import pytest
import torch

from mgdd import krr
from mgdd.errors import UsageError
from mgdd.features import (FeatureConfig, FeaturePool, chunk_size, features, make_feature_net,
                           moments_bytes)
from mgdd.objective import KRRObjective


def test_feature_grid_pools_only_maps_larger_than_the_grid():
    # 28 and 32 px keep their 4 x 4 map (d = width * 16) exactly; 64 and 128 px are pooled to it
    for size, pooled in [(28, False), (32, False), (64, True), (128, True)]:
        net = make_feature_net(FeatureConfig(width=8), 3, (size, size), seed=0)
        assert (net.dim, net.pooled) == (8 * 16, pooled)
        assert net(torch.randn(2, 3, size, size)).shape == (2, 8 * 16)
    # grid 8 at 64 px is today's unpooled 8 x 8 map; the same weights give the same features
    wide = make_feature_net(FeatureConfig(width=8, grid=8), 3, (64, 64), seed=0)
    plain = make_feature_net(FeatureConfig(width=8, grid=4), 3, (64, 64), seed=0)
    assert (wide.dim, wide.pooled) == (8 * 64, False)
    x = torch.randn(2, 3, 64, 64)
    pooled = torch.nn.functional.avg_pool2d(wide.body(x), 2).flatten(1) * plain.scale
    torch.testing.assert_close(plain(x), pooled)
    # unpooled records and cache keys read as before the option; pooled ones name the grid
    assert "grid" not in FeaturePool(FeatureConfig(width=8), 1, (28, 28), size=1).describe_config()
    assert FeaturePool(FeatureConfig(width=8), 1, (64, 64), size=1).describe_config()["grid"] == 4
    with pytest.raises(UsageError, match="grid"):
        make_feature_net(FeatureConfig(width=8, grid=0), 1, (28, 28), seed=0)


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_streamed_features_and_their_gradient_equal_one_pass(chunk):
    net = make_feature_net(FeatureConfig(width=8, depth=2), 3, (12, 12), seed=1)
    x = torch.randn(7, 3, 12, 12, requires_grad=True)
    w = torch.randn(7, net.dim)
    one = net(x)
    (g_one,) = torch.autograd.grad((one * w).sum() + one.pow(2).sum(), x)
    streamed = features(net, x, chunk=chunk)
    (g_streamed,) = torch.autograd.grad((streamed * w).sum() + streamed.pow(2).sum(), x)
    torch.testing.assert_close(streamed, one, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_streamed, g_one, rtol=1e-5, atol=1e-6)


def test_chunk_size_bounds_one_chunks_activations():
    small = make_feature_net(FeatureConfig(), 1, (28, 28), seed=0)
    large = make_feature_net(FeatureConfig(), 3, (128, 128), seed=0)
    assert chunk_size(small) == 1024  # today's chunk at 28 px
    n = chunk_size(large)
    assert 1 <= n < 256 and n * 4 * large.activation_floats[0] <= 2**30
    m = chunk_size(large, grad=True)
    assert m < n and m * 4 * large.activation_floats[1] <= 2**28
    # measured: a no-grad chunk's peak stays within the budget's bound
    x = torch.randn(8, 3, 128, 128)
    with torch.no_grad():
        assert large(x).shape == (8, 1024)


def test_the_loss_streams_a_large_set_with_the_same_value_and_gradient(tiny_dataset, monkeypatch):
    from mgdd import features as feats
    obj = KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=1, cache=False)
    x = tiny_dataset.train_x[:20].clone().requires_grad_(True)
    loss = obj.pool_loss(x, 0)
    (g,) = torch.autograd.grad(loss, x)
    monkeypatch.setattr(feats, "chunk_size", lambda net, budget=0, grad=False: 3)  # force 7 chunks
    loss2 = obj.pool_loss(x, 0)
    (g2,) = torch.autograd.grad(loss2, x)
    torch.testing.assert_close(loss2, loss)
    torch.testing.assert_close(g2, g, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(obj.labels(x.detach()), obj.labels(x.detach()))


def test_moments_memory_does_not_grow_with_the_class_count():
    # 8 networks, d = 1,024: 200 classes need the same total Gram as 10 (plus K x d sums)
    assert moments_bytes(200, 1024, False) < 1.3 * moments_bytes(10, 1024, False)
    assert moments_bytes(200, 1024, True) > 150 * moments_bytes(200, 1024, False)
    assert 8 * moments_bytes(10, 1024, True) == pytest.approx(0.67e9, rel=0.05)  # the table


def test_refusals_name_the_estimate_and_the_option(tiny_dataset, monkeypatch):
    obj = KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2, cache=False)
    monkeypatch.setenv("MGDD_MEMORY_LIMIT", "64K")
    with pytest.raises(UsageError, match=r"label solve .* would need about .* --pool-size"):
        obj.labels(torch.randn(300, 1, 12, 12))
    monkeypatch.setenv("MGDD_MEMORY_LIMIT", "600K")
    # per-class moments (meta-training) are refused where the total fits
    with pytest.raises(UsageError, match=r"3 classes x d\^2.* fewer classes"):
        KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=8, cache=False, class_subsets=True)
    KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=8, cache=False)
    assert krr.stacked_solve_bytes(10, [64] * 2) < krr.stacked_solve_bytes(1000, [64] * 2)


def test_adaptation_refuses_a_step_that_would_not_fit(tiny_objective, monkeypatch, tmp_path):
    """An adaptation step keeps every pass's set for its gradient: its peak is estimated from the
    shapes before any step, refused with the sizes that help, and nothing is written."""
    from mgdd.adapt import adapt
    from mgdd.generate import training_step_bytes
    from mgdd.generator import GeneratorConfig, MetaGenerator
    small, large = training_step_bytes(tiny_objective, 1, 4), training_step_bytes(tiny_objective, 4, 4)
    assert small < large < training_step_bytes(tiny_objective, 4, 8)
    rebuilt = training_step_bytes(tiny_objective, 4, 4, rebuild_guides=True)
    assert small < rebuilt < large  # even with its guides rebuilt in the backward, IPC 4 does not fit
    gen = MetaGenerator(GeneratorConfig(channels=1, width=8, stem_width=4, context_dim=8))
    monkeypatch.setenv("MGDD_MEMORY_LIMIT", str(int((small + rebuilt) / 2)))
    with pytest.raises(UsageError, match=r"adaptation step at IPC 4 \(12 images .* would need about .*--adapt-ipcs"):
        adapt(gen, tiny_objective, steps=1, ipcs=[1, 4], passes=4, checkpoint=tmp_path / "ck", progress=False)
    assert not (tmp_path / "ck").exists()
    adapt(gen, tiny_objective, steps=1, ipcs=[1], passes=4, progress=False)  # the smaller size fits


def _guides_seen(objective, monkeypatch):
    """Wrap objective.guide: a weak reference to each guide it returns (alive or not, later)."""
    import weakref
    seen, real = [], objective.guide

    def guide(*a, **k):
        g = real(*a, **k)
        seen.append(weakref.ref(g))
        return g
    monkeypatch.setattr(objective, "guide", guide)
    return seen


def test_a_training_pass_can_rebuild_its_guides_in_the_backward(tiny_objective, monkeypatch):
    """#41: with rebuild_guides the passes keep no guide for the backward (each is freed once its
    pass is done), the backward computes each again from the pass's input, and the loss and
    every gradient are the ones of the passes that kept them, bit for bit."""
    import random

    from mgdd.generate import unrolled_loss
    from mgdd.generator import GeneratorConfig, MetaGenerator
    torch.manual_seed(0)
    gen = MetaGenerator(GeneratorConfig(channels=1, width=8, stem_width=4, context_dim=8))
    torch.nn.init.normal_(gen.out.weight, std=0.1)  # not the identity, so every layer has a gradient
    monkeypatch.setattr(MetaGenerator, "GRAD_BUDGET", 4 * 144 * 200 * 2)  # a few images a chunk: streamed
    assert gen.grad_chunk(144) < 3 * 4
    seen = _guides_seen(tiny_objective, monkeypatch)

    def step(rebuild):
        seen.clear()
        gen.zero_grad()
        loss = unrolled_loss(gen, tiny_objective, 4, random.Random(3), passes=3, rebuild_guides=rebuild)
        alive = sum(r() is not None for r in seen)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in gen.parameters()], alive, len(seen)

    loss, grads, alive, computed = step(False)
    assert (alive, computed) == (3, 3)   # every pass's guide held for the backward
    loss2, grads2, alive2, computed2 = step(True)
    assert (alive2, computed2) == (0, 6)  # none held; each computed again in the backward
    assert torch.equal(loss2, loss)
    assert all(torch.equal(a, b) for a, b in zip(grads2, grads)) and grads[0].abs().sum() > 0


def test_adaptation_rebuilds_the_guides_when_the_step_fits_only_without_them(tiny_objective, monkeypatch,
                                                                              capsys):
    """Between the two estimates, adaptation rebuilds the guides in the backward, says so, and
    adapts to the same weights as with them kept."""
    from mgdd.adapt import adapt
    from mgdd.generate import training_step_bytes
    from mgdd.generator import GeneratorConfig, MetaGenerator
    monkeypatch.setattr(MetaGenerator, "GRAD_BUDGET", 4 * 144 * 200 * 2)
    kept, rebuilt = (training_step_bytes(tiny_objective, 4, 2, rebuild_guides=r) for r in (False, True))
    runs = []
    for limit in (None, (kept + rebuilt) / 2):
        if limit:
            monkeypatch.setenv("MGDD_MEMORY_LIMIT", str(int(limit)))
        torch.manual_seed(0)
        gen = MetaGenerator(GeneratorConfig(channels=1, width=8, stem_width=4, context_dim=8))
        log = adapt(gen, tiny_objective, steps=2, ipcs=[4], passes=2)
        runs.append((log["rebuild_guides"], [p.detach().clone() for p in gen.parameters()]))
    assert [r for r, _ in runs] == [False, True]
    assert "computed again in the backward" in capsys.readouterr().err
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_meta_training_asks_for_per_class_moments(tiny_objective):
    from mgdd.generator import GeneratorConfig, MetaGenerator
    from mgdd.meta import meta_train
    with pytest.raises(UsageError, match="class_subsets=True"):
        meta_train(MetaGenerator(GeneratorConfig(width=8, stem_width=4, context_dim=8)), tiny_objective, 1,
                   progress=False)


def test_the_total_is_read_from_a_per_class_cache_entry(tiny_dataset, tmp_path, monkeypatch):
    from mgdd import features as feats
    make = lambda subsets: KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2,  # noqa: E731
                                        cache_dir=tmp_path, class_subsets=subsets)
    per = make(True)
    calls = []
    real = feats.compute_moments
    monkeypatch.setattr(feats, "compute_moments", lambda *a, **k: calls.append(1) or real(*a, **k))
    total = make(False)
    assert calls == []  # summed from the per-class entries, then cached as totals
    for a, b in zip(per.moments, total.moments):
        assert not b.per_class
        torch.testing.assert_close(b.gram, a.gram.sum(0))
    assert len(list(tmp_path.glob("*-total.safetensors"))) == 2
    make(False)
    assert calls == []


def _shard_worker(rank, world, init, data, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    x, y = torch.load(data)
    pool = FeaturePool(FeatureConfig(width=8, depth=2), 1, (12, 12), size=2)
    for per_class in (False, True):
        ms = pool.moments(x, y, 3, cache=False, per_class=per_class)
        if rank == 1:  # every rank ends with the whole data's moments
            torch.save([(m.gram, m.sums, m.counts) for m in ms], f"{out}-{int(per_class)}")
    dist.barrier()
    dist.destroy_process_group()


def test_sharded_precompute_equals_one_process(tiny_dataset, tmp_path):
    import torch.multiprocessing as mp
    data = tmp_path / "data.pt"
    torch.save((tiny_dataset.train_x.float(), tiny_dataset.train_y), data)
    init = f"file://{tmp_path / 'rendezvous'}"
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",)}
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        mp.spawn(_shard_worker, args=(2, init, str(data), str(tmp_path / "m")), nprocs=2, join=True)
    finally:
        for k, v in env.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    single = FeaturePool(FeatureConfig(width=8, depth=2), 1, (12, 12), size=2)
    for per_class in (False, True):
        sharded = torch.load(f"{tmp_path / 'm'}-{int(per_class)}")
        ref = single.moments(tiny_dataset.train_x, tiny_dataset.train_y, 3, cache=False, per_class=per_class)
        for (g, s, c), m in zip(sharded, ref):
            torch.testing.assert_close(g, m.gram)
            torch.testing.assert_close(s, m.sums)
            assert torch.equal(c, m.counts)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_checkpointed_generator_pass_has_the_same_values_and_gradients(channels, monkeypatch):
    from mgdd.generator import GeneratorConfig, MetaGenerator
    torch.manual_seed(0)
    gen = MetaGenerator(GeneratorConfig(channels=1, width=8, stem_width=4, context_dim=8))
    torch.nn.init.normal_(gen.out.weight, std=0.1)  # not the identity, so every layer has a gradient
    gen.double()  # float64, so summation order does not hide a wrong gradient
    # X_0 needs a gradient too, as a later pass's input does (through the chunks and the class sums)
    x0 = torch.randn(10, channels, 12, 12).double().requires_grad_(True)
    guide = torch.randn(10, channels, 12, 12).double()
    y0 = torch.arange(5).repeat_interleave(2)

    def run():
        gen.zero_grad()
        x0.grad = None
        out = gen(x0, y0, 5, guide=guide)
        weights = torch.linspace(-1, 1, out.numel()).double().view_as(out)
        (out * weights).sum().backward()
        # torch.autograd.grad over the parameters, as meta-training takes them (not .grad)
        again = torch.autograd.grad((gen(x0, y0, 5, guide=guide) * weights).sum(), list(gen.parameters()))
        return out.detach(), [p.grad.clone() for p in gen.parameters()], x0.grad.clone(), again

    one, grads, x_grad, again = run()
    monkeypatch.setattr(MetaGenerator, "GRAD_BUDGET", 4 * 144 * 200 * 3)  # 3 folded images a chunk
    assert gen.grad_chunk(144) < len(x0) * channels
    chunked, grads2, x_grad2, again2 = run()
    torch.testing.assert_close(chunked, one)
    torch.testing.assert_close(x_grad2, x_grad)
    assert x_grad.abs().sum() > 0
    for a, b, c, d in zip(grads2, grads, again2, again):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(c, d)
        torch.testing.assert_close(c, a)


def test_mgdd_precompute_fills_the_cache_that_later_commands_read(tiny_npz, tmp_path, monkeypatch, capsys):
    from mgdd import features as feats
    from mgdd.cli import main
    monkeypatch.setenv("MGDD_CACHE", str(tmp_path / "cache"))
    obj = ["--dataset", f"npz:{tiny_npz}", "--pool-size", "2", "--feature-width", "8", "--feature-depth", "2",
           "--quiet"]
    assert main(["precompute", *obj, "--start", "herding"]) == 0
    out = capsys.readouterr().out
    assert "total Gram" in out and "herding orders" in out
    cached = sorted(p.name.split("-s0-")[1] for p in (tmp_path / "cache" / "features").glob("*.safetensors"))
    assert cached == ["n0-herding-orders.safetensors", "n0-total.safetensors", "n1-total.safetensors"]
    calls = []
    monkeypatch.setattr(feats, "compute_moments", lambda *a, **k: calls.append(1))
    assert main(["baseline", "herding", "--soft-labels", *obj, "--ipc", "2", "--out", str(tmp_path / "h.safetensors")]) == 0
    assert calls == []  # read, not recomputed
    assert main(["precompute", *obj, "--no-cache"]) == 2
    assert "only fills the cache" in capsys.readouterr().err
    # greedy's orders to --start-ipc picks a class, beside the moments; --start-ipc needs --start greedy
    assert main(["precompute", *obj, "--start", "greedy", "--start-ipc", "2"]) == 0
    assert "greedy orders" in capsys.readouterr().out
    from mgdd.io import load_tensors
    tensors, _ = load_tensors(next((tmp_path / "cache" / "features").glob("*-greedy-*-orders.safetensors")))
    assert sorted(tensors) == ["c0", "c1", "c2"] and all(len(t) == 2 for t in tensors.values())
    assert main(["precompute", *obj, "--start", "herding", "--start-ipc", "2"]) == 2
    assert "needs --start greedy" in capsys.readouterr().err


@pytest.mark.slow
def test_mgdd_precompute_under_torchrun_writes_the_single_process_moments(tiny_npz, tmp_path):
    import subprocess
    import sys

    from mgdd.io import load_tensors
    args = ["-m", "mgdd", "precompute", "--dataset", f"npz:{tiny_npz}", "--pool-size", "2", "--feature-width", "8",
            "--feature-depth", "2", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name, launcher in (("two", ["-m", "torch.distributed.run", "--nproc_per_node", "2"]), ("one", [])):
        r = subprocess.run([sys.executable, *launcher, *args], env=dict(env, MGDD_CACHE=str(tmp_path / name)),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert ("2 processes" if name == "two" else "1 process") in r.stdout
    for i in range(2):
        two, _ = load_tensors(next((tmp_path / "two" / "features").glob(f"*-n{i}-total.safetensors")))
        one, _ = load_tensors(next((tmp_path / "one" / "features").glob(f"*-n{i}-total.safetensors")))
        for k in ("gram", "sums"):
            torch.testing.assert_close(two[k], one[k])
        assert torch.equal(two["counts"], one["counts"])


def test_an_objective_says_whether_its_moments_were_read_from_the_cache(tiny_dataset, tmp_path):
    # the bench records this beside the precompute's seconds (#43: a cache read is not a precompute)
    make = lambda: KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2,  # noqa: E731
                                cache_dir=tmp_path)
    assert not make().from_cache and make().from_cache
    assert not KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2, cache=False).from_cache


def test_torchrun_evaluate_splits_the_runs_and_rank_0_writes_the_one_process_result(tiny_objective, tmp_path):
    """`mgdd evaluate --runs 3` as torchrun starts it on 2 ranks (gloo, env:// rendezvous): rank 0
    trains runs 0 and 2, rank 1 run 1, and rank 0 writes the same accuracies, run by run, as one
    process (run r is seeded seed + r wherever it trains); rank 1 writes nothing."""
    import json
    import socket
    import subprocess
    import sys

    from mgdd.baselines import random_ls
    random_ls(tiny_objective, 2, seed=0).save(tmp_path / "s.safetensors")
    base = [sys.executable, "-m", "mgdd", "evaluate", str(tmp_path / "s.safetensors"), "--runs", "3",
            "--epochs", "4", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    one = subprocess.run(base + ["--out", str(tmp_path / "one.json")], env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen(base + ["--out", str(tmp_path / f"rank{r}.json")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**env, "WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
             for r in (0, 1)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    # both ranks' exit codes and stderr on a failure: a rank once aborted at teardown (mgdd/stop.py)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(
        f"rank {r}: exit {p.returncode}, result file written: {(tmp_path / f'rank{r}.json').exists()}\n{e}"
        for r, (p, e) in enumerate(zip(procs, errs)))
    ref, got = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "rank0.json").read_text())
    assert not (tmp_path / "rank1.json").exists()
    assert [r["accuracy"] for r in got["per_run"]] == [r["accuracy"] for r in ref["per_run"]]
    assert [r["rank"] for r in got["per_run"]] == [0, 1, 0] and got["ranks"] == 2 and "ranks" not in ref
    assert got["accuracy_mean"] == ref["accuracy_mean"] and got["runs"] == 3
