"""`mgdd distill` (the main job: every IPC, any method), `mgdd adapt` and `mgdd generate`."""

from __future__ import annotations

from pathlib import Path

from ..errors import MgddError
from . import common

METHOD_HELP = ("generator (default): adapt the shipped meta generator, then one pass per IPC; krr-pixel: optimise "
               "each set's pixels (--steps, 300), better at IPC 10 and 50 on Fashion-MNIST; krr-fresh: the same "
               "with a new network and real batches every step as KIP / RFAD (--steps, 2000), the best IPC 1 sets, "
               "the slowest, and worse than its start at IPC 50; herding: a one-shot "
               "coreset with least-squares labels, in seconds, level with the generator from IPC 20; greedy: "
               "real images picked on the KRR loss, least-squares labels, minutes at IPC 50 on a CPU "
               "(README.md, 'Choosing a method')")


def cmd_distill(args):
    from ..pipeline import distill
    common.check_start(args)
    out = common.folder_out(args)
    result = distill(lambda: common.load(args), ipcs=args.ipc, steps=args.steps, adapt_ipcs=args.adapt_ipcs,
                     source=args.source, out_dir=out, seed=args.seed, lr=args.lr,
                     objective=lambda dataset: common.objective(args, dataset),
                     resume=args.resume, force=args.force, progress=common.progress(args),
                     evaluate_sets=args.evaluate, passes=args.passes, start=args.start, method=args.method,
                     keep_checkpoints=args.keep_checkpoints, inputs=common.input_paths(args),
                     epochs=args.epochs, runs=args.runs)
    summary = result["summary"]
    generator = args.method == "generator"
    rows = [[ipc, e["images"], *([e["start"]] if generator else []), f"{e['seconds']:.2f}",
             common.accuracy_text(e["evaluation"]) if "evaluation" in e else "-", e["file"]]
            for ipc, e in summary["sets"].items()]
    if generator:
        print(f"adapted from {summary['source']} for {summary['adapt_steps']} steps in {summary['adapt_seconds']:.1f}s "
              f"(feature moments {summary['feature_seconds']:.1f}s)")
    else:
        print(f"{args.method} (feature moments {summary['feature_seconds']:.1f}s)")
    common.table(rows, ["ipc", "images", *(["start"] if generator else []), "seconds", "accuracy %", "file"])
    print(f"wrote {out}/ (summary.json, ipc*.safetensors, ipc*.png{', generator/' if args.method == 'generator' else ''})")


def cmd_adapt(args):
    from ..pipeline import adapted_generator, adapted_metadata
    common.check_start(args)
    out = common.folder_out(args)
    replace = args.force or args.resume
    checkpoint = out / "adapt-checkpoint.safetensors"
    common.check_outputs(args, [out / "model.safetensors", out / "config.json", checkpoint], replace)
    dataset = common.load(args)
    objective = common.objective(args, dataset)
    generator, origin, log = adapted_generator(args.source, objective, args.steps, args.ipcs, lr=args.lr,
                                               seed=args.seed, checkpoint=checkpoint,
                                               checkpoint_every=args.checkpoint_every, resume=args.resume,
                                               progress=common.progress(args), passes=args.passes, start=args.start)
    generator.save_pretrained(out, metadata=adapted_metadata(log, origin, dataset.name, objective), force=replace)
    final = log["history"][-1]["loss"] if log["history"] else float("nan")
    common.table([[dataset.name, origin, args.steps, ",".join(map(str, log["ipcs"])), f"{final:.4f}",
                   f"{log['seconds']:.1f}", str(out)]],
                 ["dataset", "from", "steps", "ipcs", "final loss", "seconds", "generator"])


def cmd_generate(args):
    from ..data import check_ipc
    from ..distilled import save_grid
    from ..generate import generate
    from ..generator import MetaGenerator
    from ..pipeline import default_meta_generator
    common.check_guide_nets(args)
    common.check_start(args)
    base = common.set_path(args.out)
    ipcs = sorted(set(args.ipc))
    outs = {ipc: base if len(ipcs) == 1 else Path(f"{base.with_suffix('')}-ipc{ipc}.safetensors") for ipc in ipcs}
    common.check_outputs(args, [p for o in outs.values() for p in (o, o.with_suffix(".png"))], args.force)
    dataset = common.load(args)
    if args.generator == "meta":
        path = default_meta_generator(dataset.channels)
        if path is None:
            raise MgddError("no shipped meta generator in this installation; adapt one with `mgdd adapt`.")
        args.generator = str(path)
    generator = MetaGenerator.from_pretrained(args.generator)
    for ipc in ipcs:
        check_ipc(dataset, ipc)
    objective = common.objective(args, dataset)
    rows = []
    for ipc, o in outs.items():
        ds = generate(generator, objective, ipc, seed=args.seed, passes=args.passes, start=args.start,
                      guide_nets=args.guide_nets, generator_path=str(args.generator))
        ds.save(o, force=args.force)
        save_grid(ds, o.with_suffix(".png"), force=args.force)
        t = ds.meta["timing"]
        rows.append([ipc, len(ds.images), f"{t['generate_seconds']:.2f}", f"{t['label_seconds']:.2f}", str(o)])
    common.table(rows, ["ipc", "images", "generate s", "labels s", "file"])


