"""The end-to-end job, readable top to bottom: adapt once, generate every IPC.

    result = distill("fashion-mnist", ipcs=[1, 10, 50], steps=25, out_dir="out/")

1. load the dataset and build the objective (feature pool + cached real moments);
2. load the shipped meta generator (or start from scratch);
3. adapt it for ``steps`` steps on the target;
4. for each IPC: seeded initialization -> one forward pass -> exact labels -> save;
5. optionally evaluate every set (ConvNet-3 protocol) into summary.json.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .adapt import adapt, generation_defaults
from .data import load_dataset
from .distilled import save_grid
from .evaluate import evaluate
from .generate import generate
from .errors import MgddError
from .generator import GeneratorConfig, MetaGenerator
from .io import check_output, write_json
from .objective import KRRObjective

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# The shipped meta generators by the channel count they were made for: grey (meta-trained on
# MNIST) and colour (on tinted MNIST, benchmarks/colour_data.py). The grey one would also serve
# colour by folding channels into the batch (generator.py, docs/design.md §4); on a colour
# target the colour one measured better (results/colour/table.md), so it serves 3 channels.
SHIPPED = {1: "meta-mnist", 3: "meta-tinted"}


def default_meta_generator(channels: int = 1) -> Path | None:
    """The shipped meta generator for ``channels``-channel data: one made for that count when one
    ships, else the grey one (which folds channels); None when none is installed."""
    for name in (SHIPPED.get(channels), SHIPPED[1]):
        if name and (PRETRAINED_DIR / name / "model.safetensors").is_file():
            return PRETRAINED_DIR / name
    return None


def load_generator(source: str, channels: int, seed: int | None = None) -> tuple:
    """(generator, origin) for source 'meta' (the shipped meta generator for this channel count),
    'scratch', or a generator folder. ``seed`` seeds torch first: a scratch generator's initial
    weights are part of the run's seed. A request for the meta generator is served or refused,
    never quietly replaced by another."""
    if seed is not None:
        torch.manual_seed(seed)
    if source == "scratch":
        return MetaGenerator(GeneratorConfig(channels=channels)), "scratch"
    if source != "meta":
        return MetaGenerator.from_pretrained(source), source
    path = default_meta_generator(channels)
    if path is None:
        raise MgddError(f"no shipped meta generator in this installation (looked in {PRETRAINED_DIR}); "
                        "reinstall mgdd, or pass --from scratch or a generator folder.")
    gen = MetaGenerator.from_pretrained(path)
    origin = f"shipped:{path.name}"
    if gen.config.channels != channels:
        origin += f" (grey, {channels} channels folded)"
    return gen, origin


def adapted_generator(source: str, objective: KRRObjective, steps: int, ipcs, lr: float = 1e-3, seed: int = 0,
                      checkpoint=None, resume: bool = False, progress: bool = True, checkpoint_every: int = 25,
                      passes: int | None = None, start: str | None = None):
    """(generator, origin, log): load ``source`` (seeded: a scratch generator's weights are part of
    the run's seed) and adapt it for ``steps`` steps on the objective's dataset."""
    generator, origin = load_generator(source, objective.dataset.channels, seed=seed)
    log = adapt(generator, objective, steps=steps, ipcs=ipcs, lr=lr, seed=seed, checkpoint=checkpoint,
                checkpoint_every=checkpoint_every, resume=resume, progress=progress, source=origin, passes=passes,
                start=start)
    # an adapted generator generates with the passes and from the start it was adapted with, by default
    generator.metadata = {**getattr(generator, "metadata", {}), "passes": log["passes"], "start": log["start"]}
    return generator, origin, log


def distill_outputs(out_dir, ipcs) -> list:
    """Every file ``distill`` writes into ``out_dir``."""
    out_dir = Path(out_dir)
    files = [out_dir / "summary.json", out_dir / "adapt-checkpoint.safetensors",
             out_dir / "generator" / "model.safetensors", out_dir / "generator" / "config.json"]
    for ipc in ipcs:
        files += [out_dir / f"ipc{ipc}.safetensors", out_dir / f"ipc{ipc}.png"]
    return files


def distill(dataset, ipcs=(1, 10, 50), steps: int = 25, adapt_ipcs=None, source: str = "meta", out_dir=None,
            seed: int = 0, lr: float = 1e-3, objective: KRRObjective | None = None, resume: bool = False,
            force: bool = False, progress: bool = True, data_dir=None, evaluate_sets: bool = False,
            epochs: int = 300, runs: int = 1, passes: int | None = None, start: str | None = None,
            **objective_kwargs) -> dict:
    """Adapt once, generate every IPC and (with ``evaluate_sets``) evaluate each set.

    ``steps``: adaptation steps. 25 by default: on Fashion-MNIST the bench measures 200 steps
    within 0.4 points of 25 (IPC 10) or below it (IPC 1), at 12x the time (docs/results.md).

    With ``out_dir``, the sets, their grids, the adapted generator and summary.json are written
    there. Existing outputs are replaced only with ``force``, or with ``resume`` (which
    continues the interrupted run that wrote them).
    """
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, data_dir)
    ipcs = [int(i) for i in ipcs]
    adapt_ipcs = [int(i) for i in (adapt_ipcs or ipcs)]
    out_dir = Path(out_dir) if out_dir else None
    replace = force or resume
    if out_dir is not None:
        for path in distill_outputs(out_dir, ipcs):  # fail before any work, not after an hour
            check_output(path, replace)
    # 1. the objective: feature pool + real-data moments (computed once per dataset, then cached)
    objective = objective or KRRObjective(dataset, seed=seed, **objective_kwargs)
    # 2-3. the generator, adapted to this dataset
    ckpt = out_dir / "adapt-checkpoint.safetensors" if out_dir else None
    generator, origin, adapt_log = adapted_generator(source, objective, steps, adapt_ipcs, lr=lr, seed=seed,
                                                     checkpoint=ckpt, resume=resume, progress=progress, passes=passes,
                                                     start=start)
    passes, start = adapt_log["passes"], adapt_log["start"]
    summary = {"dataset": dataset.describe(), "source": origin, "adapt_steps": steps, "adapt_ipcs": adapt_ipcs,
               "adapt_seconds": adapt_log["seconds"], "feature_seconds": objective.build_seconds,
               "objective": objective.describe(), "sets": {}}
    # 4. every IPC from the one adapted generator
    sets = {}
    for ipc in ipcs:
        ds = generate(generator, objective, ipc, seed=seed, passes=passes, start=start, adapted_from=origin,
                      adapt_steps=steps,
                      adapt_ipcs=adapt_ipcs, adapt_seconds=adapt_log["seconds"])
        sets[ipc] = ds
        entry = {"images": len(ds.images), **ds.meta["timing"], "seen_in_adaptation": ipc in adapt_ipcs}
        if out_dir is not None:
            entry["file"] = str(ds.save(out_dir / f"ipc{ipc}.safetensors", force=replace))
            entry["grid"] = str(save_grid(ds, out_dir / f"ipc{ipc}.png", force=replace))
        summary["sets"][str(ipc)] = entry
    if out_dir is not None:
        generator.save_pretrained(out_dir / "generator", metadata={
            "target": dataset.name, "adapted_from": origin, "steps": steps, "ipcs": adapt_ipcs,
            "seconds": adapt_log["seconds"], **generation_defaults(adapt_log)}, force=replace)
    # 5. evaluation (the sets are already on disk: a failed evaluation loses nothing)
    if evaluate_sets:
        for ipc, ds in sets.items():
            summary["sets"][str(ipc)]["evaluation"] = evaluate(ds, dataset, epochs=epochs, runs=runs, seed=seed,
                                                               progress=progress)
    if out_dir is not None:
        write_json(out_dir / "summary.json", summary, force=replace)
    return {"summary": summary, "sets": sets, "generator": generator, "objective": objective}
