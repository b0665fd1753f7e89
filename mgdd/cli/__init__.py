"""The `mgdd` command: thin glue over the Python API, one module per command group.

    data.py       datasets, fetch
    generator.py  distill (the main job, any method), adapt, generate
    baseline.py   baseline NAME
    evaluate.py   evaluate, export
    meta.py       meta-train
    bench.py      bench
    common.py     argument types and option groups, the device, the up-front output check

Every subcommand prints a short table and can write JSON. Errors the user can fix print
one line ("mgdd: error: ...") and exit 2 (usage) or 1 (runtime); --debug shows tracebacks.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .. import stop
from ..errors import MgddError
from ..version import __version__
from . import baseline, bench, common, data, evaluate, generator, meta

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = common.Parser(prog="mgdd", description="Fast dataset distillation with a meta generator.")
    p.add_argument("--version", action="version", version=f"mgdd {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in (data, baseline, evaluate, generator, meta, bench):
        module.add_parsers(sub)
    return p


def _one_line(e: Exception) -> str:
    """An error message on one line (messages quoting other libraries may hold newlines)."""
    return " ".join(str(e).split())


def main(argv=None) -> int:
    """Run one command. Exit codes: 0 done; 1 a failure the user can fix (missing or corrupt
    file, diverged run); 2 bad arguments; 130 / 143 stopped by SIGINT / SIGTERM (a training loop
    saves its checkpoint first; every command releases its claims). Errors print one line;
    --debug shows the traceback."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        before = signal.signal(signal.SIGTERM, stop.on_sigterm)
    except ValueError:  # not the main thread: the default action stays
        before = None
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if getattr(args, "device", None) is not None:
            common.device(args)  # an unknown or absent device is refused before any work
        args.func(args)
    except MgddError as e:
        if debug:
            raise
        print(f"mgdd: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mgdd: interrupted", file=sys.stderr)
        return 130
    except stop.Terminated:
        print("mgdd: stopped (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except MemoryError:
        if debug:
            raise
        print("mgdd: error: out of memory; use a smaller --ipc or --pool-size.", file=sys.stderr)
        return 1
    except OSError as e:  # the file system said no (full disk, permissions, a vanished folder)
        if debug:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"mgdd: error: {_one_line(e) if not e.strerror else e.strerror}{where}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: one line for the user, the traceback with --debug
        if debug:
            raise
        first = _one_line(e)[:200]
        print(f"mgdd: internal error ({type(e).__name__}: {first}); rerun with --debug and report the "
              "traceback.", file=sys.stderr)
        return 1
    finally:
        lock = sys.modules.get("mgdd.lock")  # loaded only by a command that claimed its outputs
        if lock is not None:
            lock.release_all()
        if before is not None:
            signal.signal(signal.SIGTERM, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
