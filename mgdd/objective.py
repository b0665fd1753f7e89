"""KRRObjective: the loss every method minimises and the label solve every method emits.

Binds a dataset, a feature pool and the ridge parameters (lam, mu) to the pure functions
in krr.py:

    objective = KRRObjective(dataset)                 # pool of random ConvNets, cached moments
    loss = objective.loss(x_s, net_index=3)           # full-data KRR loss, one pool network
    labels = objective.labels(x_s)                    # exact joint solve, all pool networks

mode="pool" (default): the loss uses a pool network's cached full-data moments, so a step
costs one forward/backward of the M synthetic images only.
mode="fresh": a new random network per step and two real batches (labels solved on one,
loss measured on the other), the RFAD-style estimator. Slower per step; kept to measure.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from . import krr
from .data import Dataset
from .errors import UsageError, check_range, unknown_name
from .features import FeatureConfig, FeaturePool, make_feature_net

MODES = ("pool", "fresh")


class KRRObjective:
    def __init__(self, dataset: Dataset, feature_config: FeatureConfig | None = None, pool_size: int = 8,
                 seed: int = 0, lam: float = 1e-3, mu: float = 1e-3, mode: str = "pool",
                 batch_size: int = 1024, cache: bool = True, device="cpu", progress=None):
        if mode not in MODES:
            raise unknown_name("objective mode", mode, MODES)
        check_range("lam", lam, 0, low_open=True)
        check_range("mu", mu, 0, low_open=True)
        check_range("batch_size", batch_size, 2)
        self.dataset, self.lam, self.mu, self.mode = dataset, lam, mu, mode
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.feature_config = feature_config or FeatureConfig()
        self.pool = FeaturePool(self.feature_config, dataset.channels, dataset.image_size, pool_size, seed).to(device)
        self.class_index = dataset.class_indices()
        moments = self.pool.moments(dataset.train_x, dataset.train_y, dataset.num_classes,
                                    cache=cache, device=device, progress=progress)
        self.moments = [m.to(device) for m in moments]

    def describe(self) -> dict:
        return {"feature": asdict(self.feature_config), "pool_size": self.pool.size, "seed": self.seed,
                "lam": self.lam, "mu": self.mu, "mode": self.mode, "feature_dim": self.pool.dim}

    def _check(self, x_s):
        if x_s.shape[1:] != self.dataset.train_x.shape[1:]:
            raise UsageError(f"synthetic images {tuple(x_s.shape[1:])} do not match {self.dataset.name} "
                             f"images {tuple(self.dataset.train_x.shape[1:])}.")

    def loss(self, x_s: torch.Tensor, net_index: int = 0, classes=None, step_seed: int = 0) -> torch.Tensor:
        """KRR loss of synthetic images x_s (M, C, H, W) against the real data of ``classes``."""
        self._check(x_s)
        if self.mode == "pool":
            net = self.pool.nets[net_index % self.pool.size]
            stats = self.moments[net_index % self.pool.size].for_classes(classes)
            loss, _ = krr.krr_loss_moments(net(x_s.to(self.device)), stats, self.lam, self.mu)
            return loss
        return self._fresh_loss(x_s, classes, step_seed)

    def _fresh_loss(self, x_s, classes, step_seed):
        g = torch.Generator().manual_seed(int(step_seed))
        net = make_feature_net(self.feature_config, self.dataset.channels, self.dataset.image_size,
                               seed=10**6 + int(step_seed)).to(self.device)
        classes = list(range(self.dataset.num_classes)) if classes is None else list(classes)
        pool = torch.cat([self.class_index[c] for c in classes])
        remap = {c: i for i, c in enumerate(classes)}
        picks = pool[torch.randperm(len(pool), generator=g)[: 2 * self.batch_size]]
        half = len(picks) // 2
        xb = self.dataset.train_x[picks].to(self.device)
        yb = krr.centered_onehot(torch.tensor([remap[int(c)] for c in self.dataset.train_y[picks]]), len(classes))
        with torch.no_grad():
            fb = net(xb)
        loss, _ = krr.krr_loss(net(x_s.to(self.device)), fb[half:], yb[half:].to(self.device), self.lam, self.mu,
                               f_label=fb[:half], y_label=yb[:half].to(self.device))
        return loss

    def guide(self, x0: torch.Tensor, classes=None, nets: int | None = None) -> torch.Tensor:
        """Gradient of the mean pool loss at X_0, RMS-normalised over the set: (M, C, H, W).

        The generator reads it as an input: it carries the target's real-data statistics into
        one forward pass (a learned, preconditioned step from the initialization).
        """
        self._check(x0)
        x = x0.detach().to(self.device).requires_grad_(True)
        n = min(nets or self.pool.size, self.pool.size)
        with torch.enable_grad():
            loss = sum(self.loss(x, net_index=i, classes=classes, step_seed=i) for i in range(n)) / n
            (grad,) = torch.autograd.grad(loss, x)
        return (grad / grad.pow(2).mean().sqrt().clamp_min(1e-12)).detach()

    @torch.no_grad()
    def labels(self, x_s: torch.Tensor, classes=None, chunk: int = 1024) -> torch.Tensor:
        """Exact least-squares labels over the whole training set and every pool network."""
        self._check(x_s)
        feats = [torch.cat([net(x_s[i:i + chunk].to(self.device)) for i in range(0, len(x_s), chunk)])
                 for net in self.pool.nets]
        stats = [m.for_classes(classes) for m in self.moments]
        return krr.solve_labels_stacked(feats, stats, self.lam, self.mu).float().cpu()
