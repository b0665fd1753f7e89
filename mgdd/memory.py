"""Memory checked before heavy work: estimate a stage's peak from the shapes, compare it with
what this machine has, and refuse with the estimate and the option that helps, instead of
being killed by the kernel's OOM killer halfway through.

    check_fits(estimate_bytes, "the feature moments", "use a smaller --image-size or --pool-size")

The limit is the memory available now (MemAvailable on Linux; psutil-free), which
``MGDD_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix) lowers or raises; where neither is
known nothing is refused.
"""

from __future__ import annotations

import os

from .errors import UsageError

_SUFFIX = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def available_bytes() -> int | None:
    """The memory this process may use now: $MGDD_MEMORY_LIMIT, else Linux's MemAvailable, else None."""
    limit = os.environ.get("MGDD_MEMORY_LIMIT", "").strip().upper().rstrip("B")
    if limit:
        unit = limit[-1] if limit[-1] in _SUFFIX else ""
        try:
            return int(float(limit[: len(limit) - len(unit)]) * _SUFFIX[unit])
        except ValueError:
            raise UsageError(f"MGDD_MEMORY_LIMIT={os.environ['MGDD_MEMORY_LIMIT']!r} is not a size; give bytes "
                             "or a number with K, M, G or T (e.g. 8G).") from None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gib(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def fits(estimate: float) -> bool:
    """Whether ``estimate`` bytes are available (True where the limit is unknown)."""
    have = available_bytes()
    return have is None or estimate <= have


def check_fits(estimate: float, what: str, hint: str) -> None:
    """Refuse (UsageError) when ``what`` is estimated to need more memory than is available."""
    have = available_bytes()
    if have is not None and estimate > have:
        raise UsageError(f"{what} would need about {gib(estimate)} of memory and {gib(have)} is available; "
                         f"{hint}. (MGDD_MEMORY_LIMIT overrides the limit.)")
