"""A bench's results folder as a record of one run: its folders, run.json, and the rules a
resume must keep (the same settings, device kind and shipped meta generator; --new-generator
sets the old generator's cells aside). No cells are computed here (runner.py) and nothing is
reported (report.py)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from ..errors import UsageError
from ..io import read_json, write_json
from ..pipeline import default_meta_generator
from .report import machine


def _device_kind(device: str) -> str:
    """cpu, cuda or mps: cuda:0 and cuda measure the same kind of machine."""
    return str(device).split(":")[0]


class RunFolder:
    """OUT/run.json and OUT/{cells,sets,plots}/ for the run of ``preset`` (config ``cfg``) on
    ``device``; ``dataset()`` loads the preset's dataset when a record needs it."""

    def __init__(self, out, preset: str, cfg, dataset, device: str, seed: int, resume: bool = False,
                 force: bool = False, new_generator: bool = False):
        self.out, self.preset, self.cfg, self.dataset = Path(out), preset, cfg, dataset
        self.device, self.seed = device, seed
        self.resume, self.force, self.new_generator = resume, force, new_generator

    def start(self) -> None:
        """Make the folders (a forced start drops the old cells) and record the run."""
        self.check_same_settings()
        if self.force and not self.resume and (self.out / "cells").exists():
            for p in (self.out / "cells").glob("*.json"):
                p.unlink()
        for sub in ("cells", "sets", "plots"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        write_json(self.out / "run.json", self.record(), force=True)

    def check_same_settings(self) -> None:
        """A resumed (or re-timed) run must compute its cells as the recorded one did: cells made
        under other settings (a changed default, say) would be mixed into one table. Adding
        cells (Preset.CELL_LISTS) is what a resume is for."""
        record = self.out / "run.json"
        if not (self.resume and record.is_file()):
            return
        recorded = json.loads(record.read_text())
        old = recorded.get("config", {})
        new = json.loads(json.dumps(self.cfg.as_dict()))
        changed = sorted(k for k in set(old) | set(new)
                         if k not in self.cfg.CELL_LISTS and old.get(k) != new.get(k))
        if changed:
            raise UsageError(f"{self.out} was made with other {self.preset} settings ({', '.join(changed)}); "
                             "use a new --out, or --force to start over.")
        # times measured on two devices would share one table (records from before this field ran on the CPU)
        old_device = recorded.get("device", "cpu")
        if _device_kind(old_device) != _device_kind(self.device):
            raise UsageError(f"{self.out} was measured on {old_device} and this run would use {self.device}; "
                             f"pass --device {old_device}, or use a new --out.")
        # the mgdd cells are the shipped generator's: another one (a new release) would mix two
        # generators in one table (records from before this field carry none and are not checked)
        old_gen = recorded.get("meta_generator")
        new_gen = self.meta_generator_record()
        if old_gen is not None and old_gen != new_gen:
            if not self.new_generator:
                start = f", generating from {old_gen.get('generate_start', 'its meta-training start')}"
                raise UsageError(f"{self.out} was made with another shipped meta generator ({old_gen.get('name')}, "
                                 f"sha256 {str(old_gen.get('sha256'))[:12]}{start}); use a new --out, --force to "
                                 "start over, or --new-generator to redo only the cells that use the meta generator.")
            self.supersede(recorded)

    # the cells (and their sets, generators, checkpoints) made from the shipped meta generator;
    # every other cell (baselines, krr curves, scratch) does not read it
    GENERATOR_CELLS = ("mgdd-", "unseen-")

    def supersede(self, recorded: dict) -> None:
        """Move the meta generator's cells of the old generator (``recorded``: the old run.json) to
        OUT/superseded/<digest>/, so they are kept (never overwritten) and redone with the new
        generator; the other cells stand."""
        dest = self.out / "superseded" / str(recorded["meta_generator"].get("sha256"))[:12]
        moves = [(p, dest / sub / p.name) for sub in ("cells", "sets") if (self.out / sub).is_dir()
                 for p in sorted((self.out / sub).iterdir()) if p.name.startswith(self.GENERATOR_CELLS)]
        # checked before anything moves, run.json included, so a refusal leaves nothing half-moved
        clash = [str(d) for d in [dest / "run.json", *(d for _, d in moves)] if os.path.lexists(d)]
        if clash:
            raise UsageError(f"cannot set the old generator's cells aside: {clash[0]} already exists; move "
                             f"{dest} away and run again.")
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)  # same filesystem: a rename, nothing copied or half-written
        write_json(dest / "run.json", recorded, force=False)
        print(f"[bench] the shipped meta generator changed: {len(moves)} of its files moved to {dest}; "
              "its cells are redone", file=sys.stderr, flush=True)

    def meta_generator_record(self) -> dict | None:
        """Which shipped meta generator the mgdd cells adapt: its folder name, weights digest and,
        when it records one, the start it generates from by default (its config's generate_start:
        a new default makes other sets from the same weights)."""
        path = default_meta_generator(self.dataset().channels)
        if path is None:
            return None
        digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
        start = read_json(path / "config.json").get("metadata", {}).get("generate_start")
        return {"name": path.name, "sha256": digest, **({"generate_start": start} if start else {})}

    def meta_training_record(self) -> dict | None:
        """What the shipped meta generator was meta-trained on (its source and IPC range), so the
        report can say which bench sizes it never saw. Kept apart from meta_generator, which a
        resume compares."""
        path = default_meta_generator(self.dataset().channels)
        meta = read_json(path / "config.json").get("metadata", {}) if path is not None else {}
        return {k: meta[k] for k in ("source", "ipc_range") if k in meta} or None

    def record(self) -> dict:
        return {"preset": self.preset, "config": self.cfg.as_dict(), "dataset": self.dataset().describe(),
                "meta_generator": self.meta_generator_record(), "meta_training": self.meta_training_record(),
                "machine": machine(), "device": self.device, "seed": self.seed,
                "command": "mgdd " + " ".join(sys.argv[1:]) if sys.argv else ""}

