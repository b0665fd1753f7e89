"""The bench's cell cache: one JSON file per finished cell under OUT/cells/, reused on resume.

A cell is one measured thing (a distilled set and its evaluation, an adaptation, the feature
moments). Sets live under OUT/sets/ (not committed); each evaluated set's SHA-256 digest is
kept in its cell, so `--retime` can check a rebuilt set even after the file is gone.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch

from ..distilled import DistilledSet
from ..features import distributed_world
from ..io import read_json, write_json


def cpu_model() -> str | None:
    """The CPU's model name (Linux), which platform.processor() leaves at "x86_64": sets rebuild
    bit for bit only on the arithmetic that made them (bench --retime --other-machine)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def host() -> dict:
    """What each new cell records of the machine that made it (run.json keeps only the latest)."""
    return {"platform": platform.platform(), "cpu_model": cpu_model(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}


def from_lead(value):
    """``value()`` on rank 0, sent to every rank (torchrun); in one process, ``value()``. What is on
    rank 0's disk decides what every rank does next, so the ranks meet the same collectives."""
    world, rank = distributed_world()
    if world == 1:
        return value()
    box = [value() if rank == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def read_cells(out) -> dict:
    """Every finished cell under OUT/cells/, by name."""
    return {p.stem: read_json(p) for p in sorted((Path(out) / "cells").glob("*.json"))}


class CellStore:
    """Cells of one results folder: ``get(name, make)`` returns the cell on disk, or runs
    ``make()``, times it end to end, writes it and returns it.

    A cell whose ``make()`` returns ``{"pending": ...}`` (its evaluation deferred, runner.py under
    torchrun) is held in ``pending``, not written, until ``complete(name, evaluation)``."""

    def __init__(self, out, on_new=None):
        self.dir = Path(out) / "cells"
        self.cells = {}          # every finished cell seen so far in this process
        self.pending = {}        # cells built, their evaluation not yet run (name -> partial cell)
        self.on_new = on_new     # called after each newly written cell (to keep the report current)

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def exists(self, name: str) -> bool:
        return name in self.pending or from_lead(lambda: self.path(name).exists())

    def lookup(self, name: str) -> dict:
        """A cell seen in this process, finished or pending."""
        return self.cells[name] if name in self.cells else self.pending[name]

    def get(self, name: str, make):
        """Under torchrun rank 0's folder is the record: a cell it holds is sent to every rank, and
        a cell it lacks is made on every rank (its evaluation deferred and spread, runner.py)."""
        if name in self.pending:
            return self.pending[name]
        path = self.path(name)
        found = from_lead(lambda: read_json(path) if path.exists() else None)
        if found is not None:
            self.cells[name] = found
            return found
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        result = make()
        # wall time of the whole cell (build + evaluation runs): what the bench itself costs, and
        # the host that made it (a resumed run spans sessions and machines; run.json keeps the last)
        result = {**result, "cell_wall_seconds": time.perf_counter() - t0, "host": host()}
        if "pending" in result:
            self.pending[name] = result
            return result
        self._write(name, result)
        return result

    def complete(self, name: str, evaluation: dict) -> dict:
        """A pending cell with its evaluation: ``evaluation`` replaces the pending marker, and the
        evaluation's ``seconds`` (its runs' training time, wherever they ran) join the cell's wall
        time, which until now held its build."""
        partial = {k: v for k, v in self.pending.pop(name).items() if k != "pending"}
        seconds = evaluation.pop("seconds")
        cell = {**partial, **evaluation, "cell_wall_seconds": partial["cell_wall_seconds"] + seconds}
        self._write(name, cell)
        return cell

    def _write(self, name: str, cell: dict) -> None:
        write_json(self.path(name), cell, force=True)
        self.cells[name] = cell
        if self.on_new is not None:
            self.on_new()

    def replace(self, name: str, cell: dict) -> None:
        write_json(self.path(name), cell, force=True)
        self.cells[name] = cell


def timed(fn, *args):
    """(fn(*args), its wall-clock seconds)."""
    t0 = time.perf_counter()
    ds = fn(*args)
    return ds, time.perf_counter() - t0


def pass_seconds(ds: DistilledSet) -> float:
    """A generated set's own time: the generator pass and its label solve (adaptation is added by the caller)."""
    t = ds.meta["timing"]
    return t["generate_seconds"] + t["label_seconds"]
