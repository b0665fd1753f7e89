"""Resumable training state for every long loop (adapt, krr-pixel, meta-train).

A checkpoint is one safetensors file: the trained tensors, the optimizer state
(flattened, see io.tensors_to_state) and a JSON blob (step, elapsed seconds, history,
settings). Written atomically, so a kill at any moment leaves either the previous or the
new checkpoint, never half of one. Per-step randomness is derived from (seed, step), so
a resumed run repeats the uninterrupted run exactly.

``graceful_stop()`` turns SIGINT/SIGTERM into a flag that loops check between steps:
they write a checkpoint and raise ``Interrupted``.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
from pathlib import Path

import torch

from .errors import CorruptFile, MgddError, NonFiniteLoss
from .io import load_tensors, save_tensors, state_from_tensors, tensors_to_state

STATE_FORMAT = "mgdd.training-state/1"


class Interrupted(MgddError):
    exit_code = 130


def save_state(path, tensors: dict, optimizer, info: dict) -> None:
    flat = {f"param.{k}": v.detach().cpu() for k, v in tensors.items()}
    spec = tensors_to_state("optim", optimizer.state_dict(), flat) if optimizer is not None else None
    save_tensors(path, flat, {"format": STATE_FORMAT, "optimizer": spec, **info}, force=True)


def load_state(path, optimizer=None) -> tuple:
    """(tensors, info); loads the optimizer state in place when given."""
    raw, info = load_tensors(path)
    if info.get("format") != STATE_FORMAT:
        raise CorruptFile(f"{path} is not an mgdd training checkpoint.")
    tensors = {k[len("param."):]: v for k, v in raw.items() if k.startswith("param.")}
    if optimizer is not None and info.get("optimizer") is not None:
        state = state_from_tensors(info["optimizer"], raw)
        state["state"] = {int(k): v for k, v in state["state"].items()}
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptFile(f"{path}: optimizer state does not fit ({e}); start without --resume.") from None
    return tensors, info


def step_rng(seed: int, step: int) -> random.Random:
    """Randomness for one step, independent of how the run was split into sessions."""
    return random.Random(seed * 1_000_003 + step)


def check_finite(loss: torch.Tensor, step: int, checkpoint) -> None:
    if not math.isfinite(loss.item()):
        where = f"; the last good checkpoint is {checkpoint}" if checkpoint and Path(checkpoint).exists() else ""
        raise NonFiniteLoss(f"loss became {loss.item()} at step {step}{where}. Lower the learning rate "
                            "or raise lam/mu.")


class StopFlag:
    requested = False


@contextlib.contextmanager
def graceful_stop():
    flag = StopFlag()

    def handler(signum, frame):
        flag.requested = True

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread: no signal handling
            pass
    try:
        yield flag
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
