
import pytest
import torch

from mgdd.adapt import adapt
from mgdd.data import sample_init
from mgdd.errors import CorruptFile, UsageError
from mgdd.generate import generate
from mgdd.generator import GeneratorConfig, MetaGenerator


def small_gen(channels=1, seed=0):
    torch.manual_seed(seed)
    g = MetaGenerator(GeneratorConfig(channels=channels, width=8, stem_width=4, blocks=2, context_dim=8,
                                      dilations=[1, 2], guide_input=False))
    return g


def perturbed(seed=0):
    g = small_gen(seed=seed)
    with torch.no_grad():  # make the output layer non-zero so the generator is not the identity
        g.out.weight.normal_(0, 0.1)
    return g


def test_identity_at_step_zero(tiny_dataset):
    g = small_gen()
    x0, y0 = sample_init(tiny_dataset, 3, seed=0)
    assert torch.equal(g(x0, y0, 3), x0)


def test_default_generator_is_small():
    assert MetaGenerator(GeneratorConfig()).num_parameters() < 1_000_000


@pytest.mark.parametrize("ipc", [1, 2, 5])
def test_shapes_and_determinism(tiny_dataset, ipc):
    g = perturbed()
    x0, y0 = sample_init(tiny_dataset, ipc, seed=1)
    out1, out2 = g(x0, y0, 3), g(x0, y0, 3)
    assert out1.shape == x0.shape and torch.equal(out1, out2)


def test_any_resolution_and_channels():
    g = MetaGenerator(GeneratorConfig(channels=3, width=8, stem_width=4, blocks=1, context_dim=4, dilations=[1],
                                      guide_input=False))
    for hw in [(8, 8), (13, 17), (32, 32)]:
        x = torch.randn(4, 3, *hw)
        assert g(x, torch.tensor([0, 0, 1, 1])).shape == x.shape


def test_set_conditioning_is_permutation_equivariant_within_class(tiny_dataset):
    g = perturbed()
    x0, y0 = sample_init(tiny_dataset, 4, seed=2)
    out = g(x0, y0, 3)
    perm = torch.tensor([3, 1, 0, 2, 4, 5, 6, 7, 11, 9, 10, 8])  # shuffle within classes 0 and 2
    torch.testing.assert_close(g(x0[perm], y0[perm], 3), out[perm])
    # and the output of one image depends on its siblings
    x_other = x0.clone()
    x_other[1] = x0[1].flip(-1)
    assert not torch.allclose(g(x_other, y0, 3)[0], out[0])


def test_chunked_generation_equals_unbatched(tiny_dataset):
    g = perturbed()
    x0, y0 = sample_init(tiny_dataset, 10, seed=3)
    with torch.no_grad():
        full = g(x0, y0, 3)
    torch.testing.assert_close(g.generate(x0, y0, 3, chunk=7), full, rtol=1e-5, atol=1e-5)


def test_generation_chunks_shrink_with_the_image_size(tiny_dataset, monkeypatch):
    """generate() caps its chunk by INFER_BUDGET (at 128 px, 768 folded images a chunk kept 11 GB):
    a budget of 4 images makes chunks of 4 whatever chunk= asks, with the unchunked result."""
    from mgdd.generator import MetaGenerator
    g = perturbed()
    x0, y0 = sample_init(tiny_dataset, 10, seed=3)
    with torch.no_grad():
        full = g(x0, y0, 3)
    pixels = x0.shape[-2] * x0.shape[-1]
    monkeypatch.setattr(MetaGenerator, "INFER_BUDGET", MetaGenerator.GRAD_BUDGET * 4 // g.grad_chunk(pixels) + 1)
    assert g.infer_chunk(pixels) == 4
    seen = []
    decode = MetaGenerator._decode_chunks
    monkeypatch.setattr(MetaGenerator, "_decode_chunks", lambda self, *a, **k: seen.append(a[4]) or decode(self, *a, **k))
    torch.testing.assert_close(g.generate(x0, y0, 3, chunk=256), full, rtol=1e-5, atol=1e-5)
    assert seen == [4]


def test_channel_mismatch_is_clear(tiny_dataset):
    g = MetaGenerator(GeneratorConfig(channels=3, width=8, stem_width=4, blocks=1, context_dim=4, dilations=[1],
                                      guide_input=False))
    x0, y0 = sample_init(tiny_dataset, 2, seed=0)
    with pytest.raises(UsageError, match="3-channel"):
        g(x0, y0)


def test_grey_generator_folds_channels(tiny_dataset):
    """A grey generator on RGB images treats each channel as a grey image of the same class:
    three copies of a grey set give the grey result in every channel (class sizes are counted
    in images, so the log-size context is unchanged), and chunked generation agrees."""
    g = perturbed()
    x0, y0 = sample_init(tiny_dataset, 4, seed=5)
    rgb = x0.repeat(1, 3, 1, 1)
    with torch.no_grad():
        grey, colour = g(x0, y0, 3), g(rgb, y0, 3)
    assert colour.shape == rgb.shape
    for c in range(3):
        torch.testing.assert_close(colour[:, c:c + 1], grey, rtol=1e-5, atol=1e-5)
    # distinct channels get distinct outputs, and the channels see each other through the set means
    mixed = torch.cat([x0, x0.flip(-1), x0.flip(-2)], dim=1)
    with torch.no_grad():
        out = g(mixed, y0, 3)
    assert not torch.allclose(out[:, :1], grey, atol=1e-4)
    torch.testing.assert_close(g.generate(mixed, y0, 3, chunk=5), out, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(tmp_path, tiny_dataset):
    g = perturbed()
    g.save_pretrained(tmp_path / "gen", metadata={"note": "x"})
    h = MetaGenerator.from_pretrained(tmp_path / "gen")
    x0, y0 = sample_init(tiny_dataset, 2, seed=0)
    assert torch.equal(g(x0, y0, 3), h(x0, y0, 3)) and h.metadata == {"note": "x"}
    with pytest.raises(UsageError, match="exists"):
        g.save_pretrained(tmp_path / "gen")


def test_corrupt_checkpoint(tmp_path):
    g = small_gen()
    g.save_pretrained(tmp_path / "gen")
    p = tmp_path / "gen" / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-64])
    with pytest.raises(CorruptFile):
        MetaGenerator.from_pretrained(tmp_path / "gen")


