import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MGDD_CACHE", os.path.join(os.environ.get("TMPDIR", "/tmp"), "mgdd-test-cache"))
torch.set_num_threads(2)


def make_npz(path, n_per_class=12, classes=3, size=12, channels=1, seed=0, n_test=4):
    """A tiny structured dataset: each class is a blob at its own position plus noise."""
    rng = np.random.default_rng(seed)

    def split(n):
        xs, ys = [], []
        for c in range(classes):
            base = np.zeros((size, size), np.float32)
            r = 2 + (c * 3) % (size - 4)
            base[r:r + 3, 2:size - 2] = 1.0
            for _ in range(n):
                img = np.clip(base + 0.2 * rng.standard_normal((size, size)), 0, 1)
                xs.append(np.repeat(img[None], channels, 0) if channels > 1 else img)
                ys.append(c)
        x = (np.stack(xs) * 255).astype(np.uint8)
        return x, np.array(ys, dtype=np.int64)

    xtr, ytr = split(n_per_class)
    xte, yte = split(n_test)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


@pytest.fixture
def tiny_npz(tmp_path):
    return make_npz(tmp_path / "tiny.npz")


@pytest.fixture
def tiny_dataset(tiny_npz):
    from mgdd.data import load_dataset
    return load_dataset(f"npz:{tiny_npz}")


@pytest.fixture
def tiny_objective(tiny_dataset):
    from mgdd.features import FeatureConfig
    from mgdd.objective import KRRObjective
    return KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2, cache=False)


@pytest.fixture
def tiny_meta_objective(tiny_dataset):
    """Meta-training draws class subsets: its objective keeps per-class moments."""
    from mgdd.features import FeatureConfig
    from mgdd.objective import KRRObjective
    return KRRObjective(tiny_dataset, FeatureConfig(width=8, depth=2), pool_size=2, cache=False, class_subsets=True)
