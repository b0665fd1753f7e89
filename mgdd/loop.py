"""The one resumable training loop behind adapt, krr-pixel and meta-train.

Each algorithm supplies ``step_fn(step) -> record`` (one optimisation step; the record's
scalars go into the history) and says what its state is; this loop does the rest, the same
way for all three:

- resume: load the checkpoint, refusing one written with other settings (checkpoint.py);
- time: per-step wall-clock, summed over sessions, so a resumed run reports its total;
- save: every ``checkpoint_every`` steps, at each step in ``save_at`` and at the end;
- stop: SIGINT/SIGTERM finish the current step, save, and raise ``Interrupted``;
- memory: freed CPU memory stays in malloc's heap during the loop (allocator.py);
- progress: a bar on a terminal, lines in a log (progress.py).

Per-step randomness comes from ``step_rng(seed, step)``, so a run split across sessions
repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .allocator import keep_freed_memory
from .checkpoint import graceful_stop, load_state, save_state
from .progress import Progress


@dataclass
class LoopState:
    step: int = 0                # steps done
    seconds: float = 0.0         # optimisation wall-clock so far, over every session
    history: list = field(default_factory=list)


def run_resumable(step_fn: Callable[[int], dict], steps: int, *, name: str, state: Callable[[], dict],
                  load: Callable[[dict], None], optimizer=None, settings: dict | None = None, checkpoint=None,
                  checkpoint_every: int = 25, resume: bool = False, progress: bool = True, save_at=(),
                  after_step: Callable[[LoopState], None] | None = None, on_save: Callable[[LoopState], None] | None = None,
                  can_save: bool = True, stop_agreed: Callable[[bool], bool] | None = None) -> LoopState:
    """Run steps [checkpoint step, steps) of ``step_fn``; returns the final ``LoopState``.

    state() -> {name: tensor} is what a checkpoint stores besides the optimizer; load(tensors)
    puts it back. ``after_step(state)`` runs after each step's save (krr-pixel's snapshots);
    ``on_save(state)`` after each checkpoint (meta-train's log). ``can_save`` is false on
    data-parallel ranks other than 0; ``stop_agreed(requested)`` makes every rank agree to stop.
    """
    loop = LoopState()
    if resume and checkpoint and Path(checkpoint).exists():
        tensors, info = load_state(checkpoint, optimizer, settings=settings, steps=steps)
        load(tensors)
        loop = LoopState(info["step"], info["seconds"], info["history"])

    def save():
        if checkpoint and can_save:
            save_state(checkpoint, state(), optimizer, {"step": loop.step, "seconds": loop.seconds,
                                                        "history": loop.history, "settings": settings})
            if on_save is not None:
                on_save(loop)

    save_at = set(save_at)
    bar = Progress(steps, name, enabled=progress, initial=loop.step)
    try:
        with graceful_stop() as stop, keep_freed_memory():
            for step in range(loop.step, steps):
                t0 = time.perf_counter()
                record = step_fn(step)
                loop.seconds += time.perf_counter() - t0
                loop.step = step + 1
                loop.history.append({"step": loop.step, **record, "seconds": round(loop.seconds, 3)})
                bar.update(1, **{k: f"{v:.4f}" if isinstance(v, float) else v for k, v in record.items()})
                if loop.step % checkpoint_every == 0 or loop.step == steps or loop.step in save_at:
                    save()
                if after_step is not None:
                    after_step(loop)
                requested = stop.requested if stop_agreed is None else stop_agreed(stop.requested)
                if requested:
                    save()
                    raise stop.interrupted(f"{name} interrupted at step {loop.step}/{steps}; checkpoint saved to "
                                           f"{checkpoint}. Rerun with --resume to continue.")
    finally:
        bar.close()
    return loop
