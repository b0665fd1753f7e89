"""`mgdd evaluate` (train fresh networks on a set, test them) and `mgdd export` (other formats)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from .. import stop
from ..errors import UsageError
from . import common


def cmd_evaluate(args):
    """Under torchrun (WORLD_SIZE > 1) the runs are split across the ranks (evaluate.py) and rank 0
    prints and writes the result."""
    import torch.distributed as dist

    from ..meta import close_distributed, init_distributed
    started = init_distributed()
    result = _evaluate(args, lead=not dist.is_initialized() or dist.get_rank() == 0)
    close_distributed(started)
    return result


def _evaluate(args, lead: bool):
    from ..data import MIN_IMAGE_SIZE, load_dataset
    from ..distilled import DistilledSet
    from ..errors import unknown_name
    from ..evaluate import resolve_soft_loss
    from ..features import distributed_world
    from ..io import write_json
    from ..models import MODELS
    if args.model not in MODELS:
        raise unknown_name("model", args.model, MODELS)
    if args.real_accuracy is not None and not 0 <= args.real_accuracy <= 100:
        raise UsageError(f"--real-accuracy is a test accuracy in %, 0 to 100; got {args.real_accuracy}.")
    if args.random is None and (args.real_accuracy is not None or args.robust_aug):
        raise UsageError("--real-accuracy and --robust-aug are for the robust scores; add --random SET (a random "
                         "subset at the same IPC, e.g. from `mgdd baseline random+ls`).")
    if args.out is not None:
        if args.out == "":
            raise UsageError("--out is empty; give a file name for the JSON result.")
        common.check_outputs(args, [args.out], args.force)
    names = protocol_names(args)
    checkpoints = check_checkpoints(args)
    if names != ["mgdd"] and distributed_world()[0] > 1:
        raise UsageError("under torchrun only the mgdd protocol splits its runs across ranks; score --protocol "
                         f"{args.protocol} in one process.")
    ds = DistilledSet.load(args.file)
    resolve_soft_loss(ds, args.soft_loss, args.temperature)  # refuse a bad combination before loading data
    # the set's own image size (a resized dataset is loaded at it); its ZCA transform travels inside it
    h, w = ds.images.shape[-2:]
    size = args.image_size or (h if h == w and h >= MIN_IMAGE_SIZE else None)
    dataset = load_dataset(args.dataset or ds.meta["dataset"], args.data_dir, args.download, image_size=size)
    if args.out is not None and not args.dataset:  # the dataset named inside the set is an input too
        common.check_outputs(argparse.Namespace(**{**vars(args), "dataset": ds.meta["dataset"]}), [args.out],
                             args.force)
    protocol = dict(model=args.model, epochs=args.epochs, runs=args.runs, seed=args.seed, lr=args.lr, dsa=args.dsa,
                    batch_size=args.batch_size, progress=common.progress(args), soft_loss=args.soft_loss, temperature=args.temperature)
    try:
        if args.random is not None:
            res = robust_scores(args, ds, dataset, protocol, lead, checkpoints)
        elif names != ["mgdd"]:
            res = named_protocols(args, ds, dataset, names, checkpoints)
        else:
            res = mgdd_protocol(args, ds, dataset, protocol, lead, checkpoints)
    except (KeyboardInterrupt, stop.Terminated):
        if lead and checkpoints is not None and checkpoints.is_dir() and any(checkpoints.iterdir()):
            print(f"mgdd: the runs' progress is in {checkpoints}; the same command with --resume continues it.",
                  file=sys.stderr)
        raise
    if lead and args.out is not None:
        write_json(args.out, res, force=args.force)
        print(f"wrote {args.out}")
        shutil.rmtree(checkpoints, ignore_errors=True)
    return res


def mgdd_protocol(args, ds, dataset, protocol, lead: bool, checkpoints) -> dict:
    """`mgdd evaluate SET`: the mgdd protocol, with any of its settings changed."""
    from ..evaluate import evaluate
    from ..protocols import PROTOCOLS
    res = evaluate(ds, dataset, **protocol, checkpoint_dir=checkpoints, resume=args.resume)
    changed = {key: getattr(args, key) for key, default, _ in MGDD_ONLY if getattr(args, key) != default}
    if args.epochs is not None and args.epochs != (1000 if args.dsa else 300):
        changed["epochs"] = args.epochs
    res.update(file=str(args.file), dataset=dataset.name, ipc=ds.meta.get("ipc"), method=ds.meta.get("method"),
               protocol="mgdd", protocol_source=PROTOCOLS["mgdd"].source, deviations=changed)
    if not lead:
        return res
    common.table([[res["method"], res["ipc"], res["model"], res["epochs"], res["runs"],
                   res["soft_loss"] if res["label_kind"] == "soft" else "cross-entropy", common.accuracy_text(res)]],
                 ["method", "ipc", "model", "epochs", "runs", "loss", "test accuracy %"])
    return res


def check_checkpoints(args) -> Path | None:
    """Where the runs keep their training state (OUT.checkpoints/, with --out; one subfolder per
    protocol or robust-score evaluation), checked before any work: an unfinished evaluation there
    is continued only with --resume and written over only with --force."""
    if args.resume and args.out is None:
        raise UsageError("--resume continues an evaluation written with --out (its runs keep their progress in "
                         "OUT.checkpoints/); give the same --out.")
    if args.out is None:
        return None
    path = Path(f"{args.out}.checkpoints")
    if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
        raise UsageError(f"{path} exists and is not a folder; mgdd keeps the runs' progress there. Move it or choose "
                         "another --out.")
    if path.is_dir() and any(path.iterdir()) and not (args.resume or args.force):
        raise UsageError(f"{path} holds an unfinished evaluation; pass --resume to continue it or --force to start "
                         "over.")
    return path


MGDD_ONLY = (("model", "convnet", "--model"), ("lr", 0.01, "--lr"), ("batch_size", 256, "--batch-size"),
             ("dsa", False, "--dsa"),
             ("soft_loss", None, "--soft-loss"), ("temperature", None, "--temperature"))


def protocol_names(args) -> list:
    """--protocol's names, checked against the options that tune mgdd's protocol only."""
    from ..protocols import check_names
    names = check_names([n.strip() for n in args.protocol.split(",")])
    if names == ["mgdd"]:
        return names
    for key, default, flag in MGDD_ONLY:
        if getattr(args, key) != default:
            raise UsageError(f"{flag} tunes the mgdd protocol; --protocol {args.protocol} fixes its own settings. "
                             "Drop it, or score with --protocol mgdd.")
    if args.random is not None:
        raise UsageError("the robust scores (--random) are measured under the mgdd protocol for now; drop --protocol "
                         "or --random.")
    if args.epochs is not None and "rfad" in names:
        raise UsageError("--epochs does not apply to the rfad protocol (it stops early on validation accuracy); "
                         "drop --epochs or score rfad on its own.")
    return names


def named_protocols(args, ds, dataset, names, checkpoints=None) -> dict:
    """`mgdd evaluate SET --protocol dc,dsa,rfad`: one score per protocol (mgdd/protocols.py),
    each naming its protocol and any setting changed from it."""
    from ..protocols import evaluate_protocol
    results = {}
    for name in names:
        over = {"epochs": args.epochs} if args.epochs is not None and name != "rfad" else {}
        results[name] = evaluate_protocol(ds, dataset, name, runs=args.runs, seed=args.seed,
                                          progress=common.progress(args), checkpoint_dir=checkpoints,
                                          resume=args.resume, **over)
    rows = []
    for name, res in results.items():
        changed = ", ".join(f"{k} {v}" for k, v in res["deviations"].items())
        rows.append([name + (f" ({changed})" if changed else ""), res["model"], res["label_kind"], res["runs"],
                     common.accuracy_text(res)])
    common.table(rows, ["protocol", "model", "labels", "runs", "test accuracy %"])
    out = {"file": str(args.file), "dataset": dataset.name, "ipc": ds.meta.get("ipc"), "method": ds.meta.get("method")}
    out.update(results[names[0]] if len(names) == 1 else {"protocols": results})
    return out


def robust_scores(args, ds, dataset, protocol, lead: bool = True, checkpoints=None) -> dict:
    """`mgdd evaluate SET --random RSET`: DD-Ranking's HLR, IOR, LRS (and ARS), mgdd/scores.py."""
    from ..distilled import DistilledSet
    from ..evaluate import robust
    random_set = DistilledSet.load(args.random)
    if random_set.meta.get("dataset") != ds.meta.get("dataset"):
        raise UsageError(f"--random {args.random} was made from {random_set.meta.get('dataset')}, the set from "
                         f"{ds.meta.get('dataset')}; give a random subset of the same dataset.")
    real = None if args.real_accuracy is None else args.real_accuracy / 100
    if real is None and lead:
        print("mgdd: training on the whole training split for Acc(real, hard) (slow; --real-accuracy PCT reuses a "
              "known figure)", flush=True)
    res = robust(ds, random_set, dataset, real_accuracy=real, augmentation=args.robust_aug, checkpoint_dir=checkpoints,
                 resume=args.resume, **protocol)
    res.update(file=str(args.file), random=str(args.random), dataset=dataset.name, ipc=ds.meta.get("ipc"),
               method=ds.meta.get("method"), score_source="DD-Ranking (arXiv 2505.13300), mgdd/scores.py")
    if not lead:
        return res
    acc = res["accuracies"]
    rows = [["Acc(syn, its labels)", f"{100 * acc['syn_any']:.2f}"], ["Acc(random, same labels)", f"{100 * acc['rdm_any']:.2f}"],
            ["Acc(syn, hard)", f"{100 * acc['syn_hard']:.2f}"],
            ["Acc(real, hard)", f"{100 * acc['real_hard']:.2f}" + (" (given)" if res["real_accuracy_given"] else "")],
            ["HLR (lower is better)", f"{100 * res['hlr']:.2f}"], ["IOR (higher is better)", f"{100 * res['ior']:.2f}"],
            ["LRS (0-100)", f"{res['lrs']:.2f}"]]
    if "ars" in res:
        rows.append(["ARS (0-100)", f"{res['ars']:.2f}"])
    common.table(rows, [f"{res['method']} IPC {res['ipc']}, {res['evaluations']['syn_any']['runs']} run(s)", "value"])
    return res


