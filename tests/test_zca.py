"""ZCA whitening: the transform against a second formulation, and its trip through a distilled set."""

import pytest
import torch

from conftest import make_npz
from mgdd.baselines import random_ls
from mgdd.data import load_dataset
from mgdd.distilled import DistilledSet
from mgdd.errors import UsageError
from mgdd.evaluate import evaluate, images_to_test
from mgdd.features import FeatureConfig
from mgdd.objective import KRRObjective
from mgdd.zca import ZCA


def correlated_images(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(48, 48, generator=g)
    return (torch.randn(n, 48, generator=g) @ mix + 3).reshape(n, 3, 4, 4)


def test_zca_matches_the_inverse_square_root():
    """W = (Sigma + eps I)^-1/2, checked as W (Sigma + eps I) W = I; W is symmetric."""
    x = correlated_images()
    zca = ZCA.fit(x, regularization=0.1)
    flat = x.reshape(len(x), -1).double()
    cov = torch.cov(flat.T)
    eps = 0.1 * torch.linalg.eigvalsh(cov).clamp_min(0).mean()
    w = zca.matrix.double()
    torch.testing.assert_close(w, w.T, rtol=0, atol=1e-5)
    torch.testing.assert_close(w @ (cov + eps * torch.eye(48, dtype=torch.float64)) @ w,
                               torch.eye(48, dtype=torch.float64), rtol=0, atol=1e-3)
    white = zca.apply(x)
    assert white.shape == x.shape and abs(white.mean()) < 1e-4
    torch.testing.assert_close(zca.invert(white), x, rtol=1e-4, atol=1e-3)


def test_zca_refuses_what_it_cannot_do():
    with pytest.raises(UsageError, match="smaller --image-size"):
        ZCA.fit(torch.zeros(2, 3, 64, 64))
    for reg in (0, 1e-30, 1e300, float("nan")):  # #43: 1e300 left an all-zero set, 1e-30 images up to 6e8
        with pytest.raises(UsageError, match="--zca .* is outside"):
            ZCA.fit(correlated_images(), regularization=reg)
    for reg in (1e-4, 0.1, 100.0):
        assert torch.isfinite(ZCA.fit(correlated_images(), regularization=reg).matrix).all()


def test_whitened_set_carries_its_transform(tmp_path):
    path = make_npz(tmp_path / "c.npz", channels=3, size=8)
    plain = load_dataset(f"npz:{path}")
    white = load_dataset(f"npz:{path}", zca=0.1)
    assert white.zca is not None and white.identity()["zca"]["regularization"] == 0.1
    torch.testing.assert_close(white.test_x, white.zca.apply(plain.test_x.float()))
    obj = KRRObjective(white, FeatureConfig(width=8, depth=2), pool_size=2, cache=False)
    ds = random_ls(obj, 2, seed=0)
    ds.save(tmp_path / "s.safetensors")
    back = DistilledSet.load(tmp_path / "s.safetensors")
    assert back.zca is not None and back.zca.same_as(white.zca) and back.meta["zca"]["dims"] == 3 * 8 * 8
    # evaluation whitens the plain test images with the set's transform: the same as the whitened dataset
    torch.testing.assert_close(images_to_test(back, plain), white.test_x)
    assert torch.equal(images_to_test(back, white), white.test_x)
    # pictures of the set are un-whitened back to real pixels
    x0 = plain.denormalize(plain.train_x[:1])
    probe = DistilledSet(white.train_x[:1], back.labels[:1], back.meta, back.zca)
    torch.testing.assert_close(probe.denormalized(), x0.clamp(0, 1), rtol=1e-4, atol=1e-3)
    # every export format carries the transform (#43, 15): .npz and .pt read back without pickle
    import json
    import numpy as np
    from mgdd.distilled import export
    export(back, tmp_path / "x", formats=["npz", "pt"])
    with np.load(tmp_path / "x" / "distilled.npz", allow_pickle=False) as z:
        assert np.array_equal(z["zca_matrix"], back.zca.matrix.numpy()) and np.array_equal(z["zca_mean"],
                                                                                             back.zca.mean.numpy())
        assert json.loads(str(z["meta"]))["zca"]["regularization"] == 0.1
    pt = torch.load(tmp_path / "x" / "distilled.pt", weights_only=True)
    assert torch.equal(pt["zca_matrix"], back.zca.matrix) and json.loads(pt["meta_json"])["zca"]["dims"] == 192
    res = evaluate(back, plain, epochs=2, runs=1, progress=False)
    assert 0 <= res["accuracy_mean"] <= 1
    # a set made without ZCA is not tested on whitened images
    with pytest.raises(UsageError, match="without ZCA"):
        images_to_test(random_ls(KRRObjective(plain, FeatureConfig(width=8, depth=2), pool_size=2, cache=False), 2),
                       white)
