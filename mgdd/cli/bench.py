"""`mgdd bench`: every method against every baseline, accuracy against time (mgdd/bench/)."""

from __future__ import annotations

from ..errors import UsageError
from . import common


def cmd_bench(args):
    """Under torchrun (WORLD_SIZE > 1) rank 0 runs the bench in --out and every other rank follows
    it in a scratch folder: each cell is made on every rank, and at the end of each IPC block the
    block's evaluations are spread over the ranks, each run of each cell one job (Bench.flush), so
    more ranks than runs still shorten the bench (one node: the ranks share --out's feature cache)."""
    import shutil
    import tempfile

    import torch.distributed as dist

    from ..meta import close_distributed, init_distributed
    started = init_distributed()
    rank = dist.get_rank() if dist.is_initialized() else 0
    scratch = None
    try:
        if dist.is_initialized() and (args.report or args.retime):
            raise UsageError("--report and --retime run in one process; start them without torchrun.")
        if rank > 0:
            scratch = tempfile.mkdtemp(prefix=f"mgdd-bench-rank{rank}-")
        _bench(args, scratch)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    close_distributed(started)


def _bench(args, scratch):
    from ..bench import Bench, check_finished, rebuild
    out = common.folder_out(args)
    if args.report:
        if (args.force or args.resume or args.retime or args.new_generator or args.other_machine
                or args.dataset is not None or args.image_size is not None):
            raise UsageError("--report rebuilds the report of the run in --out and takes no other mode.")
        if not (out / "cells").is_dir():
            raise UsageError(f"{out} holds no bench cells to report on.")
        rebuild(out)
    else:
        if args.retime and args.force:
            raise UsageError("--retime re-measures a finished run and cannot be combined with --force.")
        if args.retime:
            check_finished(out)  # before any folder is made
        if args.other_machine and not args.retime:
            raise UsageError("--other-machine goes with --retime only.")
        if args.new_generator and (args.retime or args.force):
            raise UsageError("--new-generator goes with --resume only (not --retime or --force).")
        if scratch is not None:  # a following rank: its own folder, rank 0's feature cache
            b = Bench(args.preset, scratch, data_dir=args.data_dir, force=True, seed=args.seed, progress=False,
                      device=common.device(args), cache_dir=out / "cache", dataset=args.dataset,
                      image_size=args.image_size)
            b.run()
            return
        b = Bench(args.preset, out, data_dir=args.data_dir, resume=args.resume or args.retime, force=args.force,
                  seed=args.seed, progress=common.progress(args), new_generator=args.new_generator, device=common.device(args),
                  dataset=args.dataset, image_size=args.image_size)
        b.retime(cont=args.resume, other_machine=args.other_machine) if args.retime else b.run()
    print((out / "results.md").read_text())
    print(f"wrote {out}/results.json, results.md, plots/")


def add_parsers(sub):
    s = sub.add_parser("bench", help="benchmark mgdd against every baseline: accuracy vs time")
    s.add_argument("--preset", default="quick", help="quick | fmnist | digits28")
    common.add_out(s, "results folder")
    s.add_argument("--dataset", default=None,
                   help="run the preset's protocol on this dataset instead of its own (the names of "
                        "`mgdd distill --dataset`); a resume or re-time passes it again")
    s.add_argument("--image-size", type=common.positive_int, default=None,
                   help="with --dataset: resize its images to N x N (default: their own size)")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--resume", action="store_true",
                   help="reuse finished cells in --out, and continue a cell cut off mid-evaluation from its runs' "
                        "checkpoints (OUT/checkpoints/)")
    s.add_argument("--new-generator", action="store_true",
                   help="with --resume, when the shipped meta generator changed: set its cells (mgdd-*, "
                        "unseen-*) aside under OUT/superseded/ and redo them; the other cells stand")
    s.add_argument("--retime", action="store_true",
                   help="re-measure every timed stage of the finished run in --out on this machine, keeping its "
                        "evaluations (each set is checked to rebuild bit-identically); each finished stage is kept "
                        "in OUT/retime-progress.json, and --retime --resume continues a cut-off re-time")
    s.add_argument("--other-machine", action="store_true",
                   help="with --retime, for a run made on other machines: a stage that rebuilds with other low "
                        "bits (another CPU's arithmetic) is timed and marked in its cell instead of refused")
    s.add_argument("--report", action="store_true",
                   help="rebuild results.json, results.md and plots/ from the cells in --out alone (no dataset)")
    s.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...; every stage "
                   "runs there, and a resumed or re-timed run must use the kind it was measured on")
    common.add_common(s)
    s.set_defaults(func=cmd_bench)
