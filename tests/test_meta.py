"""Meta-learning updates against hand-computed references, resume, and 2-process torchrun."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from mgdd.meta import apply_reptile, fomaml_grad, inner_adapt, meta_train, reptile_delta


@pytest.fixture
def tiny_objective(tiny_meta_objective):
    return tiny_meta_objective  # meta-training's objective keeps per-class moments


def quadratic_loss(target):
    return lambda model, s: ((model.weight - target) ** 2).sum()


def test_inner_adapt_sgd_and_adam_by_hand():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
    ref = copy.deepcopy(model)
    target = torch.tensor([[0.0, 0.0]])
    fast, losses = inner_adapt(model, quadratic_loss(target), steps=2, lr=0.1, optimizer="sgd")
    # w <- w - 0.1 * 2 (w - t) = 0.8 w, twice
    torch.testing.assert_close(fast.weight, ref.weight * 0.64)
    assert torch.equal(model.weight, ref.weight)  # the original is untouched
    assert losses == pytest.approx([5.0, 5.0 * 0.64])
    fast, _ = inner_adapt(model, quadratic_loss(target), steps=1, lr=0.1, optimizer="adam")
    # Adam's first step moves every weight by lr * sign(grad)
    torch.testing.assert_close(fast.weight, ref.weight - 0.1 * torch.sign(ref.weight), rtol=1e-5, atol=1e-6)


def test_reptile_update_by_hand():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    sums = [torch.zeros_like(model.weight)]
    for t in ([[0.0, 0.0]], [[2.0, 4.0]]):
        fast, _ = inner_adapt(model, quadratic_loss(torch.tensor(t)), steps=1, lr=0.25, optimizer="sgd")
        sums[0] += reptile_delta(model, fast)[0]
    # task deltas: -0.5 (w - t): [-0.5, -0.5] and [0.5, 1.5]; mean [0, 0.5]; meta_lr 0.5 -> +[0, 0.25]
    apply_reptile(model, sums, 2, meta_lr=0.5)
    torch.testing.assert_close(model.weight, torch.tensor([[1.0, 1.25]]))


def test_fomaml_gradient_by_hand():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    fast, _ = inner_adapt(model, quadratic_loss(torch.zeros(1, 2)), steps=1, lr=0.25, optimizer="sgd")
    # fast = 0.5 * w = [0.5, 0.5]; query loss ||fast - [1, 0]||^2 -> grad 2 (fast - q) = [-1, 1]
    g = fomaml_grad(fast, ((fast.weight - torch.tensor([[1.0, 0.0]])) ** 2).sum())
    torch.testing.assert_close(g[0], torch.tensor([[-1.0, 1.0]]))


def tiny_generator(guide_input: bool = True):
    from mgdd.generator import GeneratorConfig, MetaGenerator
    torch.manual_seed(0)
    return MetaGenerator(GeneratorConfig(channels=1, width=8, stem_width=4, blocks=1, context_dim=4, dilations=[1],
                                         guide_input=guide_input))


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml", "unrolled"])
def test_meta_train_runs_and_resumes_identically(tmp_path, tiny_objective, algorithm):
    kw = dict(algorithm=algorithm, tasks_per_step=2, inner_steps=2, inner_lr=3e-3, ipc_range=(1, 3), progress=False)
    if algorithm == "unrolled":
        kw.update(passes=2)
    a = tiny_generator()
    log = meta_train(a, tiny_objective, 4, **kw)
    assert len(log["history"]) == 4
    b = tiny_generator()
    ck = tmp_path / "meta.safetensors"
    meta_train(b, tiny_objective, 2, checkpoint=ck, checkpoint_every=2, **kw)
    c = tiny_generator()
    with torch.no_grad():
        for p in c.parameters():
            p.add_(1.0)  # everything must come from the checkpoint
    meta_train(c, tiny_objective, 4, checkpoint=ck, resume=True, **kw)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(c.state_dict()[k], v, rtol=1e-6, atol=1e-7)


def unrolled_reference(gen, objective, task, passes):
    """The unrolled loss written out: passes in turn, each guide a constant input (none for a
    guide-free generator), one network, each pass's KRR loss over X_0's, averaged."""
    from mgdd.checkpoint import step_rng
    from mgdd.data import sample_init
    from mgdd.generate import GUIDE_NETS
    rng = step_rng(task["seed"], 0)
    classes, ipc = task["classes"], task["ipc"]
    x, _ = sample_init(objective.dataset, ipc, seed=rng.randrange(2**31), classes=classes)
    y = torch.arange(len(classes)).repeat_interleave(ipc)
    net = rng.randrange(objective.pool.size)
    start = objective.pool_loss(x, net, classes).detach()
    losses = []
    for _ in range(passes):
        guide = objective.guide(x.detach(), classes=classes, nets=GUIDE_NETS) if gen.config.guide_input else None
        x = gen(x, y, len(classes), guide=guide)
        losses.append(objective.pool_loss(x, net, classes) / start)
    return torch.stack(losses).mean()


def assert_one_adam_step(trained, ref, loss, lr: float):
    """``trained`` must equal ``ref`` after one Adam step (lr) on ``loss``, a function of ref's weights."""
    opt = torch.optim.Adam(ref.parameters(), lr=lr)
    opt.zero_grad()
    loss.backward()
    # a conv bias right before an affine-free GroupNorm is cancelled by it: its gradient is rounding
    # noise (~1e-8 against ~0.1), and Adam turns noise into a full step of either sign; such a
    # weight can only be held to moving at most lr
    scale = max(p.grad.abs().max() for p in ref.parameters() if p.grad is not None)
    noise = {n: p.grad is not None and p.grad.abs().max() < 1e-6 * scale for n, p in ref.named_parameters()}
    before = {n: p.detach().clone() for n, p in ref.named_parameters()}
    opt.step()
    for k, v in ref.state_dict().items():
        if noise.get(k):
            assert (trained.state_dict()[k] - before[k]).abs().max() <= lr * 1.001, k
        else:
            torch.testing.assert_close(trained.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_unrolled_meta_step_is_adam_on_the_unrolled_loss(tiny_objective):
    from mgdd.meta import sample_task
    smallest = min(tiny_objective.dataset.class_counts())
    a = tiny_generator()
    with torch.no_grad():
        a.out.weight.normal_(0, 0.05)  # not the identity, so every pass changes its input
    ref = copy.deepcopy(a)
    meta_train(a, tiny_objective, 1, algorithm="unrolled", passes=3, tasks_per_step=2, ipc_range=(1, 3),
               meta_lr=1e-2, progress=False)
    tasks = [sample_task(tiny_objective.dataset.num_classes, (1, 3), 2, smallest, 0, 0, j) for j in range(2)]
    loss = sum(unrolled_reference(ref, tiny_objective, t, 3) for t in tasks) / 2
    assert_one_adam_step(a, ref, loss, lr=1e-2)


def test_passes_apply_the_generator_in_turn_with_fresh_guides(tiny_objective):
    from mgdd.data import sample_init
    from mgdd.generate import GUIDE_NETS, default_passes, generate, synthesize
    gen = tiny_generator()
    with torch.no_grad():
        gen.out.weight.normal_(0, 0.05)
    x0, y0 = sample_init(tiny_objective.dataset, 2, seed=1)
    x = x0
    for _ in range(3):
        x = gen(x, y0, 3, guide=tiny_objective.guide(x, nets=GUIDE_NETS))
    with torch.no_grad():
        torch.testing.assert_close(synthesize(gen, tiny_objective, x0, y0, 3, passes=3), x)
        torch.testing.assert_close(synthesize(gen, tiny_objective, x0, y0, 3, chunk=4, passes=3), x,
                                   rtol=1e-5, atol=1e-6)
    # generation defaults to the passes the generator records; a set says how many it got
    assert default_passes(gen) == 1
    gen.metadata = {"passes": 3}
    three = generate(gen, tiny_objective, 2, seed=1)
    torch.testing.assert_close(three.images, x.detach(), rtol=1e-5, atol=1e-6)
    assert three.meta["passes"] == 3 and "passes" not in generate(gen, tiny_objective, 2, seed=1, passes=1).meta


def test_a_guide_free_generator_is_plain_forwards(tiny_objective, monkeypatch):
    """--no-guide (the guide's ablation): every pass is gen(x) alone, the pool's gradient is never
    taken, meta-training steps it with Adam on the same unrolled loss, and guide_nets is refused."""
    from mgdd.data import sample_init
    from mgdd.errors import UsageError
    from mgdd.generate import generate, synthesize
    from mgdd.meta import sample_task
    gen = tiny_generator(guide_input=False)
    with torch.no_grad():
        gen.out.weight.normal_(0, 0.05)
    ref = copy.deepcopy(gen)

    def no_guide(*a, **k):
        raise AssertionError("a guide-free generator read the guide")
    monkeypatch.setattr(type(tiny_objective), "guide", no_guide)
    x0, y0 = sample_init(tiny_objective.dataset, 2, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(synthesize(gen, tiny_objective, x0, y0, 3, passes=2), gen(gen(x0, y0, 3), y0, 3))
    with pytest.raises(UsageError, match="reads no guide"):
        generate(gen, tiny_objective, 2, guide_nets=2)

    meta_train(gen, tiny_objective, 1, algorithm="unrolled", passes=2, tasks_per_step=1, ipc_range=(1, 3),
               meta_lr=1e-2, progress=False)
    smallest = min(tiny_objective.dataset.class_counts())
    task = sample_task(tiny_objective.dataset.num_classes, (1, 3), 2, smallest, 0, 0, 0)
    loss = unrolled_reference(ref, tiny_objective, task, 2)  # would fail if a pass read the guide
    assert_one_adam_step(gen, ref, loss, lr=1e-2)


def test_a_resume_must_keep_the_guide(tmp_path, tiny_objective):
    from mgdd.errors import UsageError
    kw = dict(algorithm="unrolled", passes=2, tasks_per_step=1, ipc_range=(1, 3), progress=False)
    ck = tmp_path / "meta.safetensors"
    meta_train(tiny_generator(), tiny_objective, 1, checkpoint=ck, checkpoint_every=1, **kw)
    with pytest.raises(UsageError, match="generator"):
        meta_train(tiny_generator(guide_input=False), tiny_objective, 2, checkpoint=ck, resume=True, **kw)


def test_passes_need_the_unrolled_algorithm(tiny_objective):
    from mgdd.errors import UsageError
    with pytest.raises(UsageError, match="unrolled"):
        meta_train(tiny_generator(), tiny_objective, 1, algorithm="reptile", passes=2, progress=False)


@pytest.mark.slow
def test_torchrun_two_processes_match_single(tmp_path, tiny_npz):
    common = ["meta-train", "--source", f"npz:{tiny_npz}", "--meta-steps", "2", "--tasks-per-step", "4",
              "--inner-steps", "2", "--ipc-range", "1,3", "--pool-size", "2", "--feature-width", "8",
              "--feature-depth", "2", "--quiet", "--no-cache"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "mgdd", *common, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "mgdd", *common, "--out", str(tmp_path / "two")],
                           capture_output=True, text=True, env=env, timeout=300)
    # both ends of stderr: which rank failed first shows at the top, torchrun's summary at the bottom
    assert multi.returncode == 0, multi.stderr[:3000] + "\n...\n" + multi.stderr[-3000:]
    from mgdd.generator import MetaGenerator
    one, two = MetaGenerator.from_pretrained(tmp_path / "one"), MetaGenerator.from_pretrained(tmp_path / "two")
    # The ranks sum their tasks' updates in another order than one process does, and the inner
    # Adam's first step is about lr * sign(grad), so a gradient element that rounds across zero
    # moves its weight by up to 2 * lr / tasks. Such elements are rare (1 of 20736 on an AMD EPYC
    # host); a rank that ran the wrong tasks or skipped the all-reduce would move most of them.
    diffs = torch.cat([(two.state_dict()[k] - v).abs().flatten() for k, v in one.state_dict().items()])
    scale = torch.cat([v.abs().flatten() for v in one.state_dict().values()])
    loose = diffs > 1e-6 + 1e-5 * scale
    assert loose.float().mean() <= 1e-3, f"{int(loose.sum())} of {diffs.numel()} weights differ"
    assert diffs.max() <= 1e-4, f"largest difference {diffs.max():.3g}"
    info = json.loads((tmp_path / "two" / "config.json").read_text())
    assert info["metadata"]["world_size"] == 2