def _add_generator_options(s):
    s.add_argument("--from", dest="source", default="meta",
                   help="meta (shipped meta generator), scratch, or a generator folder")
    s.add_argument("--passes", type=common.positive_int, default=None,
                   help="generator passes, each reading a fresh guide (default: as many as the generator "
                        "was trained for, which it records)")
    s.add_argument("--start", default=None, help=common.START_HELP)


def add_parsers(sub):
    s = sub.add_parser("distill", help="make distilled sets of every IPC: adapt the generator once and generate "
                                       "(or --method krr-pixel / krr-fresh / herding / greedy)")
    common.add_data(s)
    s.add_argument("--method", choices=["generator", "krr-pixel", "krr-fresh", "herding", "greedy"], default="generator",
                   help=METHOD_HELP)
    s.add_argument("--ipc", type=common.ints, default=[1, 10, 50], help="IPCs to make (1,10,50)")
    # 25, as pipeline.distill: at IPC 1 and 10 the bench puts 200 steps within 0.4 of 25 (or
    # below) at 12x the time (half an hour on 2 cores for the shipped 4-pass generator)
    s.add_argument("--steps", type=common.count, default=None,
                   help="generator: adaptation steps (25); krr-pixel / krr-fresh: optimisation steps per set "
                        "(300 / 2000)")
    s.add_argument("--lr", type=common.positive_float, default=None,
                   help="Adam learning rate (generator 1e-3, krr-pixel 0.03, krr-fresh 0.03 below IPC 10 and 0.01 from it)")
    _add_generator_options(s)
    s.add_argument("--adapt-ipcs", type=common.ints, default=None, help="generator: IPCs to adapt on (default: --ipc)")
    s.add_argument("--evaluate", action="store_true", help="evaluate every set (ConvNet-3)")
    s.add_argument("--runs", type=common.positive_int, default=1)
    s.add_argument("--epochs", type=common.positive_int, default=300)
    s.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    s.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the checkpoints of a finished run (removed by default: a run leaves only its outputs)")
    common.add_out(s, "output folder")
    common.add_objective(s)
    common.add_common(s)
    s.set_defaults(func=cmd_distill)

    s = sub.add_parser("adapt", help="adapt a (meta) generator to a dataset")
    common.add_data(s)
    s.add_argument("--steps", type=int, default=25, help="adaptation steps (25)")
    s.add_argument("--lr", type=common.positive_float, default=1e-3, help="Adam learning rate (1e-3)")
    _add_generator_options(s)
    s.add_argument("--ipcs", type=common.ints, default=[1, 10, 50], help="IPCs to adapt on (1,10,50)")
    s.add_argument("--checkpoint-every", type=common.positive_int, default=25, help="steps between checkpoints")
    s.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    common.add_out(s, "output generator folder")
    common.add_objective(s)
    common.add_common(s)
    s.set_defaults(func=cmd_adapt)

    s = sub.add_parser("generate", help="generate a distilled set of any IPC with an adapted generator")
    s.add_argument("generator", help="generator folder (from `mgdd adapt`), or `meta` for the shipped meta generator")
    common.add_data(s)
    s.add_argument("--ipc", type=common.ints, required=True, help="IPC(s) to generate, e.g. 50 or 1,7,50")
    s.add_argument("--passes", type=common.positive_int, default=None,
                   help="generator passes, each reading a fresh guide (default: as many as the generator was "
                        "trained for, which it records)")
    s.add_argument("--start", default=None, help=common.START_HELP)
    s.add_argument("--guide-nets", type=common.positive_int, default=None,
                   help="pool networks each guide averages over, up to --pool-size (default: as the generator "
                        "was trained, which it records; more costs more and fits the pool less, docs/experiments.md, "
                        "issue #16)")
    common.add_objective(s)
    common.add_out(s, "output distilled set (.safetensors)")
    common.add_common(s)
    s.set_defaults(func=cmd_generate)