def guided_gen(seed=0):
    torch.manual_seed(seed)
    return MetaGenerator(GeneratorConfig(channels=1, width=8, stem_width=4, blocks=2, context_dim=8, dilations=[1, 2]))


def test_guided_generator_needs_guide_and_chunks_match(tiny_objective, tiny_dataset):
    from mgdd.generate import synthesize
    g = guided_gen()
    with torch.no_grad():
        g.out.weight.normal_(0, 0.1)
    x0, y0 = sample_init(tiny_dataset, 6, seed=0)
    with pytest.raises(UsageError, match="guide"):
        g(x0, y0, 3)
    full = synthesize(g, tiny_objective, x0, y0, 3).detach()
    torch.testing.assert_close(synthesize(g, tiny_objective, x0, y0, 3, chunk=5), full, rtol=1e-5, atol=1e-5)


def test_guide_network_count_reaches_the_generator(tiny_objective, tiny_dataset):
    """synthesize(guide_nets=N) feeds the guide of the first N pool networks: the default is
    GUIDE_NETS, another count changes the output, and a count under 1 is refused."""
    from mgdd.errors import UsageError as Usage
    from mgdd.generate import GUIDE_NETS, synthesize
    g = guided_gen()
    with torch.no_grad():
        g.out.weight.normal_(0, 0.1)
    x0, y0 = sample_init(tiny_dataset, 3, seed=0)
    with torch.no_grad():
        default = synthesize(g, tiny_objective, x0, y0, 3)
        same = synthesize(g, tiny_objective, x0, y0, 3, guide_nets=GUIDE_NETS)
        one = synthesize(g, tiny_objective, x0, y0, 3, guide_nets=1)
        want = g(x0, y0, 3, guide=tiny_objective.guide(x0, nets=1))
    assert torch.equal(default, same)
    assert torch.equal(one, want) and not torch.allclose(one, default)
    with pytest.raises(Usage, match="guide_nets"):
        synthesize(g, tiny_objective, x0, y0, 3, guide_nets=0)
    with pytest.raises(Usage, match="guide_nets"):
        synthesize(g, tiny_objective, x0, y0, 3, guide_nets=3)  # more than the pool's 2
    # the default count on a one-network pool takes that network, as before the option
    from mgdd.features import FeatureConfig
    from mgdd.objective import KRRObjective
    small = KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=1, cache=False)
    with torch.no_grad():
        assert torch.equal(synthesize(g, small, x0, y0, 3), g(x0, y0, 3, guide=small.guide(x0, nets=1)))


def test_configs_from_before_the_history_input_left_still_load(tmp_path):
    """Generators saved while the history input existed record history_input: false and load as
    before; one made with it is refused with one message naming the commit that has it."""
    import json
    g = guided_gen()
    g.save_pretrained(tmp_path / "G")
    info = json.loads((tmp_path / "G" / "config.json").read_text())
    assert "history_input" not in info["config"]
    for value, ok in ((False, True), (True, False)):
        from mgdd.io import load_tensors, save_tensors
        tensors, meta = load_tensors(tmp_path / "G" / "model.safetensors")
        meta["config"]["history_input"] = value
        save_tensors(tmp_path / "H" / "model.safetensors", tensors, meta, force=True)
        if ok:
            assert MetaGenerator.from_pretrained(tmp_path / "H").config == g.config
        else:
            with pytest.raises(UsageError, match="d363fff"):
                MetaGenerator.from_pretrained(tmp_path / "H")


def test_adaptation_lowers_the_loss(tiny_objective):
    g = guided_gen()
    log = adapt(g, tiny_objective, steps=30, ipcs=[2], lr=3e-3, progress=False)
    losses = [h["loss"] for h in log["history"]]
    assert sum(losses[-5:]) / 5 < losses[0] - 1e-4


def test_adapt_resume_equals_uninterrupted(tmp_path, tiny_objective):
    a = guided_gen()
    adapt(a, tiny_objective, steps=8, ipcs=[1, 2], lr=3e-3, progress=False)
    b = guided_gen()
    ck = tmp_path / "ck.safetensors"
    adapt(b, tiny_objective, steps=5, ipcs=[1, 2], lr=3e-3, checkpoint=ck, checkpoint_every=5, progress=False)
    c = guided_gen(seed=123)  # different init: everything must come from the checkpoint
    adapt(c, tiny_objective, steps=8, ipcs=[1, 2], lr=3e-3, checkpoint=ck, resume=True, progress=False)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(c.state_dict()[k], v, rtol=1e-6, atol=1e-7)


def test_generate_any_ipc(tiny_objective):
    g = guided_gen()
    for ipc in (1, 3, 7):
        ds = generate(g, tiny_objective, ipc, seed=0)
        assert ds.images.shape == (3 * ipc, 1, 12, 12) and ds.labels.shape == (3 * ipc, 3)
        assert ds.meta["ipc"] == ipc and "generate_seconds" in ds.meta["timing"]
    with pytest.raises(UsageError, match="IPC"):
        generate(g, tiny_objective, 50)
