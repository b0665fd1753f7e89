"""Errors a user can act on.

Every error raised for bad input or a failed run is an ``MgddError``: the CLI prints its
message on one line and exits with its code (2 for usage errors, 1 for runtime failures),
with no traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import difflib


class MgddError(Exception):
    """A failure the user can fix: the message says what is wrong and what to do."""

    exit_code = 1


class UsageError(MgddError):
    """Bad arguments: unknown names, out-of-range values, mismatched inputs."""

    exit_code = 2


class DatasetNotFound(MgddError):
    """A dataset's files are not where we looked."""


class CorruptFile(MgddError):
    """A file exists but is truncated, forged or of the wrong kind or version."""


class NonFiniteLoss(MgddError):
    """Training produced NaN/inf; the last good checkpoint is kept."""


def unknown_name(kind: str, name: str, known) -> UsageError:
    """An error for an unknown registry name, suggesting the close ones."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UsageError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(known)}.")


def check_range(name: str, value, low=None, high=None, *, low_open=False) -> None:
    """Raise a UsageError unless low <= value <= high (or low < value with low_open)."""
    if value != value:  # NaN
        raise UsageError(f"{name} must be a number, got NaN.")
    if low is not None and (value <= low if low_open else value < low):
        op = ">" if low_open else ">="
        raise UsageError(f"{name} must be {op} {low}, got {value}.")
    if high is not None and value > high:
        raise UsageError(f"{name} must be <= {high}, got {value}.")
