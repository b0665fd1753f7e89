"""`mgdd bench --retime`: re-measure a finished run's timings, keeping its evaluations.

Every timed stage is re-run with this code on this machine. Each stage is seeded and
deterministic, so it rebuilds exactly the set that was evaluated; that is checked bit for
bit (against the set on disk, or its recorded digest), then only the seconds are replaced.
No cell is written unless every stage matches.

A full re-time repeats every adaptation (about 1.5-2 h on 2 CPU cores for the fmnist preset),
so it keeps its progress: after each stage, what that stage measured goes to
OUT/retime-progress.json, and `--retime --resume` continues from there in a later session.
The file records a digest of the cells it started from; if they changed, it is refused.

Bit for bit holds on one machine only: another CPU's arithmetic (its kernels, its reduction
order) rebuilds the same seeded steps with other low bits, and long runs drift further (the
same 25 adaptation steps landed 16% of their displacement apart on two CPU hosts). A run made
over sessions on several machines is re-timed with ``other_machine``: a stage whose rebuild
differs is timed anyway, and its cell says so (``retimed.differs``) instead of the re-time
stopping.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import torch

from ..baselines import krr_pixel
from ..distilled import DistilledSet, set_digest
from ..errors import UsageError
from ..generate import generate
from ..start import compute_orders
from ..generator import MetaGenerator
from ..io import read_json, write_json
from .cells import host, pass_seconds, read_cells, timed
from .presets import VARIANTS


def check_finished(out) -> None:
    """Refuse (before any folder is made) a folder that holds no finished run."""
    results = Path(out) / "results.json"
    if not results.exists() or not read_json(results).get("complete"):
        raise UsageError(f"{out} holds no finished run to re-time; finish it first with --resume.")


PROGRESS = "retime-progress.json"


def _note(name):
    print(f"[bench] re-time {name} ...", file=sys.stderr, flush=True)


def _cells_digest(out) -> str:
    """SHA-256 over every cell file: a cut-off re-time only continues on the cells it began on."""
    h = hashlib.sha256()
    for path in sorted((Path(out) / "cells").glob("*.json")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _progress(out, cont: bool, other_machine: bool) -> dict:
    """The progress of a cut-off re-time to continue (``cont``), or a new one."""
    path, digest = Path(out) / PROGRESS, _cells_digest(out)
    if not path.exists():
        return {"cells_sha256": digest, "other_machine": other_machine, "host": host(), "stages": {}}
    progress = read_json(path)
    if not cont:
        raise UsageError(f"{out} holds a re-time cut off after {len(progress.get('stages', {}))} stages ({path}); "
                         "continue it with --retime --resume, or delete that file to start over.")
    if progress.get("cells_sha256") != digest or not isinstance(progress.get("stages"), dict):
        raise UsageError(f"the cells in {out} changed since the cut-off re-time in {path} began, so what it "
                         "measured may not belong to them; delete that file and re-time from the start.")
    was, now = progress.get("host", {}), host()
    if (was.get("platform"), was.get("cpu_model")) != (now["platform"], now["cpu_model"]):
        # one table must not mix two machines' times
        raise UsageError(f"the cut-off re-time in {path} ran on another host ({was.get('cpu_model')}, "
                         f"{was.get('platform')}); its times would not compare with this one's. Delete that "
                         "file and re-time from the start here.")
    if progress.get("other_machine", False) != other_machine:
        raise UsageError(f"the cut-off re-time in {path} ran {'with' if progress.get('other_machine') else 'without'} "
                         "--other-machine; continue it the same way.")
    return progress


def retime(bench, cont: bool = False, other_machine: bool = False) -> dict:
    """Re-run every timed stage of a finished run with this code on this machine.

    Every stage is seeded and deterministic, so each rebuilds exactly the set that was
    evaluated; that is checked bit for bit, then only the seconds are replaced (the
    accuracies carry over because the sets are identical). No cell is written unless every
    stage matches. Feature moments are computed again without the cache and compared with the
    cached ones (to float64 rounding: reductions may run in another order). Each finished
    stage is kept in OUT/retime-progress.json; ``cont`` continues a cut-off re-time from it.
    ``other_machine``: a rebuild with other bits is timed and marked, not refused (module doc).
    """
    check_finished(bench.out)
    progress = _progress(bench.out, cont, other_machine)
    cells = read_cells(bench.out)
    new = {}  # cell name -> {"seconds", "timing", "verified"[, "set_sha256"]}

    def stage(key, run):
        """Run one timed stage, or take what a cut-off re-time measured for it; keep its progress."""
        if key in progress["stages"]:
            _note(f"{key}: measured before the cut-off")
            new.update(progress["stages"][key])
            return
        before = set(new)
        run()
        progress["stages"][key] = {k: v for k, v in new.items() if k not in before}
        write_json(bench.out / PROGRESS, progress, force=True)

    def differs(message):
        """A rebuild with other bits: refused, or (other_machine) timed and marked."""
        if not other_machine:
            raise UsageError(message + " If the run was made on another machine, re-time it with --other-machine.")
        return "differs"

    def checked(verified) -> dict:
        """A stage's check as its cell records it: True, False (not checkable) or "differs"."""
        return {"verified": verified is True, **({"differs": True} if verified == "differs" else {})}

    def check_same(name, ds):
        """True if ``ds`` is the evaluated set bit for bit, False if it cannot be checked, and
        "differs" (other_machine) if it rebuilt with other bits; otherwise a difference raises."""
        path, digest = bench.out / cells[name]["set"], cells[name].get("set_sha256")
        if path.exists():
            stored = DistilledSet.load(path)
            same = torch.equal(stored.images, ds.images) and torch.equal(stored.labels, ds.labels)
        elif digest:
            same = set_digest(ds) == digest
        else:
            return False  # sets are not committed: a cell from a run before digests were recorded
        if not same:
            return differs(f"re-time: {name} rebuilt differently from the evaluated set, so its accuracy "
                           "would not carry over; nothing was changed. Re-run that cell instead.")
        return True

    def record(name, ds, seconds):
        verified = check_same(name, ds)
        new[name] = {"seconds": seconds, "timing": ds.meta.get("timing", {}), **checked(verified)}
        if verified is True:  # from now on the cell can be checked even after its set file is gone
            new[name]["set_sha256"] = set_digest(ds)  # (one that differs keeps the evaluated set's)

    obj, seed = bench.objective(), bench.seed

    def features():
        # the feature moments, computed cold (no cache read or written), checked against the ones
        # every cell used; a resumed run's first build may have read part of them from its cache
        _note("features")
        cold = bench.make_objective(cache=False)
        for a, b in zip(cold.moments, obj.moments):
            if not (torch.allclose(a.gram, b.gram, rtol=1e-6, atol=1e-9)
                    and torch.allclose(a.sums, b.sums, rtol=1e-6, atol=1e-9)):
                raise UsageError("re-time: the feature moments computed again differ from the cached ones; nothing "
                                 "was changed. Remove the cache (OUT/cache or $MGDD_CACHE) and re-run the bench.")
        new["features"] = {"seconds": cold.build_seconds, "verified": True}
        if "orders-herding" in cells:  # the herding orders, computed cold too and checked the same way
            _note("orders-herding")
            warm, made = compute_orders(obj, "herding"), compute_orders(cold, "herding")
            if any(not torch.equal(made["orders"][c], o) for c, o in warm["orders"].items()):
                raise UsageError("re-time: the herding orders computed again differ from the cached ones; nothing "
                                 "was changed. Remove the cache (OUT/cache or $MGDD_CACHE) and re-run the bench.")
            new["orders-herding"] = {"seconds": made["seconds"], "verified": True}

    def baseline(name, fn, args):
        _note(name)
        record(name, *timed(fn, *args))

    def generator(adapt_name):
        # adapt again from the same start, then one pass per IPC
        label, c = adapt_name[: -len("-adapt")], cells[adapt_name]
        _note(adapt_name)
        gen, _, log = bench.adapted_generator("scratch" if c["from"] == "scratch" else "meta", c["ipcs"], c["steps"])
        gen_path = bench.out / "sets" / f"{label}-generator"
        verified = gen_path.exists()
        if verified:
            stored = MetaGenerator.from_pretrained(gen_path).state_dict()
            if not all(torch.equal(v, stored[k]) for k, v in gen.state_dict().items()):
                verified = differs(f"re-time: {adapt_name} adapted to different weights than the stored "
                                   "generator; nothing was changed. Re-run the bench for it instead.")
        # without the stored weights, the sets it generates below are still checked
        new[adapt_name] = {"seconds": log["seconds"], **checked(verified)}
        # its own pass count, and (the shipped generator at K = 0) each count of the pass sweep
        sweep = [(f"{label}-p{p}", p) for p in bench.cfg.pass_sweep] if label == "mgdd-k0" else []
        for ipc in bench.cfg.ipcs:
            for stem, passes in [(label, None), *sweep]:
                name = f"{stem}-ipc{ipc}"
                if name in cells:
                    ds = generate(gen, obj, ipc, seed=seed, method=label, adapted_from=c["from"],
                                  adapt_steps=c["steps"], adapt_ipcs=c["ipcs"], passes=passes)
                    record(name, ds, log["seconds"] + pass_seconds(ds))

    def curve(variant, ipc_key, snaps):
        # an iterative curve: one run, every snapshot timed in that run
        _note(f"{variant}-ipc{ipc_key}")

        def on_snapshot(s, ds):
            name = f"{variant}-ipc{ipc_key}-step{s}"
            if name in cells:
                record(name, ds, ds.meta["timing"]["seconds"])

        krr_pixel(obj if variant == "krr-pixel" else bench.fresh_objective(), int(ipc_key), max(snaps), snaps,
                  lr=bench.cfg.lr_pixel, seed=seed, on_snapshot=on_snapshot, progress=bench.progress)

    def scaling(name, ipc):
        # a timing-only cell: measured again, checked by the digests of the sets it built
        _note(name)
        m = bench.measure_scaling(ipc)
        same = (m["set_sha256"], m["krr_sha256"]) == (cells[name]["set_sha256"], cells[name]["krr_sha256"])
        verified = same or differs(f"re-time: {name} rebuilt different sets than it timed; nothing was changed. "
                                   "Re-run that cell instead.")
        new[name] = {**{k: m[k] for k in ("generate_seconds", "label_seconds", "pixel_step_seconds")},
                     **checked(verified)}

    stage("features", features)
    for ipc in bench.cfg.ipcs:
        for name, fn, args in bench.baselines(ipc):
            stage(f"baseline:{name}", lambda name=name, fn=fn, args=args: baseline(name, fn, args))
    for adapt_name in [n for n in cells if n.endswith("-adapt")]:
        stage(f"generator:{adapt_name}", lambda adapt_name=adapt_name: generator(adapt_name))
    for variant in VARIANTS:
        for ipc_key, snaps in bench.cfg.snapshots(variant).items():
            stage(f"curve:{variant}-ipc{ipc_key}", lambda v=variant, k=ipc_key, s=snaps: curve(v, k, s))
    for ipc in bench.cfg.scaling_ipcs:
        name = f"scaling-ipc{ipc}"
        if name in cells:
            stage(f"scaling:{name}", lambda name=name, ipc=ipc: scaling(name, ipc))
    # every stage matched: replace the seconds, keeping what was measured before
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for name, upd in new.items():
        c, upd = cells[name], dict(upd)
        verified, other_bits = upd.pop("verified"), upd.pop("differs", False)
        # a timing-only cell keeps its seconds at the top level rather than under "timing"
        previous = c.get("timing") if "timing" in c or "seconds" in c else {k: c.get(k) for k in upd}
        c["retimed"] = {"at": stamp, "verified": verified, "previous_seconds": c.get("seconds"),
                        "previous_timing": previous, **({"differs": True} if other_bits else {})}
        c.update(upd)
        bench.store.replace(name, c)  # on disk and in the bench's own copy, which its report reads
    (bench.out / PROGRESS).unlink(missing_ok=True)  # the cells now hold it all; a stale file would refuse the next re-time
    return bench.run()
