"""Adaptation: K Adam steps of the KRR loss that fit a generator to a target dataset.

Each step draws an IPC from ``ipcs``, a seeded class-balanced initialization X_0, and a
pool network; it runs the generator on X_0 and minimises the full-data KRR loss of its
output. The same loop adapts from the meta generator (mgdd) or from random init
(the `scratch` ablation). Checkpoints make it resumable; times are recorded.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .allocator import keep_freed_memory
from .checkpoint import check_finite, graceful_stop, load_state, load_weights, save_state, step_rng
from .data import check_ipc, sample_init
from .errors import UsageError, check_range
from .generate import synthesize
from .generator import MetaGenerator
from .objective import KRRObjective


def adapt(generator: MetaGenerator, objective: KRRObjective, steps: int, ipcs=(1, 10, 50), lr: float = 1e-3,
          seed: int = 0, checkpoint=None, checkpoint_every: int = 25, resume: bool = False,
          progress: bool = True, classes=None, source: str | None = None) -> dict:
    """Adapt ``generator`` in place. Returns {"seconds", "history", "steps", ...}.

    ``source`` names where the generator came from (meta, scratch, a folder); it is recorded
    in the checkpoint so that a resume from another source is refused.
    """
    dataset = objective.dataset
    check_range("steps", steps, 0)
    check_range("lr", lr, 0, low_open=True)
    ipcs = sorted(set(int(i) for i in ipcs))
    if not ipcs:
        raise UsageError("give at least one IPC to adapt on (--ipcs).")
    for ipc in ipcs:
        check_ipc(dataset, ipc)
    if generator.config.channels != dataset.channels:
        raise UsageError(f"the generator makes {generator.config.channels}-channel images but {dataset.name} has "
                         f"{dataset.channels} channels; adapt a generator built for it (--from scratch).")
    num_classes = dataset.num_classes
    generator.to(objective.device)
    opt = torch.optim.Adam(generator.parameters(), lr=lr)
    start_step, elapsed, history = 0, 0.0, []
    # what makes this run this run: a resume must match it (checkpoint.check_same_settings)
    settings = {"ipcs": ipcs, "lr": lr, "seed": seed, "source": source, "dataset": dataset.identity(),
                "objective": objective.describe(), "generator": asdict(generator.config),
                "classes": None if classes is None else list(classes)}
    if resume and checkpoint and Path(checkpoint).exists():
        tensors, info = load_state(checkpoint, opt, settings=settings, steps=steps)
        load_weights(generator, tensors, checkpoint)
        start_step, elapsed, history = info["step"], info["seconds"], info["history"]
    generator.train()

    def save(step):
        if checkpoint:
            save_state(checkpoint, generator.state_dict(), opt,
                       {"step": step, "seconds": elapsed, "history": history, "ipcs": ipcs, "lr": lr, "seed": seed,
                        "settings": settings})

    bar = tqdm(range(start_step, steps), desc="adapt", disable=not progress, initial=start_step, total=steps)
    # the step frees and re-allocates large activations: keep them in the heap (allocator.py)
    with graceful_stop() as stop, keep_freed_memory():
        for step in bar:
            t0 = time.perf_counter()
            rng = step_rng(seed, step)
            ipc = rng.choice(ipcs)
            x0, y0 = sample_init(dataset, ipc, seed=rng.randrange(2**31), classes=classes)
            if classes is not None:
                y0 = torch.arange(len(classes)).repeat_interleave(ipc)
            x_s = synthesize(generator, objective, x0, y0, len(classes) if classes is not None else num_classes,
                             classes=classes)
            loss = objective.loss(x_s, net_index=rng.randrange(objective.pool.size), classes=classes,
                                  step_seed=rng.randrange(2**31))
            check_finite(loss, step, checkpoint)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            elapsed += time.perf_counter() - t0
            history.append({"step": step + 1, "ipc": ipc, "loss": loss.item(), "seconds": round(elapsed, 3)})
            bar.set_postfix(loss=f"{loss.item():.4f}", ipc=ipc)
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                save(step + 1)
            if stop.requested:
                save(step + 1)
                raise stop.interrupted(f"adaptation interrupted at step {step + 1}/{steps}; checkpoint saved to "
                                  f"{checkpoint}. Rerun with --resume to continue.")
    generator.eval()
    return {"steps": steps, "seconds": elapsed, "history": history, "ipcs": ipcs, "lr": lr, "seed": seed}

