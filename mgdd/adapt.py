"""Adaptation: K Adam steps of the KRR loss that fit a generator to a target dataset.

Each step draws an IPC from ``ipcs``, a seeded class-balanced initialization X_0 and a pool
network, runs the generator on X_0 and minimises the full-data KRR loss of its output
(generate.task_loss, shared with meta-training). The same loop adapts from the meta
generator (mgdd) or from random init (the `scratch` ablation); loop.py makes it resumable.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

import torch

from .checkpoint import check_finite, load_weights, step_rng
from .data import check_ipc
from .errors import UsageError, check_range
from .generate import default_passes, default_start, task_loss, training_step_bytes, unrolled_loss
from .generator import MetaGenerator, check_channels
from .loop import run_resumable
from .memory import available_bytes, check_fits, fits, gib
from .objective import KRRObjective
from .start import check_start


def generation_defaults(log: dict) -> dict:
    """What an adapted generator records for generation to use by default: its pass count and its
    start, each only when not the default (1 pass, "random"), so earlier records read the same."""
    return {**({"passes": log["passes"]} if log["passes"] != 1 else {}),
            **({"start": log["start"]} if log.get("start", "random") != "random" else {})}


def adapt(generator: MetaGenerator, objective: KRRObjective, steps: int, ipcs=(1, 10, 50), lr: float = 1e-3,
          seed: int = 0, checkpoint=None, checkpoint_every: int = 25, resume: bool = False,
          progress: bool = True, source: str | None = None, passes: int | None = None,
          start: str | None = None) -> dict:
    """Adapt ``generator`` in place. Returns {"seconds", "history", "steps", "ipcs", "lr", "seed", "passes", "start",
    "rebuild_guides"}.

    ``passes`` (default: what the generator was trained for) > 1 adapts a few-pass generator
    on its own unrolled loss (generate.unrolled_loss); 1 is the one-pass task loss.

    ``source`` names where the generator came from (meta, scratch, a folder); it is recorded
    in the checkpoint so that a resume from another source is refused.

    ``start`` (default: the start the generator was meta-trained from, else "random") is where
    each step's X_0 comes from (start.py).
    """
    dataset = objective.dataset
    check_range("steps", steps, 0)
    check_range("lr", lr, 0, low_open=True)
    ipcs = sorted(set(int(i) for i in ipcs))
    if not ipcs:
        raise UsageError("give at least one IPC to adapt on (--ipcs).")
    for ipc in ipcs:
        check_ipc(dataset, ipc)
    check_channels(generator, dataset)
    passes = default_passes(generator) if passes is None else passes
    check_range("passes", passes, 1)
    # the guides each pass keeps for the backward are computed again there when the step would not fit
    # with them (the same result, one more guide a pass: generate.GuideRebuilt)
    kept = training_step_bytes(objective, ipcs[-1], passes)
    rebuild_guides = generator.config.guide_input and not fits(kept)
    check_fits(training_step_bytes(objective, ipcs[-1], passes, rebuild_guides=rebuild_guides),
               f"an adaptation step at IPC {ipcs[-1]} ({ipcs[-1] * dataset.num_classes} images of "
               f"{dataset.channels} x {dataset.image_size[0]} x {dataset.image_size[1]}, {passes} passes with gradient)",
               "adapt on smaller sizes (--adapt-ipcs for distill, --ipcs for adapt) and generate the larger ones "
               "from the adapted generator: generation keeps no gradient")
    if rebuild_guides and progress:
        print(f"adapt: a step at IPC {ipcs[-1]} would need about {gib(kept)} with its guides kept and "
              f"{gib(available_bytes())} is available: each pass's guide is computed again in the backward "
              "(the same result, one more guide a pass).", file=sys.stderr)
    start = default_start(generator) if start is None else start
    check_start(start)
    generator.to(objective.device)
    opt = torch.optim.Adam(generator.parameters(), lr=lr)
    # what makes this run this run: a resume must match it (checkpoint.check_same_settings)
    settings = {"ipcs": ipcs, "lr": lr, "seed": seed, "source": source, "dataset": dataset.identity(),
                "objective": objective.describe(), "generator": asdict(generator.config)}
    if passes != 1:  # absent means one pass: checkpoints from before the option stay valid
        settings["passes"] = passes
    if start != "random":  # absent means random, likewise
        settings["start"] = start
    generator.train()

    def step(s: int) -> dict:
        rng = step_rng(seed, s)
        ipc = rng.choice(ipcs)
        loss = task_loss(generator, objective, ipc, rng, start=start, rebuild_guides=rebuild_guides) if passes == 1 \
            else unrolled_loss(generator, objective, ipc, rng, passes, start=start, rebuild_guides=rebuild_guides)
        check_finite(loss, s, checkpoint)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"ipc": ipc, "loss": loss.item()}

    loop = run_resumable(step, steps, name="adapt", state=generator.state_dict,
                         load=lambda t: load_weights(generator, t, checkpoint), optimizer=opt, settings=settings,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, progress=progress)
    generator.eval()
    return {"steps": steps, "seconds": loop.seconds, "history": loop.history, "ipcs": ipcs, "lr": lr, "seed": seed,
            "passes": passes, "start": start, "rebuild_guides": rebuild_guides}
