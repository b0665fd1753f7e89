"""SIGTERM outside a training loop: stop as Ctrl-C does, and never lose the signal.

The CLI installs ``on_sigterm`` for the length of a command (a training loop installs its own
handler, checkpoint.graceful_stop, and saves first). The handler records the request, puts back
the default action, and raises ``Terminated`` wherever the main thread is. C code that calls back
into Python and clears errors can swallow that exception, as it can a KeyboardInterrupt (an
evaluation once trained on for minutes after its SIGTERM); the record brings it back: every long
loop's progress update calls ``check()``, which raises it again. A second SIGTERM ends the process
at once, whatever it is doing.
"""

from __future__ import annotations

import signal


class Terminated(BaseException):
    """SIGTERM outside a training loop: the CLI exits 143 through the same exits as Ctrl-C, so the
    run's claims are released."""


_requested = False


def on_sigterm(signum, frame):
    global _requested
    _requested = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM is not caught
    raise Terminated()


def check() -> None:
    """Raise ``Terminated`` if a SIGTERM came and its first raise did not reach the CLI."""
    if _requested:
        raise Terminated()


def reset() -> None:
    """Forget a request (the CLI calls it as each command starts and ends)."""
    global _requested
    _requested = False
