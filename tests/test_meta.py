"""Meta-learning updates against hand-computed references, resume, and 2-process torchrun."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from mgdd.meta import apply_reptile, fomaml_grad, inner_adapt, meta_train, reptile_delta


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


def tiny_generator():
    from mgdd.generator import GeneratorConfig, MetaGenerator
    torch.manual_seed(0)
    return MetaGenerator(GeneratorConfig(channels=1, width=8, stem_width=4, blocks=1, context_dim=4, dilations=[1]))


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml"])
def test_meta_train_runs_and_resumes_identically(tmp_path, tiny_objective, algorithm):
    kw = dict(algorithm=algorithm, tasks_per_step=2, inner_steps=2, inner_lr=3e-3, ipc_range=(1, 3), progress=False)
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
    for k, v in one.state_dict().items():
        torch.testing.assert_close(two.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    info = json.loads((tmp_path / "two" / "config.json").read_text())
    assert info["metadata"]["world_size"] == 2
