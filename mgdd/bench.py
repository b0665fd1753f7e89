"""`mgdd bench`: the claim as a file - accuracy vs wall-clock for mgdd and every baseline.

One process, one machine, every stage timed:
  features   the pool's real-data moments (computed once, shared by every KRR method)
  random, random+ls, herding        cheap baselines
  krr-pixel  the iterative method, snapshots at increasing step counts (accuracy-vs-time curve)
  scratch    the generator adapted K steps from random init (no meta-training)
  mgdd       the shipped meta generator adapted K steps, then one pass per IPC
  unseen     mgdd adapted on a subset of IPCs only, generating an IPC it never saw
Every cell (distilled set + evaluation) is written to OUT/cells/ as it finishes, so an
interrupted run resumes where it stopped (--resume). Outputs: results.json, results.md,
plots/*.png. A run that spanned sessions or code changes can have its timings re-measured in
one pass (--retime): every stage is re-run, checked to rebuild the evaluated set bit for bit,
and only its seconds are replaced.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import torch

from .version import __version__
from .adapt import adapt
from .baselines import coreset, krr_pixel, random_ls, random_real
from .checkpoint import load_state
from .data import load_dataset
from .distilled import DistilledSet, save_grid
from .errors import UsageError, unknown_name
from .evaluate import evaluate
from .features import FeatureConfig
from .generate import generate
from .io import read_json, write_json
from .objective import FreshObjective, KRRObjective
from .pipeline import load_generator

_SNAPSHOT_KEYS = {"krr-pixel": "krr_snapshots", "krr-fresh": "krr_fresh_snapshots"}

PRESETS = {
    # CI-sized: scikit-learn's 8x8 digits, tiny networks, a few steps; same code path.
    "quick": {"dataset": "digits", "ipcs": [1, 5], "unseen": {"adapt": [1], "generate": 5},
              "feature": {"width": 16, "depth": 2}, "pool_size": 2, "krr_snapshots": {"1": [5, 10], "5": [5, 10]},
              "krr_fresh_snapshots": {"5": [2, 4]},
              "adapt_steps": 5, "k_sweep": [0, 2], "adapt_ipcs": [1, 5], "eval_epochs": 20, "runs": 2,
              "cross_model": "mlp", "cross_ipc": 5, "lr_pixel": 0.01, "lr_adapt": 1e-3},
    # The headline benchmark on Fashion-MNIST, ConvNet-3 protocol (DESIGN.md section 6).
    "fmnist": {"dataset": "fashion-mnist", "ipcs": [10, 1, 50], "unseen": {"adapt": [1, 10], "generate": 50},
               "feature": {"width": 64, "depth": 3}, "pool_size": 8,
               # early snapshots (1..10 steps) keep the acceleration honest for mgdd points that take seconds
               "krr_snapshots": {"1": [1, 2, 5, 10, 25, 50, 100, 200, 400, 800],
                                 "10": [1, 2, 5, 10, 25, 50, 100, 200, 400, 800], "50": [10, 25, 50, 200, 800]},
               # krr-pixel without the cached moments, ~1 s a step whatever the IPC (IPC 50 evaluations cost
               # 14 min a cell on 2 cores, so the fresh curve is measured at IPC 1 and 10)
               "krr_fresh_snapshots": {"1": [1, 2, 5, 25, 100], "10": [1, 2, 5, 10, 25, 50, 100, 200]},
               # adapt_steps is the main mgdd/scratch pair; k_sweep adds the few-step regime meta-training is for
               "adapt_steps": 200, "k_sweep": [0, 25], "adapt_ipcs": [1, 10, 50], "eval_epochs": 300, "runs": 3,
               "cross_model": "mlp", "cross_ipc": 10, "lr_pixel": 0.01, "lr_adapt": 1e-3},
}


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "mgdd": __version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


class Bench:
    def __init__(self, preset: str, out, data_dir=None, resume=False, force=False, seed=0, progress=False):
        if preset not in PRESETS:
            raise unknown_name("bench preset", preset, PRESETS)
        self.cfg, self.preset, self.seed, self.progress = PRESETS[preset], preset, seed, progress
        self.out = Path(out)
        if self.out.exists() and any(self.out.iterdir()) and not (resume or force):
            raise UsageError(f"{self.out} is not empty; pass --resume to continue that run or --force to start over.")
        if force and not resume and (self.out / "cells").exists():
            for p in (self.out / "cells").glob("*.json"):
                p.unlink()
        for sub in ("cells", "sets", "plots"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.dataset = load_dataset(self.cfg["dataset"], data_dir)
        self._objective = None
        self.cells, self.done = {}, None  # every cell seen so far; IPC blocks finished (None before run())

    # -- cells: one JSON each, reused on resume
    def cell(self, name: str, fn):
        path = self.out / "cells" / f"{name}.json"
        if path.exists():
            self.cells[name] = read_json(path)
            return self.cells[name]
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        result = fn()
        # wall time of the whole cell (build + evaluation runs): what the bench itself costs
        result = {**result, "cell_wall_seconds": time.perf_counter() - t0}
        write_json(path, result, force=True)
        self.cells[name] = result
        if self.done is not None:
            # a block can take hours: keep the report current, cell by cell
            self.report(self.cells, self.done, plots=False)
        return result

    def objective(self) -> KRRObjective:
        if self._objective is None:
            # $MGDD_CACHE when set, else a cache inside the results folder
            cache_dir = None if os.environ.get("MGDD_CACHE") else self.out / "cache"
            obj = KRRObjective(self.dataset, FeatureConfig(**self.cfg["feature"]), self.cfg["pool_size"],
                               seed=self.seed, cache_dir=cache_dir)
            seconds = obj.build_seconds
            # the first (cold) computation is the one recorded; a resumed run reads the disk cache
            self.features = self.cell("features", lambda: {"seconds": seconds, "objective": obj.describe()})
            self._objective = obj
        return self._objective

    def evaluate_set(self, ds: DistilledSet, name: str, model="convnet") -> dict:
        set_path = self.out / "sets" / f"{name}.safetensors"
        if not set_path.exists():
            ds.save(set_path, force=True)
        res = evaluate(ds, self.dataset, model=model, epochs=self.cfg["eval_epochs"], runs=self.cfg["runs"],
                       seed=self.seed, progress=self.progress)
        return {"accuracy_mean": res["accuracy_mean"], "accuracy_std": res["accuracy_std"], "set_sha256": set_digest(ds),
                "accuracies": [r["accuracy"] for r in res["per_run"]], "model": model, "epochs": res["epochs"],
                "runs": res["runs"], "label_kind": res["label_kind"], "set": str(set_path.relative_to(self.out))}

    def set_cell(self, name, make, model="convnet"):
        """Build a distilled set with ``make() -> (DistilledSet, seconds)`` and evaluate it."""
        def run():
            ds, seconds = make()
            return {"name": name, "seconds": seconds, "timing": ds.meta.get("timing", {}),
                    **self.evaluate_set(ds, name, model)}
        return self.cell(name, run)

    def cross_cell(self, name, source_cell):
        def run():
            ds = DistilledSet.load(self.out / source_cell["set"])
            return {"name": name, **self.evaluate_set(ds, name + "-" + self.cfg["cross_model"], self.cfg["cross_model"])}
        return self.cell(f"{name}-{self.cfg['cross_model']}", run)

    # -- the run: IPC by IPC, so the first finished rows are reported while later ones run
    def run(self) -> dict:
        self.objective()
        self.done, results = [], None
        for ipc in self.cfg["ipcs"]:
            self.ipc_block(ipc)
            self.done.append(ipc)
            results = self.report(self.cells, self.done)
        return results

    def ipc_block(self, ipc) -> dict:
        cfg, seed, obj, cells = self.cfg, self.seed, self.objective(), {}
        cells[f"random-ipc{ipc}"] = self.set_cell(f"random-ipc{ipc}", lambda: _timed(random_real, self.dataset, ipc, seed))
        cells[f"random+ls-ipc{ipc}"] = self.set_cell(f"random+ls-ipc{ipc}", lambda: _timed(random_ls, obj, ipc, seed))
        cells[f"herding-ipc{ipc}"] = self.set_cell(f"herding-ipc{ipc}",
                                                   lambda: _timed(coreset, obj, ipc, "herding", seed, True))
        # the meta generator and the scratch ablation: adapted once each (cached), one pass per IPC
        for source, label in (("meta", "mgdd"), ("scratch", "scratch")):
            adapt_cell = self.cell(f"{label}-adapt", lambda: self._adapt(source, label, cfg["adapt_ipcs"]))
            cells[f"{label}-adapt"] = adapt_cell
            cells[f"{label}-ipc{ipc}"] = self.set_cell(
                f"{label}-ipc{ipc}", lambda: self._generate(label, ipc, adapt_cell, (source, cfg["adapt_ipcs"], None)))
        un = cfg["unseen"]
        if ipc == un["generate"]:
            unseen_adapt = self.cell("unseen-adapt", lambda: self._adapt("meta", "unseen", un["adapt"]))
            cells["unseen-adapt"] = unseen_adapt
            cells[f"unseen-ipc{ipc}"] = self.set_cell(
                f"unseen-ipc{ipc}", lambda: self._generate("unseen", ipc, unseen_adapt, ("meta", un["adapt"], None)))
        # few-step regime: the same comparison after K adaptation steps (K = 0 is the meta generator as shipped;
        # scratch at K = 0 is the identity, i.e. exactly random+ls, so it gets no cell of its own)
        for k in cfg.get("k_sweep", []):
            for source, label in (("meta", "mgdd"), ("scratch", "scratch")):
                if source == "scratch" and k == 0:
                    continue
                name = f"{label}-k{k}"
                adapt_cell = self.cell(f"{name}-adapt", lambda: self._adapt(source, name, cfg["adapt_ipcs"], k))
                cells[f"{name}-adapt"] = adapt_cell
                cells[f"{name}-ipc{ipc}"] = self.set_cell(
                    f"{name}-ipc{ipc}", lambda: self._generate(name, ipc, adapt_cell, (source, cfg["adapt_ipcs"], k)))
        # the iterative baseline: one optimisation, evaluated at every snapshot
        for step in cfg["krr_snapshots"][str(ipc)]:
            cells[f"krr-pixel-ipc{ipc}-step{step}"] = self._krr_cell(ipc, step)
        # the same method as the published iterative baselines run it (no cached moments): fresh
        # network + real batches every step; shows what the cached pool buys krr-pixel
        for step in cfg.get("krr_fresh_snapshots", {}).get(str(ipc), []):
            cells[f"krr-fresh-ipc{ipc}-step{step}"] = self._krr_cell(ipc, step, "krr-fresh")
        if ipc == cfg["cross_ipc"]:
            last = max(cfg["krr_snapshots"][str(ipc)])
            for name in (f"random+ls-ipc{ipc}", f"mgdd-ipc{ipc}", f"scratch-ipc{ipc}", f"krr-pixel-ipc{ipc}-step{last}"):
                cells[f"{name}-{cfg['cross_model']}"] = self.cross_cell(name, cells[name])
        return cells

    def report(self, cells, done, plots=True) -> dict:
        results = self.summarise(cells, done)
        write_json(self.out / "results.json", results, force=True)
        (self.out / "results.md").write_text(self.markdown(results))
        if plots and done:
            self.plots(results)
        return results

    def _adapted_generator(self, source, ipcs, steps, checkpoint=None):
        gen, origin = load_generator(source, self.dataset.channels, seed=self.seed)  # scratch weights use the seed
        log = adapt(gen, self.objective(), steps=steps, ipcs=ipcs, lr=self.cfg["lr_adapt"], seed=self.seed,
                    checkpoint=checkpoint, resume=checkpoint is not None, progress=self.progress, source=origin)
        return gen, origin, log

    def _adapt(self, source, label, ipcs, steps=None):
        steps = self.cfg["adapt_steps"] if steps is None else steps
        gen, origin, log = self._adapted_generator(
            source, ipcs, steps, checkpoint=self.out / "cells" / f"{label}-adapt.checkpoint.safetensors")
        gen.save_pretrained(self.out / "sets" / f"{label}-generator", metadata={"from": origin, **{
            k: log[k] for k in ("steps", "seconds", "ipcs")}}, force=True)
        return {"from": origin, "steps": log["steps"], "ipcs": log["ipcs"], "seconds": log["seconds"],
                "final_losses": [h["loss"] for h in log["history"][-10:]]}

    def _generate(self, label, ipc, adapt_cell, adapt_args):
        from .generator import MetaGenerator
        path = self.out / "sets" / f"{label}-generator"
        if not path.exists():
            # weights not kept (a resume where sets/ was lost): re-run the same seeded adaptation;
            # the time reported stays the one recorded in adapt_cell
            self._adapt(adapt_args[0], label, adapt_args[1], adapt_args[2])
        gen = MetaGenerator.from_pretrained(path)
        ds = generate(gen, self.objective(), ipc, seed=self.seed, method=label, adapted_from=adapt_cell["from"],
                      adapt_steps=adapt_cell["steps"], adapt_ipcs=adapt_cell["ipcs"])
        return ds, adapt_cell["seconds"] + _pass_seconds(ds)

    def fresh_objective(self) -> KRRObjective:
        """The same objective, RFAD-style: a new random network and real batches every step."""
        return FreshObjective.sharing(self.objective())  # the pool serves its final label solve

    def _krr_cell(self, ipc, step, variant="krr-pixel"):
        """One snapshot of the pixel-optimisation curve; variant krr-pixel (cached pool) or krr-fresh."""
        name = f"{variant}-ipc{ipc}-step{step}"
        path = self.out / "cells" / f"{name}.json"
        if path.exists():
            return self.cell(name, None)  # finished: read (and registered) from disk
        snaps = self.cfg[_SNAPSHOT_KEYS[variant]][str(ipc)]
        obj = self.objective() if variant == "krr-pixel" else self.fresh_objective()
        cell_path = lambda s: self.out / "cells" / f"{variant}-ipc{ipc}-step{s}.json"  # noqa: E731

        def on_snapshot(s, ds):
            if s in snaps and not cell_path(s).exists():
                ds.save(self.out / "sets" / f"{variant}-ipc{ipc}-step{s}.safetensors", force=True)

        # one optimisation run reaches every snapshot; its checkpoint makes it resumable
        ckpt = self.out / "cells" / f"{variant}-ipc{ipc}.checkpoint.safetensors"
        done_steps = load_state(ckpt)[1]["step"] if ckpt.exists() else 0
        early = [s for s in snaps if not cell_path(s).exists() and s < done_steps]
        if early:
            # snapshots added after the run passed them: replay the start of the same (seeded,
            # deterministic) trajectory in a run of its own, timed the same way
            krr_pixel(obj, ipc, max(early), early, lr=self.cfg["lr_pixel"], seed=self.seed,
                      checkpoint=self.out / "cells" / f"{variant}-ipc{ipc}-early.checkpoint.safetensors",
                      resume=True, on_snapshot=on_snapshot, progress=self.progress)
        krr_pixel(obj, ipc, max(snaps), snaps, lr=self.cfg["lr_pixel"], seed=self.seed,
                  checkpoint=ckpt, resume=True, on_snapshot=on_snapshot, progress=self.progress)
        for s in snaps:
            sname = f"{variant}-ipc{ipc}-step{s}"
            spath = self.out / "sets" / f"{sname}.safetensors"
            if spath.exists():
                self.cell(sname, lambda: self._krr_eval(sname, spath, s))
        return self.cells[name]

    def _krr_eval(self, name, set_path, step):
        ds = DistilledSet.load(set_path)
        return {"name": name, "steps": step, "seconds": ds.meta["timing"]["seconds"], "timing": ds.meta["timing"],
                **self.evaluate_set(ds, name)}

    # -- re-measure the timings of a finished run, keeping its evaluations
    def retime(self) -> dict:
        """Re-run every timed stage of a finished run with this code on this machine.

        Every stage is seeded and deterministic, so each rebuilds exactly the set that was
        evaluated; that is checked bit for bit, then only the seconds are replaced (the
        accuracies carry over because the sets are identical). Nothing is written unless every
        stage matches. Feature moments keep their first (cold) time: a rerun reads the cache.
        """
        _check_finished(self.out)
        from .generator import MetaGenerator
        cells = {p.stem: read_json(p) for p in sorted((self.out / "cells").glob("*.json"))}
        new = {}  # cell name -> {"seconds", "timing", "verified"[, "set_sha256"]}

        def check_same(name, ds) -> bool:
            """Whether ``ds`` could be checked against the evaluated set (raises if it differs)."""
            path, digest = self.out / cells[name]["set"], cells[name].get("set_sha256")
            if path.exists():
                stored = DistilledSet.load(path)
                same = torch.equal(stored.images, ds.images) and torch.equal(stored.labels, ds.labels)
            elif digest:
                same = set_digest(ds) == digest
            else:
                return False  # sets are not committed: a cell from a run before digests were recorded
            if not same:
                raise UsageError(f"re-time: {name} rebuilt differently from the evaluated set, so its accuracy "
                                 "would not carry over; nothing was changed. Re-run that cell instead.")
            return True

        def record(name, ds, seconds):
            verified = check_same(name, ds)
            new[name] = {"seconds": seconds, "timing": ds.meta.get("timing", {}), "verified": verified}
            if verified:  # from now on the cell can be checked even after its set file is gone
                new[name]["set_sha256"] = set_digest(ds)

        obj, seed = self.objective(), self.seed
        for ipc in self.cfg["ipcs"]:
            for name, fn, args in ((f"random-ipc{ipc}", random_real, (self.dataset, ipc, seed)),
                                   (f"random+ls-ipc{ipc}", random_ls, (obj, ipc, seed)),
                                   (f"herding-ipc{ipc}", coreset, (obj, ipc, "herding", seed, True))):
                self._progress_note(name)
                record(name, *_timed(fn, *args))
        # generators: adapt again from the same start, then one pass per IPC
        for adapt_name in [n for n in cells if n.endswith("-adapt")]:
            label, c = adapt_name[: -len("-adapt")], cells[adapt_name]
            self._progress_note(adapt_name)
            gen, _, log = self._adapted_generator("scratch" if c["from"] == "scratch" else "meta", c["ipcs"], c["steps"])
            gen_path = self.out / "sets" / f"{label}-generator"
            if gen_path.exists():
                stored = MetaGenerator.from_pretrained(gen_path).state_dict()
                if not all(torch.equal(v, stored[k]) for k, v in gen.state_dict().items()):
                    raise UsageError(f"re-time: {adapt_name} adapted to different weights than the stored "
                                     "generator; nothing was changed. Re-run the bench for it instead.")
            # without the stored weights, the sets it generates below are still checked
            new[adapt_name] = {"seconds": log["seconds"], "verified": gen_path.exists()}
            for ipc in self.cfg["ipcs"]:
                name = f"{label}-ipc{ipc}"
                if name in cells:
                    ds = generate(gen, obj, ipc, seed=seed, method=label, adapted_from=c["from"],
                                  adapt_steps=c["steps"], adapt_ipcs=c["ipcs"])
                    record(name, ds, log["seconds"] + _pass_seconds(ds))
        # the iterative curves: one run each, every snapshot timed in that run
        for variant, key in _SNAPSHOT_KEYS.items():
            for ipc_key, snaps in self.cfg.get(key, {}).items():
                self._progress_note(f"{variant}-ipc{ipc_key}")

                def on_snapshot(s, ds, variant=variant, ipc_key=ipc_key):
                    name = f"{variant}-ipc{ipc_key}-step{s}"
                    if name in cells:
                        record(name, ds, ds.meta["timing"]["seconds"])

                krr_pixel(obj if variant == "krr-pixel" else self.fresh_objective(), int(ipc_key), max(snaps), snaps,
                          lr=self.cfg["lr_pixel"], seed=seed, on_snapshot=on_snapshot, progress=self.progress)
        # every stage matched: replace the seconds, keeping what was measured before
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for name, upd in new.items():
            c, upd = cells[name], dict(upd)
            c["retimed"] = {"at": stamp, "verified": upd.pop("verified"), "previous_seconds": c.get("seconds"),
                            "previous_timing": c.get("timing")}
            c.update(upd)
            write_json(self.out / "cells" / f"{name}.json", c, force=True)
        return self.run()

    def _progress_note(self, name):
        print(f"[bench] re-time {name} ...", file=sys.stderr, flush=True)

    # -- reports
    def summarise(self, cells, done) -> dict:
        cfg = self.cfg
        done = sorted(done)  # report rows by IPC, whatever order the preset runs them in
        acc = {}
        for ipc in done:
            row = {}
            for m in ("random", "random+ls", "herding", "scratch", "mgdd"):
                row[m] = _point(cells[f"{m}-ipc{ipc}"])
            # both krr curves start, at step 0, from exactly the random+ls set (same images, same
            # label solve): a point below random+ls is reached before the first pixel step
            start = {"steps": 0, **row["random+ls"]}
            curve = [start] + [{"steps": s, **_krr_point(cells[f"krr-pixel-ipc{ipc}-step{s}"])}
                               for s in cfg["krr_snapshots"][str(ipc)]]
            row["krr-pixel"] = curve
            row["acceleration"] = _acceleration(curve, row["mgdd"])
            fresh_steps = cfg.get("krr_fresh_snapshots", {}).get(str(ipc), [])
            fresh = [start] + [{"steps": s, **_krr_point(cells[f"krr-fresh-ipc{ipc}-step{s}"])}
                               for s in fresh_steps] if fresh_steps else []
            if fresh:
                row["krr-fresh"] = fresh
            # few-step regime: mgdd vs scratch after K adaptation steps (scratch at K = 0 is random+ls)
            few = []
            for k in cfg.get("k_sweep", []):
                mg = _point(cells[f"mgdd-k{k}-ipc{ipc}"])
                sc = row["random+ls"] if k == 0 else _point(cells[f"scratch-k{k}-ipc{ipc}"])
                few.append({"k": k, "mgdd": mg, "scratch": sc, "acceleration": _acceleration(curve, mg)})
            few.append({"k": cfg["adapt_steps"], "mgdd": row["mgdd"], "scratch": row["scratch"],
                        "acceleration": row["acceleration"]})
            for p in few:
                if fresh:
                    p["acceleration_fresh"] = _acceleration(fresh, p["mgdd"])
            row["by_k"] = few
            acc[str(ipc)] = row
        un = cfg["unseen"]
        unseen = cells.get(f"unseen-ipc{un['generate']}")
        pending = [i for i in cfg["ipcs"] if i not in done]
        # cells of blocks still running, so a long block shows its progress
        in_progress = {str(i): {k: _point(c) for k, c in cells.items()
                                if (k.endswith(f"-ipc{i}") or f"-ipc{i}-step" in k) and "seconds" in c
                                and not k.endswith("-" + cfg["cross_model"])}
                       for i in pending}
        # "any size": one adaptation serves every IPC, while krr-pixel starts over for each one
        all_sizes = None
        if not pending:
            all_sizes = []
            for k in [*cfg.get("k_sweep", []), cfg["adapt_steps"]]:
                prefix = "mgdd" if k == cfg["adapt_steps"] else f"mgdd-k{k}"
                adapt_s = cells[f"{prefix}-adapt"]["seconds"]
                gen_s = sum(cells[f"{prefix}-ipc{i}"]["timing"]["generate_seconds"]
                            + cells[f"{prefix}-ipc{i}"]["timing"]["label_seconds"] for i in done)
                reach = [next(p for p in acc[str(i)]["by_k"] if p["k"] == k)["acceleration"]["krr_seconds_to_reach_mgdd"]
                         for i in done]
                total = adapt_s + gen_s
                all_sizes.append({"k": k, "ipcs": done, "mgdd_seconds": total, "adapt_seconds": adapt_s,
                                  "krr_seconds_to_reach": None if None in reach else sum(reach),
                                  "ratio": None if None in reach else sum(reach) / total})
        return {"preset": self.preset, "complete": not pending, "pending_ipcs": pending, "in_progress": in_progress, "dataset": self.dataset.describe(), "machine": machine(), "seed": self.seed,
                "config": cfg, "command": "mgdd " + " ".join(sys.argv[1:]) if sys.argv else "",
                "protocol": f"ConvNet-3 (width 128, instance norm), SGD lr 0.01 momentum 0.9 wd 5e-4, batch 256, "
                            f"{cfg['eval_epochs']} epochs, lr x0.1 at half, no augmentation; soft labels -> MSE, "
                            f"hard -> cross-entropy; {cfg['runs']} runs; full test set",
                "features": cells["features"],
                "adapt": {k[:-len("-adapt")]: v for k, v in cells.items() if k.endswith("-adapt")},
                "accuracy": acc, "all_sizes": all_sizes, "bench_cost": _bench_cost(cells),
                "retimed": _retimed(cells),
                "unseen": None if unseen is None else {
                    "adapt_ipcs": un["adapt"], "ipc": un["generate"], "mean": unseen["accuracy_mean"],
                    "std": unseen["accuracy_std"], "seconds": unseen["seconds"],
                    "random+ls": acc.get(str(un["generate"]), {}).get("random+ls")},
                "cross_architecture": {k: {"mean": v["accuracy_mean"], "std": v["accuracy_std"], "model": v["model"]}
                                       for k, v in cells.items() if k.endswith("-" + cfg["cross_model"])},
                "cells": cells}

    def markdown(self, r) -> str:
        cfg = self.cfg
        pct = lambda d: f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f}"  # noqa: E731
        lines = [f"# mgdd bench: {r['dataset']['name']} (preset `{r['preset']}`)", "",
                 f"Machine: {r['machine']['processor']}, {r['machine']['cpus']} CPUs, torch {r['machine']['torch']}"
                 f"{', GPU ' + r['machine']['cuda'] if r['machine']['cuda'] else ', no GPU'}.  ",
                 f"Protocol: {r['protocol']}.  ",
                 f"Feature moments (pool of {cfg['pool_size']} random ConvNets, width {cfg['feature']['width']}): "
                 f"{r['features']['seconds']:.1f} s, shared by every KRR method and not counted below.", "",
                 "## Test accuracy (%)", "",
                 f"scratch and mgdd: {cfg['adapt_steps']} adaptation steps (fewer steps: the K table below).", "",
                 "| IPC | random | random+ls | herding+ls | krr-pixel (best) | scratch | **mgdd** |",
                 "|---|---|---|---|---|---|---|"]
        ipcs = [int(i) for i in r["accuracy"]]
        if r["pending_ipcs"]:
            lines[2:2] = [f"**Partial run**: IPC {r['pending_ipcs']} not finished yet (resume with `--resume`).", ""]
        if r.get("retimed"):
            lines[2:2] = [f"**Timings re-measured** with `--retime` ({r['retimed']['at']}, {r['retimed']['cells']} "
                          "cells): every timed stage was re-run with the current code on this machine and rebuilt "
                          "bit-identical sets, so the accuracies are those of the original evaluations. Each cell "
                          "keeps its earlier seconds under `retimed`."
                          + (f" {len(r['retimed']['unverified'])} cells could not be checked: their sets predate "
                             "the recorded digests and are no longer on disk (sets are not committed); they were "
                             "rebuilt by the same seeded code as the checked ones." if r["retimed"]["unverified"]
                             else ""), ""]
        for ipc in ipcs:
            a = r["accuracy"][str(ipc)]
            best = a["acceleration"]["krr_best"]
            lines.append(f"| {ipc} | {pct(a['random'])} | {pct(a['random+ls'])} | {pct(a['herding'])} | "
                         f"{pct(best)} ({best['steps']} steps, {best['seconds']:.0f} s) | {pct(a['scratch'])} | "
                         f"**{pct(a['mgdd'])}** |")
        lines += ["", "## Time and acceleration", "",
                  f"mgdd (K = {cfg['adapt_steps']}) time = adaptation (shared by all IPCs) + generation + label solve "
                  "for that IPC. "
                  "Acceleration = time krr-pixel needs to first reach mgdd's mean accuracy / mgdd time.", "",
                  "| IPC | mgdd s | krr-pixel s to reach mgdd | acceleration | krr-pixel at 22x mgdd time | mgdd - best krr-pixel |",
                  "|---|---|---|---|---|---|"]
        for ipc in ipcs:
            x = r["accuracy"][str(ipc)]["acceleration"]
            reach = "never (in budget)" if x["ratio"] is None else f"{x['krr_seconds_to_reach_mgdd']:.1f}"
            ratio = _ratio_text(x)
            lines.append(f"| {ipc} | {x['mgdd_seconds']:.1f} | {reach} | {ratio} | {_at22_text(x)} | "
                         f"{100 * x['mgdd_minus_krr_best']:+.2f} |")
        if cfg.get("k_sweep"):
            lines += ["", "## mgdd vs scratch after K adaptation steps", "",
                      "Both adapt with the same steps, tasks and learning rate; mgdd starts from the shipped meta "
                      "generator, scratch from random init (an identity map, so scratch at K = 0 is random+ls). "
                      "Time = adaptation + generation + label solve.", "",
                      "| IPC | K | mgdd % | scratch % | mgdd - scratch | mgdd s | acceleration vs krr-pixel "
                      "| krr-pixel % at 22x mgdd time |",
                      "|---|---|---|---|---|---|---|---|"]
            for ipc in ipcs:
                for p in r["accuracy"][str(ipc)]["by_k"]:
                    lines.append(f"| {ipc} | {p['k']} | {pct(p['mgdd'])} | {pct(p['scratch'])} | "
                                 f"{100 * (p['mgdd']['mean'] - p['scratch']['mean']):+.2f} | "
                                 f"{p['mgdd']['seconds']:.1f} | {_ratio_text(p['acceleration'])} | "
                                 f"{_at22_text(p['acceleration'])} |")
        if r.get("all_sizes"):
            lines += ["", "## Every size from one adaptation", "",
                      "mgdd adapts once and then generates each IPC in one pass; krr-pixel optimises each IPC "
                      "from scratch. Totals over IPC " + ", ".join(str(i) for i in r["all_sizes"][0]["ipcs"])
                      + " (krr-pixel: the time it needs to reach mgdd's accuracy at each IPC).", "",
                      "| K | mgdd s (adapt + all generations) | krr-pixel s to match every IPC | ratio |",
                      "|---|---|---|---|"]
            for a in r["all_sizes"]:
                reach = "never (in budget)" if a["krr_seconds_to_reach"] is None else f"{a['krr_seconds_to_reach']:.1f}"
                ratio = "n/a" if a["ratio"] is None else f"{a['ratio']:.3g}x"
                lines.append(f"| {a['k']} | {a['mgdd_seconds']:.1f} | {reach} | {ratio} |")
        fresh_rows = [(ipc, r["accuracy"][str(ipc)]) for ipc in ipcs if "krr-fresh" in r["accuracy"][str(ipc)]]
        if fresh_rows:
            lines += ["", "## Against krr-fresh: pixel optimisation without the cached moments", "",
                      "krr-fresh is krr-pixel as the published iterative methods (KIP/RFAD-style) run it: a new "
                      "random network and two real batches of 1024 every step instead of the pool's cached "
                      "full-data moments. Acceleration = seconds krr-fresh needs to first reach mgdd's accuracy "
                      "/ mgdd seconds.", "",
                      "| IPC | K | mgdd % | mgdd s | krr-fresh s to reach | acceleration vs krr-fresh | krr-fresh best |",
                      "|---|---|---|---|---|---|---|"]
            for ipc, a in fresh_rows:
                for p in a["by_k"]:
                    x = p["acceleration_fresh"]
                    reach = "never (in budget)" if x["ratio"] is None else f"{x['krr_seconds_to_reach_mgdd']:.1f}"
                    best = x["krr_best"]
                    lines.append(f"| {ipc} | {p['k']} | {pct(p['mgdd'])} | {p['mgdd']['seconds']:.1f} | {reach} | "
                                 f"{_ratio_text(x)} | {pct(best)} ({best['steps']} steps, {best['seconds']:.0f} s) |")
            lines += ["", "| IPC | krr-fresh steps | seconds | accuracy % |", "|---|---|---|---|"]
            for ipc, a in fresh_rows:
                lines += [f"| {ipc} | {p['steps']} | {p['seconds']:.1f} | {pct(p)} |" for p in a["krr-fresh"]]
        lines += ["", "## krr-pixel accuracy vs time", "",
                  "Seconds = optimisation + the final label solve, both wall-clock of the run that wrote the "
                  "snapshot (mgdd's time includes its label solve too). Step 0 is the random+ls set: krr-pixel "
                  "starts from the same real images and solves its labels the same way. "
                  + ("Every snapshot of a curve was timed in one run (`--retime`)." if r.get("retimed") else
                     "Snapshots added to the preset later come from a replay of the same seeded trajectory (same "
                     "images), timed in that run, so run-to-run timing noise can make the column slightly "
                     "non-monotone."), "",
                  "| IPC | steps | seconds | accuracy % |", "|---|---|---|---|"]
        for ipc in ipcs:
            for p in r["accuracy"][str(ipc)]["krr-pixel"]:
                lines.append(f"| {ipc} | {p['steps']} | {p['seconds']:.1f} | {pct(p)} |")
        u = r["unseen"]
        if u is not None:
            lines += ["", "## A size never seen in adaptation", "",
                      f"mgdd adapted on IPC {u['adapt_ipcs']} only, generating IPC {u['ipc']}: **{100 * u['mean']:.2f} ± "
                      f"{100 * u['std']:.2f}** (random+ls at IPC {u['ipc']}: "
                      + (pct(u["random+ls"]) if u["random+ls"] else "n/a") + ")"]
        lines += ["", f"## Cross-architecture ({cfg['cross_model']}, IPC {cfg['cross_ipc']})", "",
                  "| set | accuracy % |", "|---|---|"]
        for k, v in r["cross_architecture"].items():
            lines.append(f"| {k.rsplit('-' + cfg['cross_model'], 1)[0]} | {pct(v)} |")
        ad = r["adapt"]
        lines += ["", "## Adaptation", ""]
        for k, v in ad.items():
            lines.append(f"- {k}: from `{v['from']}`, {v['steps']} steps on IPCs {v['ipcs']}, {v['seconds']:.1f} s")
        for ipc, got in r.get("in_progress", {}).items():
            if got:
                lines += ["", f"## IPC {ipc}: cells finished so far (block in progress)", "",
                          "| cell | accuracy % | seconds |", "|---|---|---|"]
                lines += [f"| {k} | {pct(p)} | {p['seconds']:.1f} |" for k, p in got.items()]
        c = r.get("bench_cost")
        if c:
            lines += ["", "## What the bench itself cost", "",
                      f"{c['cells_timed']} cells timed end to end (build + every evaluation run): "
                      f"{c['timed_seconds'] / 3600:.2f} h in all, plus {r['features']['seconds']:.0f} s of feature "
                      "moments; the krr-pixel optimisation runs themselves are in the krr-pixel table." + (f" {c['cells_untimed']} cells come from runs before per-cell timing was "
                                    "recorded and are not in that sum." if c["cells_untimed"] else "")]
        lines += ["", f"Command: `{r['command']}`", ""]
        return "\n".join(lines)

    def plots(self, r) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        cfg = self.cfg
        ipcs = [int(i) for i in r["accuracy"]]
        fig, axes = plt.subplots(1, len(ipcs), figsize=(5 * len(ipcs), 4), squeeze=False)
        for ax, ipc in zip(axes[0], ipcs):
            a = r["accuracy"][str(ipc)]
            curve = a["krr-pixel"]
            ax.errorbar([p["seconds"] for p in curve], [100 * p["mean"] for p in curve],
                        yerr=[100 * p["std"] for p in curve], marker="o", label="krr-pixel")
            if "krr-fresh" in a:
                fresh = a["krr-fresh"]
                ax.errorbar([p["seconds"] for p in fresh], [100 * p["mean"] for p in fresh],
                            yerr=[100 * p["std"] for p in fresh], marker="^", label="krr-fresh")
            # mgdd and scratch after K adaptation steps: a line per method, the full-K point starred
            few = a.get("by_k") or [{"k": cfg["adapt_steps"], "mgdd": a["mgdd"], "scratch": a["scratch"]}]
            for m, color, marker in (("mgdd", "red", "*"), ("scratch", "green", "s")):
                pts = [p for p in few if not (m == "scratch" and p["k"] == 0)]  # scratch K=0 is random+ls
                ax.errorbar([p[m]["seconds"] for p in pts], [100 * p[m]["mean"] for p in pts],
                            yerr=[100 * p[m]["std"] for p in pts], color=color, marker=marker, linestyle=":",
                            markersize=12 if m == "mgdd" else 7, label=f"{m} (K = {', '.join(str(p['k']) for p in pts)})")
            for m, color in (("random", "gray"), ("random+ls", "black"), ("herding", "purple")):
                ax.axhline(100 * a[m]["mean"], color=color, linestyle="--", linewidth=1, label=m)
            ax.set_xscale("log")
            ax.set_xlabel("wall-clock seconds (log)")
            ax.set_ylabel("test accuracy %")
            ax.set_title(f"{r['dataset']['name']} IPC {ipc}")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(self.out / "plots" / "accuracy_vs_time.png", dpi=110)
        plt.close(fig)
        ipc = cfg["cross_ipc"]
        last = max(cfg["krr_snapshots"][str(ipc)])
        for name in (f"random-ipc{ipc}", f"random+ls-ipc{ipc}", f"herding-ipc{ipc}", f"krr-pixel-ipc{ipc}-step{last}",
                     f"scratch-ipc{ipc}", f"mgdd-ipc{ipc}"):
            p = self.out / "sets" / f"{name}.safetensors"
            if p.exists():
                save_grid(DistilledSet.load(p), self.out / "plots" / f"grid-{name}.png", force=True)


def _ratio_text(x) -> str:
    return f"{x['ratio']:.3g}x" if x["ratio"] is not None else f">= {x['ratio_lower_bound']:.3g}x"


def _pass_seconds(ds: DistilledSet) -> float:
    # a generated set's own time: the generator pass and its label solve (adaptation is added by the caller)
    t = ds.meta["timing"]
    return t["generate_seconds"] + t["label_seconds"]


def _check_finished(out: Path) -> None:
    results = out / "results.json"
    if not results.exists() or not read_json(results).get("complete"):
        raise UsageError(f"{out} holds no finished run to re-time; finish it first with --resume.")


def _at22_text(x) -> str:
    # DESIGN.md's target: mgdd >= krr-pixel given 22x mgdd's time
    at22 = x["krr_at_22x_mgdd_time"]
    return f"{100 * at22:.2f}" if at22 is not None else "past the last snapshot"


def set_digest(ds: DistilledSet) -> str:
    """SHA-256 of a set's images and labels: lets --retime check a set that is no longer on disk."""
    h = hashlib.sha256()
    for t in (ds.images.float(), ds.labels.float()):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _retimed(cells) -> dict | None:
    done = [c["retimed"] for c in cells.values() if "retimed" in c]
    if not done:
        return None
    return {"at": max(d["at"] for d in done), "cells": len(done),
            "unverified": sorted(k for k, c in cells.items() if "retimed" in c and not c["retimed"]["verified"])}


