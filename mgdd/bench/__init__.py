"""`mgdd bench`: the claim as a file - accuracy vs wall-clock for mgdd and every baseline.

    presets.py  what a run measures (dataclasses) and the cells of each IPC block
    cells.py    the cell cache under OUT/cells/ (one JSON per finished cell, set digests)
    runner.py   builds and evaluates every cell, IPC block by block, resumable
    retime.py   re-measures a finished run's timings, checking every set rebuilds bit for bit
    report.py   pure functions: cells -> results.json, results.md, plots/ (no dataset needed)
"""

from ..distilled import set_digest
from .cells import CellStore, pass_seconds, read_cells, timed
from .presets import PRESETS, TARGET_SPEEDUP, Preset, block_cells, get_preset
from .report import markdown, rebuild, summarise
from .retime import check_finished, retime
from .runner import Bench

__all__ = ["Bench", "CellStore", "PRESETS", "Preset", "TARGET_SPEEDUP", "block_cells", "check_finished",
           "get_preset", "markdown", "pass_seconds", "read_cells", "rebuild", "retime", "set_digest", "summarise",
           "timed"]
