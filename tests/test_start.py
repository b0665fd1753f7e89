"""Where a set starts (mgdd/start.py, issue #39) and the one-shot k-means row."""

import pytest
import torch

from mgdd.adapt import adapt, generation_defaults
from mgdd.data import sample_init
from mgdd.errors import UsageError
from mgdd.generate import default_start, generate, synthesize
from mgdd.generator import GeneratorConfig, MetaGenerator
from mgdd.meta import meta_train
from mgdd.start import coreset_indices, forget_orders, herding_indices, start_set


def small_gen(seed=0, channels=1):
    torch.manual_seed(seed)
    g = MetaGenerator(GeneratorConfig(channels=channels, width=8, stem_width=4, blocks=2, context_dim=8,
                                      dilations=[1, 2]))
    with torch.no_grad():  # not the identity, so the inputs show in the output
        g.out.weight.normal_(0, 0.1)
    return g


def test_coreset_starts_are_nested_and_class_major(tiny_objective, tiny_dataset):
    """The IPC-k start is the first k images of a larger one, class by class, labelled class-major."""
    for method in ("herding", "kcenter"):
        x5, y5 = start_set(tiny_objective, 5, method)
        forget_orders(tiny_objective)                        # recompute from scratch at the smaller size
        x2, y2 = start_set(tiny_objective, 2, method)
        assert torch.equal(y5, torch.arange(3).repeat_interleave(5))
        assert torch.equal(x2, x5.view(3, 5, *x5.shape[1:])[:, :2].reshape(x2.shape))
        assert torch.equal(y2, torch.arange(3).repeat_interleave(2))
    # the seed does not move a coreset; it does move the random start
    assert torch.equal(start_set(tiny_objective, 3, "herding", seed=1)[0], start_set(tiny_objective, 3, "herding")[0])
    assert torch.equal(start_set(tiny_objective, 3, "random", seed=4)[0], sample_init(tiny_dataset, 3, 4)[0])
    with pytest.raises(UsageError, match="unknown start 'herd'.*herding"):
        start_set(tiny_objective, 1, "herd")


def test_herding_start_is_herding_in_pool_network_0(tiny_objective, tiny_dataset):
    """A second formulation: herding on net 0's features of one class, picked directly."""
    c = 1
    idx = tiny_dataset.class_indices()[c]
    with torch.no_grad():
        f = tiny_objective.pool.nets[0](tiny_dataset.train_x[idx])
    want = idx[torch.tensor(herding_indices(f, 4))]
    # the pickers are greedy, so a shorter order is a prefix of a longer one (what nesting rests on)
    from mgdd.start import kcenter_indices
    for pick in (herding_indices, kcenter_indices):
        assert pick(f, 2) == pick(f, 4)[:2] and len(set(pick(f, 4))) == 4
    assert torch.equal(coreset_indices(tiny_objective, 4, "herding", classes=[c]), want)
    # on a class subset, the classes come in the order asked
    both = coreset_indices(tiny_objective, 4, "herding", classes=[2, c])
    assert torch.equal(both[4:], want) and (tiny_dataset.train_y[both[:4]] == 2).all()


def test_generate_from_the_start_the_generator_records(tmp_path, tiny_objective):
    """generate starts where the generator was meta-trained from (metadata "start") unless told,
    records a non-random start, and the set from a herding start is the generator on that start."""
    g = small_gen()
    g.metadata = {"start": "herding"}
    assert default_start(g) == "herding" and default_start(small_gen()) == "random"
    ds = generate(g, tiny_objective, 2, seed=5)
    assert ds.meta["start"] == "herding"
    x0, y0 = start_set(tiny_objective, 2, "herding")
    with torch.no_grad():
        torch.testing.assert_close(ds.images, synthesize(g, tiny_objective, x0, y0, 3))
    plain = generate(g, tiny_objective, 2, seed=5, start="random")
    assert "start" not in plain.meta and not torch.allclose(plain.images, ds.images)
    with pytest.raises(UsageError, match="unknown start"):
        generate(g, tiny_objective, 2, start="kmeans")
    # adaptation keeps the start, and an adapted generator records it for generation
    log = adapt(g, tiny_objective, steps=2, ipcs=[1, 2], progress=False)
    assert log["start"] == "herding" and generation_defaults(log) == {"start": "herding"}
    assert generation_defaults({"passes": 1, "start": "random"}) == {}


