"""The bench runner: builds and evaluates every cell of a preset, IPC block by IPC block.

One process, one machine, every stage timed:
  features   the pool's real-data moments (computed once, shared by every KRR method)
  random, random+ls, herding        cheap baselines, then the iterative ones:
  krr-pixel  the iterative method, snapshots at increasing step counts (accuracy-vs-time curve)
  krr-fresh  the same without the cached moments (a new network and real batches every step)
  scratch    the generator adapted K steps from random init (no meta-training)
  mgdd       the shipped meta generator adapted K steps, then its passes per IPC (and, at
             K = 0, each pass count of the preset's pass_sweep)
  unseen     mgdd adapted on a subset of IPCs only, generating an IPC it never saw
  hard       (Preset.robust) each least-squares set again with hard labels, and after the blocks
             the whole training split with hard labels: DD-Ranking's HLR, IOR and LRS (scores.py)
  scaling    timing only, after the blocks: how a generator pass and a pixel step grow with M
Each finished cell is written to OUT/cells/ at once (cells.py), so an interrupted run resumes
where it stopped, and the report (report.py) is rewritten after every cell; a cell's evaluation
runs keep their progress in OUT/checkpoints/ until the cell is written, so a cell cut off
mid-evaluation continues there (in one process; deferred torchrun evaluations start over).

Under torchrun every rank builds every cell (the same seeded code; each evaluates rank 0's set)
and defers its evaluation; at the end of each IPC block (or once the pending sets pass
PENDING_BYTES) Bench.flush spreads the block's runs over the ranks, one job per run of each cell,
and rank 0 writes the cells: the one process's cells, sooner with more ranks than runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from ..adapt import generation_defaults
from ..baselines import coreset, kmeans, krr_pixel, random_ls, random_real
from ..checkpoint import load_state
from ..data import load_dataset
from ..distilled import DistilledSet, set_digest
from ..errors import UsageError
from ..evaluate import evaluate, real_data_set, summarize
from ..features import FeatureConfig, distributed_world
from ..generate import generate
from ..generator import MetaGenerator
from ..objective import FreshObjective, KRRObjective
from ..pipeline import adapted_generator, adapted_metadata, load_generator
from ..protocols import hard_copy
from ..start import coreset_indices, order_length, order_seconds
from .cells import CellStore, from_lead, pass_seconds, read_cells, timed
from .folder import RunFolder
from .presets import REAL_RUNS, VARIANTS, aug_sources, cross_sources, get_preset, hard_sources, preset_sizes
from .report import write_report
from .retime import retime

# Preset.one_shot: name -> builder(objective, ipc, seed, soft_labels)
ONE_SHOT = {"kmeans": kmeans, "greedy": lambda obj, ipc, seed, soft: coreset(obj, ipc, "greedy", seed, soft)}
PENDING_BYTES = 2 * 2**30  # under torchrun: pending cells' sets held before their evaluations run (flush)


def evaluation_fields(res: dict) -> dict:
    """What a cell keeps of an evaluation (evaluate()'s result, or the runs flush() gathered)."""
    return {"accuracy_mean": res["accuracy_mean"], "accuracy_std": res["accuracy_std"],
            "accuracies": [r["accuracy"] for r in res["per_run"]], "epochs": res["epochs"], "runs": res["runs"],
            "label_kind": res["label_kind"], "soft_loss": res["soft_loss"],
            **({"ranks": res["ranks"]} if "ranks" in res else {})}  # torchrun: evaluated over this many


PRECOMPUTED_ORDERS = "orders-herding"  # the cell recording the one-time herding orders


def precompute_orders(objective, method: str, ipc: int = 1) -> dict:
    """Compute (or read from the cache) every class's ``method`` order, long enough for ``ipc``:
    the precompute cell."""
    coreset_indices(objective, ipc, method)
    return {"method": method, "length": order_length(method, ipc), "seconds": order_seconds(objective, method)}


class Bench:
    """Orchestration: which cells a preset has and how each is made. The results folder's record
    and resume rules are folder.RunFolder's, the cell cache is cells.CellStore's, the tables and
    plots are report.py's."""

    def __init__(self, preset: str, out, data_dir=None, resume=False, force=False, seed=0, progress=False,
                 new_generator=False, device="cpu", cache_dir=None, dataset=None, image_size=None):
        # dataset / image_size: the preset's protocol on another dataset (presets.get_preset)
        self.cfg = get_preset(preset, dataset, image_size)
        self.preset, self.seed, self.progress = preset, seed, progress
        # every stage runs on this device (objective, adaptation, generation, evaluation), so the
        # times of one run are comparable; run.json records it and a resume must use the same
        self.device = str(device)
        self.out = Path(out)
        if self.out.exists() and any(self.out.iterdir()) and not (resume or force):
            raise UsageError(f"{self.out} is not empty; pass --resume to continue that run or --force to start over.")
        if new_generator and not resume:
            raise UsageError("--new-generator continues a run in --out under a new shipped meta generator; "
                             "it needs --resume.")
        self.resume, self.force, self.data_dir, self.new_generator = resume, force, data_dir, new_generator
        self.store = CellStore(self.out, on_new=self._report_progress)
        self.folder = RunFolder(self.out, preset, self.cfg, lambda: self.dataset, self.device, seed, resume=resume,
                                force=force, new_generator=new_generator)
        self._dataset, self._objective = None, None
        # the feature cache when $MGDD_CACHE is unset (default OUT/cache); under torchrun every
        # rank passes rank 0's, since the ranks share one cache (features.py)
        self.cache_dir = cache_dir
        self.lead = distributed_world()[1] == 0  # rank 0 (or the one process): reports and prints
        # under torchrun every rank builds each cell and defers its evaluation; flush() spreads the
        # pending evaluations' runs over the ranks at the end of each IPC block
        self.deferred = distributed_world()[0] > 1
        self.reporting = False  # during run(): the report is kept current cell by cell

    @property
    def cells(self) -> dict:
        return self.store.cells

    @property
    def dataset(self):
        if self._dataset is None:
            self._dataset = load_dataset(self.cfg.dataset, self.data_dir, image_size=self.cfg.image_size)
        return self._dataset

    def _start(self) -> None:
        sizes = preset_sizes(self.cfg)  # checked before any folder or cell, not blocks later
        smallest = min(self.dataset.class_counts())
        if sizes[-1] > smallest:
            raise UsageError(f"the {self.preset} preset builds sets of up to IPC {sizes[-1]} (IPC "
                             f"{', '.join(map(str, sizes))}), but the smallest class of {self.dataset.name} has "
                             f"{smallest} training images; choose a preset with smaller sets or a dataset with "
                             "larger classes.")
        self.folder.start()

    def run_record(self) -> dict:
        return self.folder.record()

    def cell(self, name: str, fn):
        cell = self.store.get(name, fn)
        if self.deferred:
            self.cell_budget_flush()
        return cell

    def objective(self) -> KRRObjective:
        if self._objective is None:
            # $MGDD_CACHE when set, else a cache inside the results folder
            cache_dir = None if os.environ.get("MGDD_CACHE") else (self.cache_dir or self.out / "cache")
            obj = self.make_objective(cache_dir=cache_dir)
            # the first (cold) computation is the one recorded; a resumed run reads the disk cache
            # a filled cache (MGDD_CACHE shared with an earlier run) makes it a read, and says so
            self.features = self.cell("features", lambda: {"seconds": obj.build_seconds, "objective": obj.describe(),
                                                           **({"from_cache": True} if obj.from_cache else {})})
            # the herding orders (herding+ls, the shipped generator's start): one-time, like the
            # moments, and reported beside them; cells read them and pay nothing for them
            self.cell(PRECOMPUTED_ORDERS, lambda: precompute_orders(obj, "herding"))
            if "greedy" in self.cfg.one_shot:  # its orders to the preset's largest size, once
                self.cell("orders-greedy", lambda: precompute_orders(obj, "greedy", max(self.cfg.ipcs)))
            self._objective = obj
        return self._objective

    def make_objective(self, **kwargs) -> KRRObjective:
        """The preset's objective, built (``kwargs``: cache options) rather than the shared one."""
        return KRRObjective(self.dataset, FeatureConfig(**self.cfg.feature), self.cfg.pool_size, seed=self.seed,
                            lam=self.cfg.lam, ridge=self.cfg.ridge, label_mu=self.cfg.label_mu,
                            device=self.device, **kwargs)

    def fresh_objective(self) -> KRRObjective:
        """The same objective, RFAD-style: a new random network and real batches every step."""
        return FreshObjective.sharing(self.objective())  # the pool serves its final label solve

    def report(self, plots: bool = True) -> dict:
        # every finished cell on disk, not only those this process has reached: a resumed run
        # adding a block reports the scaling cells (made after the blocks) while it runs
        if not self.lead:
            return {}
        cells = {**read_cells(self.out), **self.cells}
        return write_report(self.out, cells, self.cfg, self.run_record(), plots_too=plots)

    def _report_progress(self):
        if self.reporting:  # a block can take hours: keep the report current, cell by cell
            self.report(plots=False)

    # -- cells
    def evaluate_set(self, ds: DistilledSet, name: str, model="convnet", dsa: bool = False) -> dict:
        set_path = self.out / "sets" / f"{name}.safetensors"
        if not set_path.exists():
            ds.save(set_path, force=True)
        ds = from_lead(lambda: ds)  # under torchrun every rank trains on rank 0's set
        t = self.cfg.eval_temperature
        settings = {"model": model, "epochs": self.cfg.eval_epochs, "soft_loss": "mse" if t is None else "ce",
                    "temperature": t, "dsa": dsa}
        cell = {"set_sha256": set_digest(ds), "model": model, "set": str(set_path.relative_to(self.out)),
                **({"dsa": True} if dsa else {})}
        if self.deferred:  # torchrun: evaluated with the other pending cells, spread over the ranks (flush)
            return {**cell, "pending": {"ds": ds, "settings": settings}}
        # the runs keep their progress here, so a bench cut off mid-evaluation (a 3-run IPC 100 cell is
        # most of an hour on a CPU) continues it; named by the set, settings and seed, so a resume only
        # ever meets a checkpoint of this very evaluation
        key = json.dumps([cell["set_sha256"], settings, self.seed, self.cfg.runs], sort_keys=True).encode()
        ckpts = self.out / "checkpoints" / f"{name}-{hashlib.sha256(key).hexdigest()[:12]}"
        res = evaluate(ds, self.dataset, runs=self.cfg.runs, seed=self.seed, progress=self.progress,
                       device=self.device, checkpoint_dir=ckpts, resume=True, **settings)
        shutil.rmtree(ckpts, ignore_errors=True)
        resumed = [r.get("resumed_at_epoch", 0) for r in res["per_run"]]  # epochs done before this session
        return {**cell, **evaluation_fields(res), **({"resumed_at_epochs": resumed} if any(resumed) else {})}

    def cell_budget_flush(self) -> None:
        """Evaluate the pending cells once their sets pass PENDING_BYTES (memory held for them)."""
        held = sum(c["pending"]["ds"].images.numel() * 4 for c in self.store.pending.values())
        if held > PENDING_BYTES:
            self.flush()

    def flush(self) -> None:
        """Under torchrun, the pending cells' evaluations: each run of each cell is one job, job j
        (in cell order, runs in seed order) trains on rank j mod W, and every rank gathers every
        run, so each cell holds the one process's runs (run r seeded seed + r wherever it trained)
        and rank 0 writes it. With more ranks than a cell has runs, the ranks take other cells'
        runs instead of waiting. A no-op in one process (nothing is deferred) or with nothing
        pending; every rank calls it at the same point (the pending cells are the same on all)."""
        pending = list(self.store.pending)
        if not pending:
            return
        world, rank = distributed_world()
        jobs = [(name, r) for name in pending for r in range(self.cfg.runs)]
        mine = []
        for j, (name, r) in enumerate(jobs):
            if j % world != rank:
                continue
            job = self.store.pending[name]["pending"]
            res = evaluate(job["ds"], self.dataset, runs=1, seed=self.seed + r, progress=self.progress and rank == 0,
                           device=self.device, local=True, **job["settings"])
            mine.append({**res["per_run"][0], "cell": name, "rank": rank,
                         "protocol": {k: res[k] for k in ("epochs", "label_kind", "soft_loss")}})
        every = [None] * world
        torch.distributed.all_gather_object(every, mine)
        done = [run for part in every for run in part]
        for name in pending:
            runs = sorted((run for run in done if run["cell"] == name), key=lambda run: run["seed"])
            res = {**runs[0]["protocol"], **summarize(runs), "runs": len(runs), "ranks": world,
                   "per_run": [{k: v for k, v in run.items() if k not in ("cell", "protocol")} for run in runs]}
            self.store.complete(name, {**evaluation_fields(res), "run_ranks": [run["rank"] for run in runs],
                                       "seconds": sum(run["train_seconds"] for run in runs)})

    def set_cell(self, name, make, model="convnet"):
        """Build a distilled set with ``make() -> (DistilledSet, seconds)`` and evaluate it."""
        def run():
            self.objective()  # the precompute (moments, coreset orders) before any cell's clock
            ds, seconds = make()
            return {"name": name, "seconds": seconds, "timing": ds.meta.get("timing", {}),
                    **self.evaluate_set(ds, name, model)}
        return self.cell(name, run)

    def cross_cell(self, name):
        model = self.cfg.cross_model

        def run():
            return {"name": name, **self.evaluate_set(self.stored_set(name), f"{name}-{model}", model)}
        return self.cell(f"{name}-{model}", run)

    def hard_cell(self, name):
        """``name``'s images with hard labels, evaluated as every cell is: HLR's Acc(set, hard)."""
        def run():
            return {"name": name, **self.evaluate_set(hard_copy(self.stored_set(name)), f"{name}-hard")}
        return self.cell(f"{name}-hard", run)

    def aug_cell(self, name):
        """``name``'s set, its own labels, evaluated with DSA augmentation for the same epochs: ARS's
        Acc(set, aug) (the cell without augmentation is ``name``'s own)."""
        def run():
            ds = self.stored_set(name)
            return {"name": name, **self.evaluate_set(ds, name, dsa=True)}
        return self.cell(f"{name}-aug", run)

    def real_cell(self) -> dict:
        """HLR's Acc(real, hard): the evaluation's network on the whole training split, hard labels."""
        epochs = self.cfg.real_epochs or self.cfg.eval_epochs
        res = evaluate(real_data_set(self.dataset), self.dataset, epochs=epochs, runs=REAL_RUNS, seed=self.seed,
                       progress=self.progress, device=self.device)
        return {"name": "real-hard", "accuracy_mean": res["accuracy_mean"], "accuracy_std": res["accuracy_std"],
                "accuracies": [r["accuracy"] for r in res["per_run"]], "model": "convnet", "epochs": res["epochs"],
                "runs": res["runs"], "images": res["images"], "label_kind": "hard"}

    def stored_set(self, name: str) -> DistilledSet:
        """The set a finished cell evaluated: from OUT/sets/, or, when that file is gone (sets
        are not committed, so a resume in a new checkout lacks them), rebuilt by the cell's own
        seeded code path and checked against the digest the cell recorded."""
        return from_lead(lambda: self._stored_set(name))  # rank 0's file, sent to every rank

    def _stored_set(self, name: str) -> DistilledSet:
        cell = self.store.lookup(name)  # pending under torchrun: its set is written, its evaluation to come
        path = self.out / cell["set"]
        if path.is_file():
            return DistilledSet.load(path)
        digest = cell.get("set_sha256")
        if digest is None:
            raise UsageError(f"{path} is gone and cell {name} records no digest to check a rebuilt set "
                             f"against; delete {self.store.path(name)} so the cell is redone, then resume.")
        ds = self._rebuild(name)
        if set_digest(ds) != digest:
            raise UsageError(f"{path} is gone and {name} rebuilds differently from the set it evaluated; "
                             f"delete {self.store.path(name)} so the cell is redone, then resume.")
        ds.save(path, force=True)  # the missing file, restored: the same set, ours to write
        return ds

    def _rebuild(self, name: str) -> DistilledSet:
        """A cell's set again, from its name: the same seeded call that made it."""
        stem, ipc = name.rsplit("-ipc", 1)
        ipc, step = (int(v) for v in ipc.split("-step")) if "-step" in ipc else (int(ipc), None)
        obj, seed = self.objective(), self.seed
        for base, fn, args in self.baselines(ipc):
            if base == name:
                return fn(*args)
        if stem in VARIANTS:
            return krr_pixel(obj if stem == "krr-pixel" else self.fresh_objective(), ipc, step, (step,),
                             lr=self.cfg.lr_pixel, seed=seed, progress=self.progress)
        # a generator cell: LABEL-ipcN, or mgdd-k0-pP-ipcN for the pass sweep
        label, passes = stem, None
        if stem.startswith("mgdd-k0-p"):
            label, passes = "mgdd-k0", int(stem[len("mgdd-k0-p"):])
        adapt = self.cells[f"{label}-adapt"]
        source = "scratch" if adapt["from"] == "scratch" else "meta"
        return self._generate(label, ipc, adapt, (source, adapt["ipcs"], adapt["steps"]), passes=passes)[0]

    # -- the run: IPC by IPC, so the first finished rows are reported while later ones run
    def run(self) -> dict:
        self._start()
        self.objective()
        self.reporting, results = True, None
        for ipc in self.cfg.ipcs:
            self.ipc_block(ipc)
            self.flush()
            results = self.report()
        if self.cfg.robust:
            self.cell("real-hard", self.real_cell)  # one cell: its runs split over the ranks (evaluate)
            results = self.report()
        for ipc in self.cfg.scaling_ipcs:
            self.cell(f"scaling-ipc{ipc}", lambda: self.measure_scaling(ipc))
        return self.report() if self.cfg.scaling_ipcs else results

    def measure_scaling(self, ipc) -> dict:
        """Seconds of the shipped generator's passes, of one krr-pixel step and of the label solve
        at ``ipc`` (no evaluation): how each method's time grows with the set size M. The sets'
        digests let --retime check it rebuilt the same ones."""
        obj = self.objective()
        gen, origin = load_generator("meta", self.dataset.channels)
        ds = generate(gen, obj, ipc, seed=self.seed)
        # steps 2-3 of one krr-pixel run: the first step pays one-off costs (allocations, warm-up).
        # Both times come from the same run's cumulative clock, so the difference cannot go
        # negative under load as the difference of two separate runs could.
        after = {}
        three = krr_pixel(obj, ipc, 3, snapshots=(1,), lr=self.cfg.lr_pixel, seed=self.seed, progress=False,
                          on_snapshot=lambda s, d: after.setdefault(s, d.meta["timing"]["seconds"]))
        step = (three.meta["timing"]["seconds"] - after[1]) / 2
        t = ds.meta["timing"]
        return {"name": f"scaling-ipc{ipc}", "ipc": ipc, "images": len(ds.images), "generator": origin,
                "passes": ds.meta.get("passes", 1), "generate_seconds": t["generate_seconds"],
                "label_seconds": t["label_seconds"], "pixel_step_seconds": step,
                "set_sha256": set_digest(ds), "krr_sha256": set_digest(three)}

    def baselines(self, ipc) -> list:
        """The cheap baselines of an IPC block as (cell name, builder, its arguments): one list
        for the run, for a set rebuilt on resume (_rebuild) and for --retime."""
        obj, seed = self.objective(), self.seed
        return [(f"random-ipc{ipc}", random_real, (self.dataset, ipc, seed)),
                (f"random+ls-ipc{ipc}", random_ls, (obj, ipc, seed)),
                (f"herding-ipc{ipc}", coreset, (obj, ipc, "herding", seed, True))] + \
            [(f"{m}-ipc{ipc}", ONE_SHOT[m], (obj, ipc, seed, True)) for m in self.cfg.one_shot]

    def ipc_block(self, ipc) -> dict:
        cells = {}
        for name, fn, args in self.baselines(ipc):
            cells[name] = self.set_cell(name, lambda fn=fn, args=args: timed(fn, *args))
        # At an adapted size the iterative curves come before the generator cells, so that a block's
        # baseline rows land first (an IPC 50 block takes hours on a CPU, and the objective's rows do
        # not depend on the generator); at a size never adapted on, the other way round
        # (Preset.generator_first says why).
        parts = [self._curve_cells, self._generator_cells]
        if self.cfg.generator_first(ipc):
            parts.reverse()
        for part in parts:
            cells.update(part(ipc))
        if ipc == self.cfg.cross_ipc:
            for name in cross_sources(self.cfg, ipc):
                cells[f"{name}-{self.cfg.cross_model}"] = self.cross_cell(name)
        if self.cfg.robust:
            for name in hard_sources(self.cfg, ipc):
                cells[f"{name}-hard"] = self.hard_cell(name)
        if self.cfg.robust and self.cfg.robust_aug:
            for name in aug_sources(self.cfg, ipc):
                cells[f"{name}-aug"] = self.aug_cell(name)
        return cells

    def _curve_cells(self, ipc) -> dict:
        """The iterative baselines: one optimisation per curve, evaluated at every snapshot."""
        return {f"{variant}-ipc{ipc}-step{step}": self._krr_cell(ipc, step, variant)
                for variant in VARIANTS for step in self.cfg.snapshots(variant).get(str(ipc), [])}

    def _generator_cells(self, ipc) -> dict:
        """The generator cells of one IPC, in order of adaptation steps: the shipped generator
        (K = 0), the few-step regime, then the full adaptation, the unseen-size cell and the pass
        sweep. Each adaptation runs once (cached in its cell) and serves every IPC with one pass."""
        cfg, cells = self.cfg, {}

        def adapted(name, source, steps, ipcs=cfg.adapt_ipcs):
            cell = self.cell(f"{name}-adapt", lambda: self._adapt(source, name, ipcs, steps))
            cells[f"{name}-adapt"] = cell
            return cell

        def one_pass(name, source, adapt_cell, steps, ipcs=cfg.adapt_ipcs, passes=None, cell=None):
            cell = cell or f"{name}-ipc{ipc}"
            cells[cell] = self.set_cell(cell, lambda: self._generate(
                name, ipc, adapt_cell, (source, ipcs, steps), passes=passes))

        # few-step regime: K = 0 is the meta generator as shipped; scratch at K = 0 is the
        # identity, i.e. exactly random+ls, so it gets no cell of its own
        for k in cfg.k_sweep:
            for source, label in (("meta", "mgdd"), ("scratch", "scratch")):
                if source == "scratch" and k == 0:
                    continue
                name = f"{label}-k{k}"
                one_pass(name, source, adapted(name, source, k), k)
        # the main pair: the meta generator and the scratch ablation after adapt_steps
        for source, label in (("meta", "mgdd"), ("scratch", "scratch")):
            one_pass(label, source, adapted(label, source, None), None)
        un = cfg.unseen
        if ipc == un["generate"]:
            one_pass("unseen", "meta", adapted("unseen", "meta", None, un["adapt"]), None, ipcs=un["adapt"])
        # the shipped generator at other pass counts (K = 0): a few-pass generator's time-vs-accuracy knob
        for p in cfg.pass_sweep:
            one_pass("mgdd-k0", "meta", adapted("mgdd-k0", "meta", 0), 0, passes=p, cell=f"mgdd-k0-p{p}-ipc{ipc}")
        return cells

    # -- generators
    def adapted_generator(self, source, ipcs, steps, checkpoint=None):
        return adapted_generator(source, self.objective(), steps, ipcs, lr=self.cfg.lr_adapt, seed=self.seed,
                                 checkpoint=checkpoint, resume=checkpoint is not None, progress=self.progress)

    def _adapt(self, source, label, ipcs, steps=None):
        steps = self.cfg.adapt_steps if steps is None else steps
        gen, origin, log = self.adapted_generator(
            source, ipcs, steps, checkpoint=self.out / "cells" / f"{label}-adapt.checkpoint.safetensors")
        # a few-pass generator keeps its pass count (and a coreset-start one its start), so _generate
        # runs what it was adapted with
        gen.save_pretrained(self.out / "sets" / f"{label}-generator",
                            metadata=adapted_metadata(log, origin, self.dataset.name), force=True)
        return {"from": origin, "steps": log["steps"], "ipcs": log["ipcs"], "seconds": log["seconds"],
                "final_losses": [h["loss"] for h in log["history"][-10:]], **generation_defaults(log)}

    def _generate(self, label, ipc, adapt_cell, adapt_args, passes=None):
        path = self.out / "sets" / f"{label}-generator"
        if not path.exists():
            # weights not kept (a resume where sets/ was lost): re-run the same seeded adaptation;
            # the time reported stays the one recorded in adapt_cell
            self._adapt(adapt_args[0], label, adapt_args[1], adapt_args[2])
        gen = MetaGenerator.from_pretrained(path)
        ds = generate(gen, self.objective(), ipc, seed=self.seed, method=label, adapted_from=adapt_cell["from"],
                      adapt_steps=adapt_cell["steps"], adapt_ipcs=adapt_cell["ipcs"], passes=passes)
        return ds, adapt_cell["seconds"] + pass_seconds(ds)

    # -- the pixel-optimisation curves
    def _krr_cell(self, ipc, step, variant="krr-pixel"):
        """One snapshot of a pixel-optimisation curve; variant krr-pixel (cached pool) or krr-fresh."""
        name = f"{variant}-ipc{ipc}-step{step}"
        if self.store.exists(name):
            return self.cell(name, None)  # finished: read (and registered) from disk
        snaps = self.cfg.snapshots(variant)[str(ipc)]
        obj = self.objective() if variant == "krr-pixel" else self.fresh_objective()
        done = lambda s: self.store.exists(f"{variant}-ipc{ipc}-step{s}")  # noqa: E731

        def on_snapshot(s, ds):
            if s in snaps and not done(s):
                ds.save(self.out / "sets" / f"{variant}-ipc{ipc}-step{s}.safetensors", force=True)

        # one optimisation run reaches every snapshot; its checkpoint makes it resumable
        ckpt = self.out / "cells" / f"{variant}-ipc{ipc}.checkpoint.safetensors"
        done_steps = load_state(ckpt)[1]["step"] if ckpt.exists() else 0
        early = [s for s in snaps if not done(s) and s < done_steps]
        if early:
            # snapshots added after the run passed them: replay the start of the same (seeded,
            # deterministic) trajectory in a run of its own, timed the same way
            krr_pixel(obj, ipc, max(early), early, lr=self.cfg.lr_pixel, seed=self.seed,
                      checkpoint=self.out / "cells" / f"{variant}-ipc{ipc}-early.checkpoint.safetensors",
                      resume=True, on_snapshot=on_snapshot, progress=self.progress)
        krr_pixel(obj, ipc, max(snaps), snaps, lr=self.cfg.lr_pixel, seed=self.seed,
                  checkpoint=ckpt, resume=True, on_snapshot=on_snapshot, progress=self.progress)
        for s in snaps:
            sname = f"{variant}-ipc{ipc}-step{s}"
            spath = self.out / "sets" / f"{sname}.safetensors"
            if from_lead(spath.exists):
                self.cell(sname, lambda: self._krr_eval(sname, spath, s))
        return self.store.lookup(name)

    def _krr_eval(self, name, set_path, step):
        ds = from_lead(lambda: DistilledSet.load(set_path))
        return {"name": name, "steps": step, "seconds": ds.meta["timing"]["seconds"], "timing": ds.meta["timing"],
                **self.evaluate_set(ds, name)}

    def retime(self, cont: bool = False, other_machine: bool = False) -> dict:
        """Re-measure the finished run's timings; ``cont`` continues a cut-off re-time;
        ``other_machine`` times a rebuild with other bits instead of refusing it (retime.py)."""
        self.folder.check_same_settings()
        return retime(self, cont, other_machine)
