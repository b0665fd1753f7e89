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
import hashlib
import json
import math
import random
import signal
from pathlib import Path

import torch

from .errors import CorruptFile, MgddError, NonFiniteLoss, UsageError
from .io import load_tensors, save_tensors, state_from_tensors, tensors_to_state

STATE_FORMAT = "mgdd.training-state/1"


class Interrupted(MgddError):
    """A loop stopped by a signal after saving its checkpoint; exits 128 + the signal number
    (130 for SIGINT, 143 for SIGTERM), the shell convention."""

    exit_code = 128 + signal.SIGINT

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def save_state(path, tensors: dict, optimizer, info: dict) -> None:
    flat = {f"param.{k}": v.detach().cpu() for k, v in tensors.items()}
    spec = tensors_to_state("optim", optimizer.state_dict(), flat) if optimizer is not None else None
    meta = {"format": STATE_FORMAT, "optimizer": spec, **info}
    save_tensors(path, flat, {**meta, "sha256": state_digest(flat, meta)}, force=True)


def state_digest(tensors: dict, meta: dict) -> str:
    """SHA-256 over a checkpoint's tensors and its JSON (step, history, settings, optimizer layout):
    a bit flip or a hand edit anywhere is found before a resume uses the file."""
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    for k in sorted(tensors):
        t = tensors[k]
        h.update(f"{k}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_state(path, optimizer=None, settings: dict | None = None, steps: int | None = None) -> tuple:
    """(tensors, info); loads the optimizer state in place when given.

    With ``settings``, a resume is refused (before anything is loaded) when the checkpoint
    was written with other settings, naming each one that differs: a resumed run must be
    the run that was interrupted. ``steps`` may grow (the run continues further, as an
    uninterrupted run of that length would) but not fall below the checkpoint's step.
    """
    raw, info = load_tensors(path)
    if info.get("format") != STATE_FORMAT:
        raise CorruptFile(f"{path} is not an mgdd training checkpoint.")
    # checkpoints from before the digest carry none and are read as they were
    if "sha256" in info and info["sha256"] != state_digest(raw, info):
        raise CorruptFile(f"{path} is damaged (its contents do not match the digest written with it); delete it "
                          "and start over without --resume.")
    if settings is not None:
        check_same_settings(path, info, settings)
    if steps is not None and info.get("step", 0) > steps:
        raise UsageError(f"{path} is at step {info['step']}, past --steps {steps}; give --steps >= {info['step']} "
                         "to continue that run, or start over without --resume.")
    tensors = {k[len("param."):]: v for k, v in raw.items() if k.startswith("param.")}
    if optimizer is not None and info.get("optimizer") is not None:
        state = state_from_tensors(info["optimizer"], raw)
        state["state"] = {int(k): v for k, v in state["state"].items()}
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptFile(f"{path}: optimizer state does not fit ({e}); start without --resume.") from None
    return tensors, info


def check_same_settings(path, info: dict, settings: dict) -> None:
    """Refuse a resume whose settings differ from the checkpoint's, naming every difference.

    Checkpoints from before settings were recorded carry some of them at the top level
    (ipc/ipcs, lr, seed); those are compared, the rest cannot be.
    """
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as stored
    saved = info.get("settings")
    if not isinstance(saved, dict):
        saved = {k: info[k] for k in settings if k in info}
    differ = [d for k, v in settings.items() if k in saved and saved[k] != v for d in _differences(k, saved[k], v)]
    if isinstance(info.get("settings"), dict):
        # settings recorded only when not the default (passes, start, init, guide_nets, sources):
        # absent on one side means the default there, so a change either way is a difference
        differ += [f"{k} {_show(saved[k])} (now the default)" for k in saved if k not in settings]
        differ += [f"{k} the default (now {_show(v)})" for k, v in settings.items() if k not in saved]
    if differ:
        raise UsageError(f"{path} belongs to a run with other settings: {'; '.join(differ)}. Resume with the same "
                         "settings, or start over without --resume (another --out, or delete the checkpoint).")


def _show(v, full: bool = False) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if full or len(text) <= 80 else text[:77] + "..."


def _differences(key: str, old, new) -> list:
    """'key old (now new)' for each differing leaf: dicts (the dataset's identity, the objective)
    are compared key by key, so a long record names what changed; two values whose shortened
    forms read the same are shown whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) if old.get(k, _ABSENT) != new.get(k, _ABSENT)
                for d in _differences(f"{key}.{k}", old.get(k, _ABSENT), new.get(k, _ABSENT))]
    show = lambda v, full: "absent" if v is _ABSENT else _show(v, full)  # noqa: E731
    full = show(old, False) == show(new, False)
    return [f"{key} {show(old, full)} (now {show(new, full)})"]


_ABSENT = object()


def load_weights(model: torch.nn.Module, tensors: dict, path) -> None:
    try:
        model.load_state_dict(tensors)
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:200]
        raise CorruptFile(f"{path}: the checkpoint's weights do not fit this model ({first}); start over "
                          "without --resume.") from None


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
    signum = signal.SIGINT

    def interrupted(self, message: str) -> Interrupted:
        return Interrupted(message, self.signum)


@contextlib.contextmanager
def graceful_stop():
    flag = StopFlag()

    def handler(signum, frame):
        flag.requested, flag.signum = True, signum

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