def test_auto_start_is_greedy_up_to_its_size_then_herding(tiny_objective, monkeypatch):
    """"auto" is greedy while classes x ipc <= AUTO_GREEDY_IMAGES, herding above, by size alone; the
    set records what it used, and equals the set made from that start by name."""
    import mgdd.start as start
    monkeypatch.setattr(start, "AUTO_GREEDY_IMAGES", 6)              # 3 classes: greedy to IPC 2
    assert [start.resolve_start("auto", tiny_objective, k) for k in (1, 2, 3)] == ["greedy", "greedy", "herding"]
    assert start.resolve_start("kcenter", tiny_objective, 3) == "kcenter"
    for ipc, used in ((2, "greedy"), (3, "herding")):
        assert torch.equal(start_set(tiny_objective, ipc, "auto")[0], start_set(tiny_objective, ipc, used)[0])
    g = small_gen()
    g.metadata = {"start": "herding", "generate_start": "auto"}  # as the shipped generator records it
    assert default_start(g) == "auto"
    for ipc, used in ((2, "greedy"), (3, "herding")):
        ds = generate(g, tiny_objective, ipc)
        assert ds.meta["start"] == used and ds.meta["start_rule"] == "auto"
        torch.testing.assert_close(ds.images, generate(g, tiny_objective, ipc, start=used).images)
        assert "start_rule" not in generate(g, tiny_objective, ipc, start=used).meta
    # the default shipped: 500 images, so a 10-class set is greedy to IPC 50 and herding at 100
    monkeypatch.undo()
    ten = type("Ten", (), {"class_index": [None] * 10})()
    assert [start.resolve_start("auto", ten, k) for k in (1, 50, 51, 100)] == ["greedy", "greedy", "herding", "herding"]


def test_adapting_the_shipped_generator_keeps_auto_unless_told(tiny_objective):
    """An adapted generator generates from the start it was adapted from: the shipped generator's
    generate_start ("auto") by default, another one when asked, never its stale generate_start."""
    from mgdd.pipeline import adapted_generator, load_generator
    shipped, _ = load_generator("meta", 1)
    assert default_start(shipped) == "auto" and shipped.metadata["start"] == "herding"
    g, _, log = adapted_generator("meta", tiny_objective, 1, [1], progress=False)
    assert log["start"] == "auto" and default_start(g) == "auto" and "generate_start" not in g.metadata
    g, _, log = adapted_generator("meta", tiny_objective, 1, [1], progress=False, start="kcenter")
    assert default_start(g) == "kcenter" and generation_defaults(log) == {"passes": 4, "start": "kcenter"}


def test_meta_train_records_its_start_and_refuses_another_on_resume(tmp_path, tiny_meta_objective):
    from mgdd.errors import MgddError
    g = small_gen()
    ck = tmp_path / "meta.safetensors"
    log = meta_train(g, tiny_meta_objective, 2, "unrolled", tasks_per_step=2, ipc_range=(1, 2), passes=2,
                     checkpoint=ck, checkpoint_every=1, progress=False, start="herding")
    assert log["settings"]["start"] == "herding"
    plain = meta_train(small_gen(), tiny_meta_objective, 1, "unrolled", tasks_per_step=1, ipc_range=(1, 2),
                       progress=False)
    assert "start" not in plain["settings"]  # a random start records nothing: older runs resume as before
    with pytest.raises(MgddError, match="start"):
        meta_train(small_gen(), tiny_meta_objective, 3, "unrolled", tasks_per_step=2, ipc_range=(1, 2), passes=2,
                   checkpoint=ck, resume=True, progress=False)


