"""The end-to-end job, readable top to bottom: adapt once, generate every IPC.

    result = distill("fashion-mnist", ipcs=[1, 10, 50], steps=25, out_dir="out/")

1. load the dataset and build the objective (feature pool + cached real moments);
2. load the shipped meta generator (or start from scratch);
3. adapt it for ``steps`` steps on the target;
4. for each IPC: seeded initialization -> one forward pass -> exact labels -> save;
5. optionally evaluate every set (ConvNet-3 protocol) into summary.json.

``method="krr-pixel"``, ``"krr-fresh"``, ``"herding"`` or ``"greedy"`` runs the same job with another maker of sets in step 4
(and no generator in steps 2-3), so every method is one call and one command (`mgdd distill`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from .adapt import adapt, generation_defaults
from .baselines import DEFAULT_STEPS as PIXEL_STEPS
from .baselines import PIXEL_METHODS, coreset, default_lr, krr_pixel
from .data import check_ipc, load_dataset
from .distilled import save_grid, set_digest
from .errors import MgddError, UsageError, check_range, unknown_name
from .evaluate import evaluate
from .generate import generate
from .generator import GeneratorConfig, MetaGenerator
from .io import check_outputs, read_json, write_json
from .lock import claim
from .objective import FreshObjective, KRRObjective

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# The shipped meta generators by the channel count they were made for: grey (meta-trained on
# MNIST) and colour (on tinted MNIST, benchmarks/colour_data.py). The grey one would also serve
# the grey generator serves colour by folding channels into the batch (generator.py, docs/design.md
# §4). A colour one (meta-tinted) shipped until issue #41's session: on colour Fashion-MNIST the
# folded grey one measured better at K = 0 (30.08 against 22.34 at IPC 1, 59.47 against 55.97 at
# IPC 10; results/generator-view/colour-fashion-mnist), so it left: mgdd/pretrained/meta-tinted at
# commit 1315995. A generator made for C channels, when one ships, is listed here under C.
SHIPPED = {1: "meta-mnist"}


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
    # (its base's generate_start was the default that adaptation already took, or was overridden)
    base = {k: v for k, v in getattr(generator, "metadata", {}).items() if k != "generate_start"}
    generator.metadata = {**base, "passes": log["passes"], "start": log["start"]}
    return generator, origin, log


def adapted_metadata(log: dict, origin: str, target: str, objective: KRRObjective | None = None) -> dict:
    """What every adapted generator records in its config.json (the one place it is built: `mgdd
    adapt`, `distill` and the bench): where it came from, its adaptation, and its generation
    defaults (``adapt.generation_defaults``)."""
    meta = {"target": target, "adapted_from": origin, "steps": log["steps"], "ipcs": log["ipcs"],
            "seconds": log["seconds"]}
    if objective is not None:
        meta["objective"] = objective.describe()
    return {**meta, **generation_defaults(log)}


# The methods `distill` runs, each for every IPC asked. The generator is the method mgdd is about
# and the default; on Fashion-MNIST the bench measures krr-pixel's sets better at IPC 10 and 50
# and herding+ls's at IPC 20 and 50, in the times README.md's "Choosing a method" table gives.
METHODS = ("generator", "krr-pixel", "krr-fresh", "herding", "greedy")
ONE_SHOT_METHODS = ("herding", "greedy")  # coresets with least-squares labels, no steps
DEFAULT_STEPS = {"generator": 25, **PIXEL_STEPS}


def distill_outputs(out_dir, ipcs, method: str = "generator") -> list:
    """Every file ``distill`` writes into ``out_dir`` (checkpoints included, while it runs)."""
    out_dir = Path(out_dir)
    files = [out_dir / "summary.json"]
    if method == "generator":
        files += [out_dir / "adapt-checkpoint.safetensors", out_dir / "generator" / "model.safetensors",
                  out_dir / "generator" / "config.json"]
    for ipc in ipcs:
        files += [out_dir / f"ipc{ipc}.safetensors", out_dir / f"ipc{ipc}.png"]
        if method in PIXEL_METHODS:
            files.append(out_dir / f"ipc{ipc}.checkpoint.safetensors")
    return files


def _check_method(method: str, steps, adapt_ipcs, source: str, passes, start) -> int | None:
    """The method's steps (its default when None); refuses options the method does not take."""
    if method not in METHODS:
        raise unknown_name("method", method, METHODS)
    if method != "generator":
        given = [name for name, value, default in (("adapt_ipcs", adapt_ipcs, None), ("source", source, "meta"),
                                                   ("passes", passes, None), ("start", start, None))
                 if value != default]
        if given:
            raise UsageError(f"method {method} takes no {', '.join(given)} (generator options); drop them.")
    if method in ONE_SHOT_METHODS:
        if steps is not None:
            raise UsageError(f"method {method} is one shot and takes no steps; drop --steps.")
        return None
    steps = DEFAULT_STEPS[method] if steps is None else int(steps)
    check_range("steps", steps, 0 if method == "generator" else 1)
    return steps


