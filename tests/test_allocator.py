import resource
import sys

import pytest
import torch
import torch.nn.functional as F

from mgdd import allocator
from mgdd.allocator import keep_freed_memory
from mgdd.models import create_model

needs_glibc = pytest.mark.skipif(allocator.glibc() is None, reason="malloc policy applies to glibc only")


def _faults_reallocating(mb: int = 64, times: int = 4) -> int:
    """Minor page faults while freeing and re-filling a buffer of ``mb`` MB ``times`` times."""
    for _ in range(3):  # warm up: the heap settles after a few aligned allocations
        torch.zeros(mb * 2**18)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        torch.zeros(mb * 2**18)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@needs_glibc
def test_freed_memory_is_reused_inside_and_returned_after():
    outside = _faults_reallocating()
    if outside < 100:
        pytest.skip(f"this kernel serves 64 MB with only {outside} faults (huge pages); nothing to observe")
    with keep_freed_memory() as applied:
        assert applied
        inside = _faults_reallocating()
    after = _faults_reallocating()
    assert inside * 10 < outside
    assert after * 2 > outside  # the glibc defaults are back: big blocks are unmapped on free again


@needs_glibc
def test_nested_blocks_keep_the_policy_until_the_outermost_exits():
    outside = _faults_reallocating()
    if outside < 100:
        pytest.skip(f"this kernel serves 64 MB with only {outside} faults (huge pages); nothing to observe")
    with keep_freed_memory():
        with keep_freed_memory():  # e.g. an evaluation inside a training loop
            pass
        still_inside = _faults_reallocating()
    assert still_inside * 10 < outside
    assert allocator.nesting_depth() == 0  # the outermost exit restored the defaults


def test_no_op_outside_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    with keep_freed_memory() as applied:
        assert applied is False


def _train(steps: int = 6) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = create_model("convnet", 1, 3, (24, 24))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(64, 1, 24, 24), torch.randint(0, 3, (64,))
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def test_training_is_bit_identical_under_the_policy():
    reference = _train()
    with keep_freed_memory():
        kept = _train()
    assert all(torch.equal(a, b) for a, b in zip(reference, kept))


def test_feature_moments_are_bit_identical_under_the_policy(tiny_dataset):
    """The precompute runs under the policy (features.py); the moments must not change by a bit."""
    from mgdd.features import FeatureConfig, compute_moments, make_feature_net
    net = make_feature_net(FeatureConfig(width=8, depth=2), 1, (12, 12), seed=0)
    plain = compute_moments(net, tiny_dataset.train_x, tiny_dataset.train_y, 3, chunk=7)
    with keep_freed_memory():
        kept = compute_moments(net, tiny_dataset.train_x, tiny_dataset.train_y, 3, chunk=7)
    assert torch.equal(plain.gram, kept.gram) and torch.equal(plain.sums, kept.sums)
