"""One run per output: a command claims what it will write before any work, so a second run
started onto the same outputs is refused at once instead of overwriting the first run's
checkpoint hours later.

A claim is a lock file named by the SHA-1 of the output's resolved path, under
``<cache>/locks/`` (never in the user's folders), holding the claiming process's PID. A
claim whose process is gone (kill -9, a crash) is stale and is taken over.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import UsageError
from .io import cache_root, pid_alive as _alive

_held: list = []


def lock_dir() -> Path:
    return cache_root() / "locks"


def claim(path) -> None:
    """Claim ``path`` for this process until ``release_all``; refuse when another live process holds it."""
    key = hashlib.sha1(os.path.realpath(path).encode()).hexdigest()
    folder = lock_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no writable cache: runs are not serialised (the outputs are still checked)
    lock = folder / f"{key}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = -1
            if pid == os.getpid():
                return
            if pid > 0 and _alive(pid):
                raise UsageError(f"another mgdd run (process {pid}) is writing {path}; wait for it to finish, or "
                                 "choose another --out.") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {os.path.realpath(path)}\n")
        _held.append(lock)
        return
    raise UsageError(f"could not claim {path} for this run (a lock under {folder} keeps changing); try again.")


def release_all() -> None:
    """Release every claim this process holds (at the end of a command, however it ends)."""
    while _held:
        _held.pop().unlink(missing_ok=True)
