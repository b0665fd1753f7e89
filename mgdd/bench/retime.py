"""`mgdd bench --retime`: re-measure a finished run's timings, keeping its evaluations.

Every timed stage is re-run with this code on this machine. Each stage is seeded and
deterministic, so it rebuilds exactly the set that was evaluated; that is checked bit for
bit (against the set on disk, or its recorded digest), then only the seconds are replaced.
Nothing is written unless every stage matches.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ..baselines import krr_pixel
from ..distilled import DistilledSet
from ..errors import UsageError
from ..generate import generate
from ..generator import MetaGenerator
from ..io import read_json, write_json
from .cells import pass_seconds, read_cells, set_digest, timed
from .presets import VARIANTS


def check_finished(out) -> None:
    """Refuse (before any folder is made) a folder that holds no finished run."""
    results = Path(out) / "results.json"
    if not results.exists() or not read_json(results).get("complete"):
        raise UsageError(f"{out} holds no finished run to re-time; finish it first with --resume.")


def _note(name):
    print(f"[bench] re-time {name} ...", file=sys.stderr, flush=True)


def retime(bench) -> dict:
    """Re-run every timed stage of a finished run with this code on this machine.

    Every stage is seeded and deterministic, so each rebuilds exactly the set that was
    evaluated; that is checked bit for bit, then only the seconds are replaced (the
    accuracies carry over because the sets are identical). Nothing is written unless every
    stage matches. Feature moments are computed again without the cache and compared with the
    cached ones (to float64 rounding: reductions may run in another order).
    """
    check_finished(bench.out)
    cells = read_cells(bench.out)
    new = {}  # cell name -> {"seconds", "timing", "verified"[, "set_sha256"]}

    def check_same(name, ds) -> bool:
        """Whether ``ds`` could be checked against the evaluated set (raises if it differs)."""
        path, digest = bench.out / cells[name]["set"], cells[name].get("set_sha256")
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

    obj, seed = bench.objective(), bench.seed
    # the feature moments, computed cold (no cache read or written), checked against the ones
    # every cell used; a resumed run's first build may have read part of them from its cache
    _note("features")
    cold = bench.make_objective(cache=False)
    for a, b in zip(cold.moments, obj.moments):
        if not (torch.allclose(a.gram, b.gram, rtol=1e-6, atol=1e-9) and torch.allclose(a.sums, b.sums, rtol=1e-6,
                                                                                        atol=1e-9)):
            raise UsageError("re-time: the feature moments computed again differ from the cached ones; nothing "
                             "was changed. Remove the cache (OUT/cache or $MGDD_CACHE) and re-run the bench.")
    new["features"] = {"seconds": cold.build_seconds, "verified": True}
    for ipc in bench.cfg.ipcs:
        for name, fn, args in bench.baselines(ipc):
            _note(name)
            record(name, *timed(fn, *args))
    # generators: adapt again from the same start, then one pass per IPC
    for adapt_name in [n for n in cells if n.endswith("-adapt")]:
        label, c = adapt_name[: -len("-adapt")], cells[adapt_name]
        _note(adapt_name)
        gen, _, log = bench.adapted_generator("scratch" if c["from"] == "scratch" else "meta", c["ipcs"], c["steps"])
        gen_path = bench.out / "sets" / f"{label}-generator"
        if gen_path.exists():
            stored = MetaGenerator.from_pretrained(gen_path).state_dict()
            if not all(torch.equal(v, stored[k]) for k, v in gen.state_dict().items()):
                raise UsageError(f"re-time: {adapt_name} adapted to different weights than the stored "
                                 "generator; nothing was changed. Re-run the bench for it instead.")
        # without the stored weights, the sets it generates below are still checked
        new[adapt_name] = {"seconds": log["seconds"], "verified": gen_path.exists()}
        # its own pass count, and (the shipped generator at K = 0) each count of the pass sweep
        sweep = [(f"{label}-p{p}", p) for p in bench.cfg.pass_sweep] if label == "mgdd-k0" else []
        for ipc in bench.cfg.ipcs:
            for stem, passes in [(label, None), *sweep]:
                name = f"{stem}-ipc{ipc}"
                if name in cells:
                    ds = generate(gen, obj, ipc, seed=seed, method=label, adapted_from=c["from"],
                                  adapt_steps=c["steps"], adapt_ipcs=c["ipcs"], passes=passes)
                    record(name, ds, log["seconds"] + pass_seconds(ds))
    # the iterative curves: one run each, every snapshot timed in that run
    for variant in VARIANTS:
        for ipc_key, snaps in bench.cfg.snapshots(variant).items():
            _note(f"{variant}-ipc{ipc_key}")

            def on_snapshot(s, ds, variant=variant, ipc_key=ipc_key):
                name = f"{variant}-ipc{ipc_key}-step{s}"
                if name in cells:
                    record(name, ds, ds.meta["timing"]["seconds"])

            krr_pixel(obj if variant == "krr-pixel" else bench.fresh_objective(), int(ipc_key), max(snaps), snaps,
                      lr=bench.cfg.lr_pixel, seed=seed, on_snapshot=on_snapshot, progress=bench.progress)
    # the timing-only cells: measured again, checked by the digests of the sets they built
    for ipc in bench.cfg.scaling_ipcs:
        name = f"scaling-ipc{ipc}"
        if name in cells:
            _note(name)
            m = bench.measure_scaling(ipc)
            if (m["set_sha256"], m["krr_sha256"]) != (cells[name]["set_sha256"], cells[name]["krr_sha256"]):
                raise UsageError(f"re-time: {name} rebuilt different sets than it timed; nothing was changed. "
                                 "Re-run that cell instead.")
            new[name] = {**{k: m[k] for k in ("generate_seconds", "label_seconds", "pixel_step_seconds")},
                         "verified": True}
    # every stage matched: replace the seconds, keeping what was measured before
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for name, upd in new.items():
        c, upd = cells[name], dict(upd)
        verified = upd.pop("verified")
        # a timing-only cell keeps its seconds at the top level rather than under "timing"
        previous = c.get("timing") if "timing" in c or "seconds" in c else {k: c.get(k) for k in upd}
        c["retimed"] = {"at": stamp, "verified": verified, "previous_seconds": c.get("seconds"),
                        "previous_timing": previous}
        c.update(upd)
        write_json(bench.out / "cells" / f"{name}.json", c, force=True)
    return bench.run()
