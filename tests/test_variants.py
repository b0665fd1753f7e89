"""Source variants (variants.py) and meta-training over several sources."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from mgdd.errors import UsageError
from mgdd.variants import VARIANTS, make_variant, parse_variants, with_variants


def unit(ds, x):
    return ds.denormalize(x).clamp(0, 1)


@pytest.mark.parametrize("name", list(VARIANTS) + ["thick+texture"])
def test_a_variant_is_a_renormalised_dataset_with_the_same_labels(tiny_dataset, name):
    v = make_variant(tiny_dataset, name)
    assert v.name == f"{tiny_dataset.name}~{name}" and v.info["variant"] == name
    assert v.train_x.shape == tiny_dataset.train_x.shape and v.test_x.shape == tiny_dataset.test_x.shape
    assert torch.equal(v.train_y, tiny_dataset.train_y) and torch.equal(v.test_y, tiny_dataset.test_y)
    assert v.classes == tiny_dataset.classes
    # normalised with its own statistics, like a loaded dataset
    assert abs(v.train_x.mean().item()) < 1e-4 and abs(v.train_x.std().item() - 1) < 1e-3
    assert not torch.allclose(unit(v, v.train_x), unit(tiny_dataset, tiny_dataset.train_x), atol=1e-3)
    # seeded: the same call gives the same images
    assert torch.equal(make_variant(tiny_dataset, name).train_x, v.train_x)


def test_variants_by_hand(tiny_dataset):
    src = unit(tiny_dataset, tiny_dataset.train_x)
    inv = make_variant(tiny_dataset, "invert")
    torch.testing.assert_close(unit(inv, inv.train_x), 1 - src, atol=1e-5, rtol=0)
    # a chain applies its parts in order: dilate the inverted images
    chain = make_variant(tiny_dataset, "invert+thick")
    torch.testing.assert_close(unit(chain, chain.train_x), F.max_pool2d(1 - src, 3, 1, 1), atol=1e-5, rtol=0)
    # texture only darkens, by a factor in [0.35, 1], and its field depends on the seed
    tex = make_variant(tiny_dataset, "texture")
    t = unit(tex, tex.train_x)
    assert (t <= src + 1e-5).all() and (t >= 0.35 * src - 1e-5).all()
    assert not torch.equal(make_variant(tiny_dataset, "texture", seed=1).train_x, tex.train_x)


def test_parse_variants_refuses_unknown_and_repeated_names():
    assert parse_variants(None) == [] and parse_variants("thick, thick+texture") == ["thick", "thick+texture"]
    with pytest.raises(UsageError, match="'swirl'"):
        parse_variants("thick,swirl")
    with pytest.raises(UsageError, match="'swirl' in 'thick\\+swirl'"):
        parse_variants("thick+swirl")
    with pytest.raises(UsageError, match="twice"):
        parse_variants("thick,blur,thick")


def objectives_for(dataset, variants):
    from mgdd.features import FeatureConfig
    from mgdd.objective import KRRObjective
    return [KRRObjective(d, FeatureConfig(width=8, depth=2), pool_size=2, cache=False)
            for d in with_variants(dataset, variants)]


def tiny_generator():
    from mgdd.generator import GeneratorConfig, MetaGenerator
    torch.manual_seed(0)
    gen = MetaGenerator(GeneratorConfig(channels=1, width=8, stem_width=4, blocks=1, context_dim=4, dilations=[1]))
    with torch.no_grad():
        gen.out.weight.normal_(0, 0.05)  # not the identity, so the loss depends on the weights
    return gen


def test_one_source_draws_the_same_tasks_as_before():
    from mgdd.meta import sample_task
    for s in range(5):
        one, two = sample_task(10, (1, 20), 2, 50, 0, s, 1), sample_task(10, (1, 20), 2, 50, 0, s, 1, sources=3)
        assert one["source"] == 0 and {k: v for k, v in two.items() if k != "source"} == \
            {k: v for k, v in one.items() if k != "source"}
    drawn = {sample_task(10, (1, 20), 2, 50, 0, s, j, sources=3)["source"] for s in range(10) for j in range(2)}
    assert drawn == {0, 1, 2}


def test_meta_step_over_sources_runs_each_task_on_its_own_source(tiny_dataset):
    """One unrolled meta-step over [source, variant] is Adam on the mean of each task's unrolled
    loss under the objective of the source that task drew."""
    from mgdd.meta import meta_train, sample_task
    from test_meta import assert_one_adam_step, unrolled_reference
    objs = objectives_for(tiny_dataset, ["invert"])
    smallest = min(tiny_dataset.class_counts())
    # a seed whose two tasks at step 0 draw different sources, so both objectives are exercised
    seed = next(s for s in range(100)
                if {sample_task(3, (1, 3), 2, smallest, s, 0, j, 2)["source"] for j in range(2)} == {0, 1})
    a = tiny_generator()
    ref = copy.deepcopy(a)
    meta_train(a, objs, 1, algorithm="unrolled", passes=2, tasks_per_step=2, ipc_range=(1, 3), meta_lr=1e-2,
               seed=seed, progress=False)
    tasks = [sample_task(3, (1, 3), 2, smallest, seed, 0, j, 2) for j in range(2)]
    loss = sum(unrolled_reference(ref, objs[t["source"]], t, 2) for t in tasks) / 2
    assert_one_adam_step(a, ref, loss, lr=1e-2)
    # and the variant's objective matters: the same tasks all on the source give another loss
    same = sum(unrolled_reference(copy.deepcopy(a), objs[0], t, 2) for t in tasks) / 2
    mixed = sum(unrolled_reference(copy.deepcopy(a), objs[t["source"]], t, 2) for t in tasks) / 2
    assert not torch.allclose(same, mixed)


def test_meta_train_refuses_sources_with_other_classes(tiny_dataset, tiny_objective):
    from mgdd.data import make_dataset
    from mgdd.meta import meta_train
    d = tiny_dataset
    keep = d.train_y < 2
    two = make_dataset("two", unit(d, d.train_x[keep]).numpy(), d.train_y[keep].numpy(),
                       unit(d, d.test_x[d.test_y < 2]).numpy(), d.test_y[d.test_y < 2].numpy(), None, {})
    other = objectives_for(two, [])[0]
    with pytest.raises(UsageError, match="same classes"):
        meta_train(tiny_generator(), [tiny_objective, other], 1, algorithm="unrolled", progress=False)


def test_a_resume_must_read_the_same_sources(tmp_path, tiny_dataset):
    from mgdd.errors import MgddError
    from mgdd.meta import meta_train
    objs = objectives_for(tiny_dataset, ["thick"])
    kw = dict(algorithm="unrolled", tasks_per_step=1, ipc_range=(1, 2), progress=False)
    ck = tmp_path / "c.safetensors"
    meta_train(tiny_generator(), objs, 2, checkpoint=ck, checkpoint_every=2, **kw)
    with pytest.raises(MgddError):
        meta_train(tiny_generator(), objs[:1], 4, checkpoint=ck, resume=True, **kw)
    meta_train(tiny_generator(), objs, 4, checkpoint=ck, resume=True, **kw)


def test_cli_meta_train_with_variants(tmp_path, tiny_npz, capsys):
    from mgdd.cli import main
    from test_cli import OBJ
    ds = f"npz:{tiny_npz}"
    args = ["meta-train", "--source", ds, "--algorithm", "unrolled", "--meta-steps", "2", "--tasks-per-step", "2",
            "--ipc-range", "1,2", "--no-cache", *OBJ]
    assert main(args + ["--source-variants", "thick,thick+texture", "--out", str(tmp_path / "V")]) == 0
    info = json.loads((tmp_path / "V" / "config.json").read_text())["metadata"]
    assert info["sources"] == [ds, f"{ds}~thick", f"{ds}~thick+texture"]
    assert main(args + ["--out", str(tmp_path / "U")]) == 0
    assert "sources" not in json.loads((tmp_path / "U" / "config.json").read_text())["metadata"]
    capsys.readouterr()
    assert main(args + ["--source-variants", "thick,fur", "--out", str(tmp_path / "W")]) == 2
    err = capsys.readouterr().err
    assert "'fur'" in err and "Traceback" not in err and not (tmp_path / "W").exists()