def test_kmeans_centroids_against_a_direct_lloyd():
    """At k = 1 the centroid is the mean; on well-separated blobs the centroids are the blob means
    (any order); the result is seeded and deterministic."""
    from mgdd.baselines import kmeans_centroids
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 3, 3, generator=g)
    torch.testing.assert_close(kmeans_centroids(x, 1)[0], x.mean(0), rtol=1e-5, atol=1e-6)
    blobs = torch.cat([torch.randn(30, 4, generator=g) * 0.01 + c for c in (-5.0, 0.0, 5.0)])
    c = kmeans_centroids(blobs, 3, seed=2)
    want = torch.stack([blobs[i * 30:(i + 1) * 30].mean(0) for i in range(3)])
    torch.testing.assert_close(c[c[:, 0].argsort()], want, rtol=1e-5, atol=1e-5)
    assert torch.equal(kmeans_centroids(x, 4, seed=3), kmeans_centroids(x, 4, seed=3))


def test_kmeans_baseline_is_class_major_with_ls_labels(tiny_objective, tiny_dataset):
    from mgdd.baselines import kmeans, run_baseline
    hard = kmeans(tiny_objective, 1)
    x, y = tiny_dataset.train_x.float(), tiny_dataset.train_y
    torch.testing.assert_close(hard.images, torch.stack([x[y == c].mean(0) for c in range(3)]), rtol=1e-5, atol=1e-6)
    assert torch.equal(hard.labels, torch.arange(3)) and hard.meta["method"] == "kmeans"
    soft = run_baseline("kmeans", tiny_dataset, 2, objective=tiny_objective, soft_labels=True)
    assert soft.meta["method"] == "kmeans+ls" and soft.labels.shape == (6, 3)
    torch.testing.assert_close(soft.labels, tiny_objective.labels(soft.images))


def test_bench_precomputes_the_herding_orders_once(tmp_path, monkeypatch):
    """The herding orders are a one-time precompute, like the feature moments: the bench records
    them in the orders-herding cell when it builds its objective, and a cell's clock never
    includes a selection (the orders are in memory before any cell runs)."""
    from mgdd.baselines import random_ls
    from mgdd.bench import Bench
    monkeypatch.setenv("MGDD_CACHE", str(tmp_path / "cache"))
    bench = Bench("quick", tmp_path / "bench")
    obj = bench.objective()
    cell = bench.cells["orders-herding"]
    assert cell["method"] == "herding" and cell["seconds"] > 0
    seen = []

    def make():
        seen.append(("herding", 0) in obj.__dict__.get("_start_orders", {}))
        return random_ls(obj, 1), 0.0

    monkeypatch.setattr(Bench, "evaluate_set", lambda self, ds, name, model: {})
    bench.set_cell("probe", make)
    assert seen == [True]


def test_coreset_orders_are_cached_on_disk_and_checked(tmp_path, tiny_dataset, monkeypatch):
    """A second objective on the same data and pool reads the orders from the disk cache beside
    the moments (no feature pass); a damaged entry is recomputed, never used; without a cache
    nothing is written."""
    import mgdd.start as start
    from mgdd.features import FeatureConfig
    from mgdd.io import load_tensors, save_tensors
    from mgdd.objective import KRRObjective
    make = lambda cache=True: KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2,  # noqa: E731
                                           cache=cache, cache_dir=tmp_path)
    first = coreset_indices(make(), 3, "herding")
    path = next(tmp_path.glob("*-n0-herding-orders.safetensors"))
    passes = []
    real = start._class_features
    monkeypatch.setattr(start, "_class_features", lambda o, c: (passes.append(c), real(o, c))[1])
    assert torch.equal(coreset_indices(make(), 3, "herding"), first) and passes == []
    tensors, info = load_tensors(path)
    tensors["c1"] = tensors["c0"].clone()  # class 1's order holds class 0's images: not used
    save_tensors(path, tensors, info, force=True)
    assert torch.equal(coreset_indices(make(), 3, "herding"), first) and passes == [0, 1, 2]
    path.unlink()
    coreset_indices(make(cache=False), 3, "herding")
    assert not list(tmp_path.glob("*-orders.safetensors"))
