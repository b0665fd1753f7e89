"""`mgdd baseline NAME`: one baseline distilled set (baselines.py) and its grid."""

from __future__ import annotations

from ..errors import UsageError
from . import common


def cmd_baseline(args):
    from ..baselines import (BASELINES, DEFAULT_STEPS, PIXEL_METHODS, SOFT_LABEL_METHODS, baseline_outputs, default_lr,
                             run_baseline)
    from ..data import check_ipc
    from ..distilled import save_grid
    from ..errors import unknown_name
    if args.name not in BASELINES:
        raise unknown_name("baseline", args.name, BASELINES)
    krr = args.name in PIXEL_METHODS
    out = common.set_path(args.out)
    if args.init is not None and not krr:
        raise UsageError(f"--init is where krr-pixel starts; {args.name} takes no --init. Drop it.")
    if args.name == "krr-fresh" and args.objective_mode == "pool":
        raise UsageError("krr-fresh is krr-pixel with --objective-mode fresh; for the cached pool run krr-pixel.")
    for opt, given in (("--steps", args.steps), ("--snapshots", args.snapshots), ("--resume", args.resume)):
        if given and not krr:
            raise UsageError(f"{opt} is for krr-pixel and krr-fresh; {args.name} is made in one shot. Drop it.")
    if args.steps is None:
        args.steps = DEFAULT_STEPS.get(args.name, 0)
    snaps = sorted(set(args.snapshots or [])) if krr else []
    if args.soft_labels and args.name not in SOFT_LABEL_METHODS:
        raise UsageError(f"--soft-labels is for {', '.join(SOFT_LABEL_METHODS)}; {args.name} takes none. Drop it.")
    bad = [s for s in snaps if s > args.steps]
    if bad:
        raise UsageError(f"--snapshots {','.join(map(str, bad))} lie past --steps {args.steps}.")
    files = baseline_outputs(out, args.name, args.steps, snaps)
    # --resume continues an interrupted run: its own outputs (snapshots, checkpoint, the set
    # of a finished run) may be replaced; anything else needs --force
    replace = args.force or args.resume
    common.check_outputs(args, [files["set"], files["grid"], *files["snapshots"].values(),
                                *([files["checkpoint"]] if krr else [])], replace)
    dataset = common.load(args)
    check_ipc(dataset, args.ipc)
    objective = common.objective(args, dataset) if args.name != "random" else None
    krr_args = {}
    if krr:
        def on_snapshot(step, snap):
            if step in files["snapshots"]:
                p = snap.save(files["snapshots"][step], force=replace)
                print(f"  snapshot step {step}: {snap.meta['timing']['seconds']:.1f}s -> {p}")

        fresh = args.name == "krr-fresh" or args.objective_mode == "fresh"  # krr-pixel --objective-mode fresh is krr-fresh
        lr = default_lr("krr-fresh" if fresh else "krr-pixel", args.ipc) if args.lr is None else args.lr
        krr_args = dict(steps=args.steps, snapshots=snaps, lr=lr, checkpoint=files["checkpoint"],
                        resume=args.resume, on_snapshot=on_snapshot if snaps else None,
                        progress=common.progress(args), init=args.init or "random")
    ds = run_baseline(args.name, dataset, args.ipc, args.seed, objective, soft_labels=args.soft_labels, **krr_args)
    path = ds.save(files["set"], force=replace)
    grid = save_grid(ds, files["grid"], force=replace)
    common.table([[args.name, args.ipc, len(ds.images), "soft" if ds.soft else "hard", str(path), str(grid)]],
                 ["method", "ipc", "images", "labels", "file", "grid"])


def add_parsers(sub):
    s = sub.add_parser("baseline", help="build a baseline distilled set (random, random+ls, krr-pixel, krr-fresh, "
                                        "herding, kcenter, greedy, kmeans)")
    s.add_argument("name", help="random | random+ls | krr-pixel | krr-fresh | herding | kcenter | greedy | kmeans")
    common.add_data(s)
    s.add_argument("--ipc", type=common.positive_int, required=True, help="images per class")
    s.add_argument("--steps", type=common.positive_int, default=None,
                   help="krr-pixel / krr-fresh: optimisation steps (300 / 2000)")
    s.add_argument("--snapshots", type=common.ints, default=None,
                   help="krr-pixel / krr-fresh: save sets at these steps, e.g. 50,100,300")
    s.add_argument("--lr", type=common.positive_float, default=None,
                   help="krr-pixel / krr-fresh: Adam learning rate (krr-pixel 0.03, the best of results/ablation; "
                        "krr-fresh 0.03 below IPC 10, 0.01 from it, results/krr-fresh)")
    s.add_argument("--init", default=None,
                   help="krr-pixel: start from random real images (random, the default) or a coreset "
                        "(herding, kcenter, greedy)")
    s.add_argument("--soft-labels", action="store_true", help="herding/kcenter/greedy/kmeans: least-squares labels")
    s.add_argument("--resume", action="store_true",
                   help="krr-pixel / krr-fresh: continue from the checkpoint beside --out")
    common.add_objective(s)
    common.add_out(s, "output distilled set (.safetensors)")
    common.add_common(s)
    s.set_defaults(func=cmd_baseline)