def distill(dataset, ipcs=(1, 10, 50), steps: int | None = None, adapt_ipcs=None, source: str = "meta",
            out_dir=None, seed: int = 0, lr: float | None = None, objective: KRRObjective | None = None,
            resume: bool = False, force: bool = False, progress: bool = True, data_dir=None,
            evaluate_sets: bool = False, epochs: int = 300, runs: int = 1, passes: int | None = None,
            start: str | None = None, method: str = "generator", keep_checkpoints: bool = False, inputs=(),
            **objective_kwargs) -> dict:
    """Make a distilled set of every IPC in ``ipcs`` with ``method`` and (with ``evaluate_sets``)
    evaluate each one.

    method:
      "generator" (default)  adapt the meta generator once for ``steps`` steps (25), then one pass
                             per IPC. 25 steps: on Fashion-MNIST the bench measures 200 steps within
                             0.4 points of 25 (IPC 10) or below it (IPC 1), at 12x the time.
      "krr-pixel"            optimise the pixels of each IPC's set for ``steps`` steps (300).
      "krr-fresh"            the same with a new random network and real batches every step, as
                             KIP / RFAD run it (2000 steps; slower a step; on Fashion-MNIST the best
                             sets at IPC 1, under krr-pixel at IPC 10 and 50).
      "herding"              one shot: the herding coreset in feature space with least-squares labels.
      "greedy"               one shot: real images picked on the pool's KRR loss (greedy.py), least-squares
                             labels; its orders are computed to the largest IPC asked (minutes on a CPU
                             at IPC 50) and cached.

    With ``out_dir``, the sets, their grids, summary.json and (generator) the adapted generator are
    written there; every output is checked before any work (``inputs``: (what, path) pairs that no
    output may overwrite). ``dataset`` is a Dataset, a name, or a function that loads one;
    ``objective`` an objective or a function of the dataset that builds one: functions are called
    after the outputs are checked, so a bad ``out_dir`` fails in a second, not after the moments.
    Existing outputs are replaced only with ``force``, or with ``resume`` (which continues the
    interrupted run that wrote them). A finished run removes its checkpoints unless
    ``keep_checkpoints``.
    """
    steps = _check_method(method, steps, adapt_ipcs, source, passes, start)
    given_lr = lr  # pixel methods without one: baselines.default_lr at each IPC
    lr = 1e-3 if method == "generator" and lr is None else lr
    ipcs = [int(i) for i in ipcs]
    adapt_ipcs = [int(i) for i in (adapt_ipcs or ipcs)] if method == "generator" else []
    out_dir = Path(out_dir) if out_dir else None
    replace = force or resume
    if out_dir is not None:  # claim the outputs for this run, then fail before any work, not after an hour
        outputs = distill_outputs(out_dir, ipcs, method)
        for path in outputs:
            claim(path)
        check_outputs(outputs, replace, inputs)
    # 1. the data and the objective: feature pool + real-data moments (computed once per dataset, then cached)
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, data_dir)
    elif callable(dataset):
        dataset = dataset()
    for ipc in sorted(set(ipcs) | set(adapt_ipcs)):
        check_ipc(dataset, ipc)
    if objective is None:
        objective = KRRObjective(dataset, seed=seed, **objective_kwargs)
    elif callable(objective) and not isinstance(objective, KRRObjective):
        objective = objective(dataset)
    summary = {"dataset": dataset.describe(), "method": method, "objective": objective.describe(),
               "feature_seconds": objective.build_seconds, "sets": {}}
    checkpoints = []
    if method == "generator":
        # 2-3. the generator, adapted to this dataset
        ckpt = out_dir / "adapt-checkpoint.safetensors" if out_dir else None
        checkpoints.append(ckpt)
        generator, origin, adapt_log = adapted_generator(source, objective, steps, adapt_ipcs, lr=lr, seed=seed,
                                                         checkpoint=ckpt, resume=resume, progress=progress,
                                                         passes=passes, start=start)
        summary.update(source=origin, adapt_steps=steps, adapt_ipcs=adapt_ipcs, adapt_seconds=adapt_log["seconds"])
    # 4. every IPC: the generator's one pass, krr-pixel's optimisation, or the coreset
    sets = {}
    for ipc in ipcs:
        if method == "generator":
            ds = generate(generator, objective, ipc, seed=seed, passes=adapt_log["passes"], start=adapt_log["start"],
                          adapted_from=origin, adapt_steps=steps, adapt_ipcs=adapt_ipcs,
                          adapt_seconds=adapt_log["seconds"])
            entry = {"seen_in_adaptation": ipc in adapt_ipcs, "start": ds.meta.get("start", "random")}
        elif method in PIXEL_METHODS:
            ckpt = out_dir / f"ipc{ipc}.checkpoint.safetensors" if out_dir else None
            checkpoints.append(ckpt)
            # krr-fresh: a new network and real batches every step; the pool still solves the labels
            pixels = FreshObjective.sharing(objective) if method == "krr-fresh" and objective.mode != "fresh" \
                else objective
            fresh = method == "krr-fresh" or objective.mode == "fresh"
            ds = krr_pixel(pixels, ipc, steps, seed=seed, checkpoint=ckpt, resume=resume, progress=progress,
                           lr=default_lr("krr-fresh" if fresh else "krr-pixel", ipc) if given_lr is None else given_lr)
            entry = {}
        else:
            ds = coreset(objective, ipc, method, seed, soft_labels=True)
            entry = {}
        sets[ipc] = ds
        entry = {"images": len(ds.images), **ds.meta["timing"], "seconds": set_seconds(ds), **entry}
        if out_dir is not None:
            entry["file"] = str(ds.save(out_dir / f"ipc{ipc}.safetensors", force=replace))
            entry["grid"] = str(save_grid(ds, out_dir / f"ipc{ipc}.png", force=replace))
        summary["sets"][str(ipc)] = entry
    if out_dir is not None and method == "generator":
        generator.save_pretrained(out_dir / "generator", metadata=adapted_metadata(adapt_log, origin, dataset.name,
                                                                                   objective), force=replace)
    # 5. evaluation (the sets are already on disk: a failed evaluation loses nothing). summary.json
    # is rewritten after each set's scores, so an interrupted run keeps them, and a resumed one
    # reuses the scores of a set that rebuilt bit for bit under the same evaluation settings and
    # continues an evaluation cut off midway from its runs' checkpoints (ipcN.eval-checkpoints/)
    if evaluate_sets:
        earlier = _earlier_evaluations(out_dir, resume)
        for ipc, ds in sets.items():
            entry = summary["sets"][str(ipc)]
            entry["set_sha256"] = set_digest(ds)
            old = earlier.get(str(ipc), {})
            res = old.get("evaluation")
            if not (res and old.get("set_sha256") == entry["set_sha256"]
                    and (res.get("epochs"), res.get("runs"), (res.get("per_run") or [{}])[0].get("seed"))
                    == (epochs, runs, seed)):
                # its runs' progress, so a resumed run continues an evaluation that was cut off
                evals = out_dir / f"ipc{ipc}.eval-checkpoints" if out_dir is not None else None
                res = evaluate(ds, dataset, epochs=epochs, runs=runs, seed=seed, progress=progress,
                               checkpoint_dir=evals, resume=resume)
                if evals is not None and not keep_checkpoints:
                    shutil.rmtree(evals, ignore_errors=True)
                # the mgdd protocol (protocols.py), with the epoch count when it is not the protocol's
                res.update(protocol="mgdd", deviations={"epochs": epochs} if epochs not in (None, 300) else {})
            entry["evaluation"] = res
            if out_dir is not None:
                write_json(out_dir / "summary.json", {**summary, "finished": False}, force=True)
    if out_dir is not None:
        write_json(out_dir / "summary.json", summary, force=True)
        if not keep_checkpoints:  # a finished run leaves only its outputs
            for ckpt in checkpoints:
                ckpt.unlink(missing_ok=True)
    return {"summary": summary, "sets": sets, "generator": generator if method == "generator" else None,
            "objective": objective}


def _earlier_evaluations(out_dir, resume: bool) -> dict:
    """The per-IPC entries of the summary.json a run being resumed left (its scores so far)."""
    path = Path(out_dir) / "summary.json" if out_dir is not None else None
    if not (resume and path is not None and path.is_file()):
        return {}
    try:
        return read_json(path).get("sets", {})
    except MgddError:
        return {}  # a damaged summary: every set is scored again


def set_seconds(ds) -> float:
    """A set's own making time from its timing record: the generator's pass and label solve, a
    krr-pixel run's optimisation and final label solve, or a coreset's selection (adaptation, shared
    by every size, is reported apart)."""
    t = ds.meta["timing"]
    if "generate_seconds" in t:
        return t["generate_seconds"] + t["label_seconds"]
    return t.get("seconds", 0.0) + t.get("label_seconds", 0.0)