def _bench_cost(cells) -> dict:
    timed = [c["cell_wall_seconds"] for k, c in cells.items() if k != "features" and "cell_wall_seconds" in c]
    untimed = [k for k, c in cells.items() if k != "features" and "cell_wall_seconds" not in c]
    return {"timed_seconds": sum(timed), "cells_timed": len(timed), "cells_untimed": len(untimed)}


def _krr_point(cell) -> dict:
    # a krr snapshot is usable once its labels are solved: count that, as mgdd's time does
    return {**_point(cell), "seconds": cell["seconds"] + cell["timing"].get("label_seconds", 0.0)}


def _point(cell) -> dict:
    return {"mean": cell["accuracy_mean"], "std": cell["accuracy_std"], "seconds": cell["seconds"]}


def _acceleration(curve, point) -> dict:
    """How long krr-pixel needs to first reach ``point``'s mean accuracy, relative to its time."""
    reach = next((p for p in curve if p["mean"] >= point["mean"]), None)
    best = max(curve, key=lambda p: p["mean"])
    return {"mgdd_seconds": point["seconds"], "krr_seconds_to_reach_mgdd": reach["seconds"] if reach else None,
            "ratio": (reach["seconds"] / point["seconds"]) if reach else None,
            "ratio_lower_bound": None if reach else curve[-1]["seconds"] / point["seconds"],
            "krr_best": best, "mgdd_minus_krr_best": point["mean"] - best["mean"],
            "krr_at_22x_mgdd_time": _interp_curve(curve, 22 * point["seconds"])}


def _timed(fn, *args):
    t0 = time.perf_counter()
    ds = fn(*args)
    return ds, time.perf_counter() - t0


def _interp_curve(curve, seconds):
    """krr-pixel accuracy at a given time (linear in log-time between snapshots); None outside the curve."""
    import math
    pts = sorted((p["seconds"], p["mean"]) for p in curve)
    if not pts or seconds < pts[0][0] or seconds > pts[-1][0]:
        return None
    for (t0, a0), (t1, a1) in zip(pts, pts[1:]):
        if t0 <= seconds <= t1:
            if t1 == t0:
                return a1
            w = (math.log(seconds) - math.log(t0)) / (math.log(t1) - math.log(t0))
            return a0 + w * (a1 - a0)
    return pts[-1][1]


def bench_cli(args) -> None:
    if args.retime and args.force:
        raise UsageError("--retime re-measures a finished run and cannot be combined with --force.")
    if args.retime:
        _check_finished(Path(args.out))  # before Bench creates any folder
    b = Bench(args.preset, args.out, data_dir=args.data_dir, resume=args.resume or args.retime, force=args.force,
              seed=args.seed, progress=not args.quiet)
    b.retime() if args.retime else b.run()
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {args.out}/results.json, results.md, plots/")