def cmd_export(args):
    from ..distilled import DistilledSet, check_export, export
    from ..io import overlaps
    paths = check_export(args.out, args.formats.split(","), force=args.force)
    for p in paths.values():
        if overlaps(args.file, p) or overlaps(p, args.file):
            raise UsageError(f"the output {p} would overwrite the input {args.file}; choose another --out.")
    ds = DistilledSet.load(args.file)
    for p in export(ds, args.out, formats=list(paths), force=args.force):
        print(f"wrote {p}")


def add_parsers(sub):
    s = sub.add_parser("evaluate", help="train fresh networks on a distilled set and test them")
    s.add_argument("file", help="distilled set (.safetensors)")
    common.add_data(s, required=False)
    s.add_argument("--protocol", default="mgdd", metavar="NAME[,NAME...]",
                   help="how the set is scored: mgdd (ours: its own labels, soft by cross-entropy at T), dc (hard labels), "
                        "dsa (hard labels, DSA augmentation, 1000 epochs), rfad (RFAD's finite-network evaluation); "
                        "several, comma-separated, score under each (mgdd/protocols.py)")
    s.add_argument("--model", default="convnet", help="convnet, convnet-bn, mlp, lenet, alexnet, resnet18")
    s.add_argument("--runs", type=common.positive_int, default=1, help="training runs (mean +- std)")
    s.add_argument("--epochs", type=common.positive_int, default=None, help="default 300 (1000 with --dsa)")
    s.add_argument("--lr", type=common.positive_float, default=0.01)
    s.add_argument("--batch-size", type=common.positive_int, default=256,
                   help="training batch (256); a batch past 2 GiB of activations trains in micro-batches "
                        "with the same update, except under batch norm (docs/design.md §6)")
    s.add_argument("--dsa", action="store_true", help="DSA-style augmentation during training")
    s.add_argument("--soft-loss", choices=["ce", "mse"], default=None,
                   help="soft labels: cross-entropy to softmax(labels / T) or MSE (default: what the set "
                        "records; ce for sets made now, mse for sets saved before it was recorded)")
    s.add_argument("--temperature", type=common.positive_float, default=None,
                   help="T of the cross-entropy soft-label loss (default 0.25, or the set's own)")
    g = s.add_argument_group("robust scores (DD-Ranking: HLR, IOR, LRS, ARS; docs/design.md §6)")
    g.add_argument("--random", default=None, metavar="SET",
                   help="a random real subset at the same IPC with the same kind of labels (mgdd baseline random+ls); "
                        "scores the set against it and against the real data")
    g.add_argument("--real-accuracy", type=float, default=None, metavar="PCT",
                   help="Acc(real, hard) in %% if known (same model and epochs); else the whole training split is "
                        "trained on here (slow)")
    g.add_argument("--robust-aug", action="store_true",
                   help="also evaluate both sets with DSA toggled, for the augmentation-robust score")
    common.add_out(s, "write the result as JSON here (the runs keep their progress in OUT.checkpoints/ until it "
                      "is written)", required=False)
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted evaluation from OUT.checkpoints/ (same set and settings; the runs "
                        "end as if never stopped; every protocol but rfad, and the robust scores)")
    common.add_common(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("export", help="write a distilled set as PNG grid, ImageFolder, .npz and .pt")
    s.add_argument("file")
    s.add_argument("--formats", default="png,imagefolder,npz,pt")
    common.add_out(s, "output folder")
    common.add_common(s)
    s.set_defaults(func=cmd_export)
