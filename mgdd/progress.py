"""Progress for long stages: a bar on a terminal, plain lines in a log.

On a TTY this is a tqdm bar. Without one (``make demo > log``, CI, nohup) a bar would print
nothing useful, so it writes one line each time another 10% is done or ``every`` seconds
have passed, whichever comes first: a log shows that a long job is alive, how far it is and,
from the rate since this process started (a resumed job's earlier steps are not counted), about
how long it has left.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


def duration(seconds: float) -> str:
    """Seconds as a person reads them in a log: "40 s", "30 min", "5.0 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def remaining(elapsed: float, done: int, left: int) -> str:
    """", about T left" at the rate so far (``done`` steps in ``elapsed`` s), or "" when nothing is
    left or no step has finished yet (no rate to go by)."""
    if left <= 0 or done <= 0:
        return ""
    return f", about {duration(elapsed / done * left)} left"


class Progress:
    def __init__(self, total: int, desc: str, enabled: bool = True, initial: int = 0, every: float = 30.0,
                 leave: bool = True, stream=None):
        self.total, self.desc, self.n, self.every = total, desc, initial, every
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.bar = None
        if enabled and self.stream.isatty():
            self.bar = tqdm(total=total, initial=initial, desc=desc, leave=leave, file=self.stream)
        self._last_time, self._last_tenth = time.monotonic(), self._tenth(initial)
        self._t0, self._n0 = time.monotonic(), initial

    def _tenth(self, n: int) -> int:
        return (10 * n) // self.total if self.total else 10

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(**postfix)
            return
        now, tenth = time.monotonic(), self._tenth(self.n)
        if tenth > self._last_tenth or now - self._last_time >= self.every or self.n == self.total:
            self._last_time, self._last_tenth = now, tenth
            extra = "".join(f" {k} {v}" for k, v in postfix.items())
            elapsed = now - self._t0
            left = remaining(elapsed, self.n - self._n0, self.total - self.n)
            print(f"[{self.desc}] {self.n}/{self.total}{extra} ({elapsed:.0f} s{left})", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
