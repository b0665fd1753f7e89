"""`mgdd evaluate` (train fresh networks on a set, test them) and `mgdd export` (other formats)."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from . import common


def cmd_evaluate(args):
    from ..data import MIN_IMAGE_SIZE, load_dataset
    from ..distilled import DistilledSet
    from ..errors import unknown_name
    from ..evaluate import evaluate, resolve_soft_loss
    from ..io import write_json
    from ..models import MODELS
    if args.model not in MODELS:
        raise unknown_name("model", args.model, MODELS)
    if args.out is not None:
        if args.out == "":
            raise UsageError("--out is empty; give a file name for the JSON result.")
        common.check_outputs(args, [args.out], args.force)
    ds = DistilledSet.load(args.file)
    resolve_soft_loss(ds, args.soft_loss, args.temperature)  # refuse a bad combination before loading data
    # the set's own image size (a resized dataset is loaded at it); its ZCA transform travels inside it
    h, w = ds.images.shape[-2:]
    size = args.image_size or (h if h == w and h >= MIN_IMAGE_SIZE else None)
    dataset = load_dataset(args.dataset or ds.meta["dataset"], args.data_dir, args.download, image_size=size)
    if args.out is not None and not args.dataset:  # the dataset named inside the set is an input too
        common.check_outputs(argparse.Namespace(**{**vars(args), "dataset": ds.meta["dataset"]}), [args.out],
                             args.force)
    res = evaluate(ds, dataset, model=args.model, epochs=args.epochs, runs=args.runs, seed=args.seed,
                   lr=args.lr, dsa=args.dsa, progress=common.progress(args), soft_loss=args.soft_loss,
                   temperature=args.temperature)
    res.update(file=str(args.file), dataset=dataset.name, ipc=ds.meta.get("ipc"), method=ds.meta.get("method"))
    common.table([[res["method"], res["ipc"], res["model"], res["epochs"], res["runs"],
                   res["soft_loss"] if res["label_kind"] == "soft" else "cross-entropy", common.accuracy_text(res)]],
                 ["method", "ipc", "model", "epochs", "runs", "loss", "test accuracy %"])
    if args.out is not None:
        write_json(args.out, res, force=args.force)
        print(f"wrote {args.out}")
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
    s.add_argument("--model", default="convnet", help="convnet, convnet-bn, mlp, lenet, alexnet, resnet18")
    s.add_argument("--runs", type=common.positive_int, default=1, help="training runs (mean +- std)")
    s.add_argument("--epochs", type=common.positive_int, default=None, help="default 300 (1000 with --dsa)")
    s.add_argument("--lr", type=common.positive_float, default=0.01)
    s.add_argument("--dsa", action="store_true", help="DSA-style augmentation during training")
    s.add_argument("--soft-loss", choices=["ce", "mse"], default=None,
                   help="soft labels: cross-entropy to softmax(labels / T) or MSE (default: what the set "
                        "records; ce for sets made now, mse for sets saved before it was recorded)")
    s.add_argument("--temperature", type=common.positive_float, default=None,
                   help="T of the cross-entropy soft-label loss (default 0.25, or the set's own)")
    common.add_out(s, "write the result as JSON here", required=False)
    common.add_common(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("export", help="write a distilled set as PNG grid, ImageFolder, .npz and .pt")
    s.add_argument("file")
    s.add_argument("--formats", default="png,imagefolder,npz,pt")
    common.add_out(s, "output folder")
    common.add_common(s)
    s.set_defaults(func=cmd_export)
