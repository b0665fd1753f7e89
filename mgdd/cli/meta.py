"""`mgdd meta-train`: meta-train a generator on a source dataset (torchrun-ready)."""

from __future__ import annotations

import sys

from ..errors import UsageError
from . import common


def cmd_meta_train(args):
    import torch
    import torch.distributed as dist

    from ..data import load_dataset
    from ..generator import GeneratorConfig, MetaGenerator
    from ..meta import close_distributed, generator_metadata, init_distributed, meta_train

    if len(args.ipc_range) != 2 or not 1 <= args.ipc_range[0] <= args.ipc_range[1]:
        raise UsageError(f"--ipc-range must be min,max with 1 <= min <= max (e.g. 1,50); got {args.ipc_range}.")
    common.check_guide_nets(args)
    common.check_start(args)
    out = common.folder_out(args)
    replace = args.force or args.resume
    started = init_distributed()
    rank0 = (not dist.is_initialized()) or dist.get_rank() == 0
    if rank0:
        common.check_outputs(args, [out / "model.safetensors", out / "config.json", out / "meta-log.json",
                              out / "meta-checkpoint.safetensors"], replace)
    dataset = load_dataset(args.source, args.data_dir, args.download, image_size=args.image_size)
    objective = common.objective(args, dataset, class_subsets=True)  # tasks are class subsets
    torch.manual_seed(args.seed)
    generator = MetaGenerator(GeneratorConfig(channels=dataset.channels))
    log = meta_train(generator, objective, args.meta_steps, args.algorithm, args.tasks_per_step, args.inner_steps,
                     args.inner_lr, args.meta_lr, tuple(args.ipc_range), args.min_classes, args.seed,
                     checkpoint=out / "meta-checkpoint.safetensors", checkpoint_every=args.checkpoint_every,
                     resume=args.resume, progress=common.progress(args),
                     log_path=out / "meta-log.json", passes=args.passes, guide_nets=args.guide_nets,
                     start=args.start)
    if rank0:
        generator.save_pretrained(out, metadata=generator_metadata(dataset, objective, log,
                                                                   "mgdd " + " ".join(sys.argv[1:])), force=replace)
        h = log["history"]
        if args.algorithm == "unrolled":
            loss = f"loss relative to X_0 {h[0]['relative_loss']:.4f} -> {h[-1]['relative_loss']:.4f}"
        else:
            loss = f"inner loss {h[0]['inner_first']:.4f} -> {h[-1]['inner_last']:.4f}"
        print(f"meta-trained {args.meta_steps} steps in {log['seconds']:.1f}s; {loss}; wrote {out}/")
    close_distributed(started)



def add_parsers(sub):
    s = sub.add_parser("meta-train", help="meta-train a generator on a source dataset (torchrun-ready)")
    s.add_argument("--source", required=True, help="source dataset name (e.g. mnist)")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--download", action="store_true")
    s.add_argument("--image-size", type=common.positive_int, default=None, help="resize the source to N x N")
    s.add_argument("--algorithm", choices=["reptile", "fomaml", "unrolled"], default="reptile",
                   help="reptile / fomaml: learn to adapt in a few steps; unrolled: learn to be applied --passes "
                        "times in turn, with no adaptation")
    s.add_argument("--passes", type=common.positive_int, default=1,
                   help="unrolled: generator passes per task, each reading a fresh guide (1)")
    s.add_argument("--guide-nets", type=common.positive_int, default=2,
                   help="unrolled: pool networks each pass's guide averages over, up to --pool-size (2); "
                        "recorded, so generation uses it by default")
    s.add_argument("--start", default="random",
                   help="where each task's X_0 comes from: random real images, a herding / kcenter coreset in "
                        "pool network 0's feature space, greedy (real images picked on the pool's KRR loss), or auto "
                        "(greedy up to 500 images in the task's set, else herding) (recorded; generation starts "
                        "there by default)")
    s.add_argument("--meta-steps", type=common.positive_int, default=200)
    s.add_argument("--tasks-per-step", type=common.positive_int, default=4, help="tasks per meta-step (over all ranks)")
    s.add_argument("--inner-steps", type=common.positive_int, default=5)
    s.add_argument("--inner-lr", type=common.positive_float, default=1e-3)
    s.add_argument("--meta-lr", type=common.positive_float, default=None,
                   help="Reptile step size (1.0) / FOMAML and unrolled Adam lr (1e-3)")
    s.add_argument("--ipc-range", type=common.ints, default=[1, 50], help="min,max IPC of a task (1,50)")
    s.add_argument("--min-classes", type=common.positive_int, default=2)
    s.add_argument("--checkpoint-every", type=common.positive_int, default=10)
    s.add_argument("--resume", action="store_true")
    common.add_objective(s)
    common.add_out(s, "output meta generator folder")
    common.add_common(s)
    s.set_defaults(func=cmd_meta_train)
