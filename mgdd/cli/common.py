"""What every `mgdd` command shares: argument types, option groups, the device, the dataset
and objective from the arguments, and the one up-front check of a command's outputs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import UsageError
from ..progress import duration


def ints(text: str) -> list:
    """'1,10,50' or '1-5' -> [1, 10, 50] / [1, 2, 3, 4, 5]."""
    out = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                if int(hi) < int(lo):
                    raise argparse.ArgumentTypeError(f"the range {part!r} runs downwards; write it low-high, "
                                                     f"e.g. {hi.strip()}-{lo.strip()}")
                out += list(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
            else:  # '1,,2' or a trailing comma: a typo, not silently dropped
                raise argparse.ArgumentTypeError(f"an empty entry in {text!r}; write integers like 1,10,50 or 1-5")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,10,50 or 1-5, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return out


def int_from(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v
    return parse


positive_int = int_from(1)
count = int_from(0)


def label_mu(text: str):
    if text in ("gcv", "auto"):
        return text
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto, gcv or a finite number > 0, got {text!r}") from None


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def seed_value(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, got {v}")
    return v


MAX_SEED = 2**32 - 1  # torch and numpy seeds; derived seeds (seed * 1000 + i) stay in range


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (no usage block) with exit code 2."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`).")


# ---------------------------------------------------------------------------- shared options

def add_common(p):
    p.add_argument("--seed", type=seed_value, default=0, help="random seed, 0 to 2^32-1 (default 0)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_data(p, required=True):
    p.add_argument("--dataset", required=required,
                   help="fashion-mnist, mnist, cifar10, cifar100, svhn, digits, imagefolder:PATH or npz:PATH")
    p.add_argument("--data-dir", default=None, help="where datasets live (also $MGDD_DATA)")
    p.add_argument("--download", action="store_true", help="download with torchvision if it is installed")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="resize images to N x N (imagefolder: default 32; others: their own size)")
    if required:  # a set made from whitened data carries its transform; evaluate takes it from there
        p.add_argument("--zca", type=positive_float, default=None, metavar="REG",
                       help="ZCA-whiten the images, regularised by REG x the mean eigenvalue (e.g. 0.1); "
                            "the transform is stored in every distilled set")


def add_objective(p):
    g = p.add_argument_group("objective (KRR in random ConvNet feature space)")
    g.add_argument("--pool-size", type=positive_int, default=8, help="random feature networks in the pool (8)")
    g.add_argument("--feature-width", type=positive_int, default=64, help="width of the feature ConvNets (64)")
    g.add_argument("--feature-depth", type=positive_int, default=3, help="depth of the feature ConvNets (3)")
    g.add_argument("--feature-grid", type=positive_int, default=4,
                   help="average-pool the feature ConvNets' last map to at most N x N, so the feature size stays "
                        "width x N^2 at any image size (4: 28 and 32 px unchanged; at 64 px, 8 keeps the whole map, "
                        "1-4 points better on Fashion-MNIST at 64 px for 16x the moments' memory; docs/results.md §8)")
    # None: the objective's own defaults (objective.DEFAULT_LAM, DEFAULT_RIDGE), so they live in
    # one place and the CLI does not import torch to print its help
    g.add_argument("--lam", type=positive_float, default=None,
                   help="kernel ridge, scaled as --ridge says (default 0.1; results/ablation)")
    g.add_argument("--ridge", choices=["feature", "kernel", "capped"], default=None,
                   help="capped (default): lam * trace(K_ss) / d, growing with the set up to M = d / 2 "
                        "images, then held; feature: the same without the cap; kernel: lam * mean diag K_ss, "
                        "the same at every size (docs/design.md §2)")
    g.add_argument("--mu", type=positive_float, default=1e-3, help="label ridge, relative to mean diag A^T A")
    g.add_argument("--label-mu", type=label_mu, default="auto", metavar="auto|gcv|MU",
                   help="the final labels' ridge: gcv chooses it by generalised cross-validation on every solve; "
                        "auto (default): gcv from 100 images a class, --mu below (docs/design.md §2)")
    g.add_argument("--objective-mode", choices=["pool", "fresh"], default=None,
                   help="pool (the default): cached full-data moments (fast); fresh: new net + real batches "
                        "each step (what `mgdd baseline krr-fresh` runs)")
    g.add_argument("--no-cache", action="store_true", help="do not cache feature moments on disk")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")


def add_out(p, help_text, required=True):
    p.add_argument("--out", required=required, help=help_text)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def progress(args):
    # a bar on a terminal, plain lines in a log (progress.py); nothing with --quiet
    return not args.quiet


def load(args):
    from ..data import load_dataset
    return load_dataset(args.dataset, args.data_dir, args.download, image_size=args.image_size,
                        zca=getattr(args, "zca", None))


def objective(args, dataset, class_subsets: bool = False):
    from ..features import FeatureConfig
    from ..objective import create_objective
    cfg = FeatureConfig(width=args.feature_width, depth=args.feature_depth, grid=args.feature_grid)
    say = moments_progress(args.pool_size) if not args.quiet else None
    ridge = {k: v for k, v in (("lam", args.lam), ("ridge", args.ridge)) if v is not None}
    return create_objective(args.objective_mode or "pool", dataset, feature_config=cfg, pool_size=args.pool_size,
                            seed=args.seed, mu=args.mu, cache=not args.no_cache, device=device(args),
                            label_mu=getattr(args, "label_mu", "auto"),
                            progress=say, class_subsets=class_subsets, **ridge)


LARGE_POOL = 64  # networks; a pool past this gets a note before its moments are built


def moments_progress(pool_size: int, stream=None, clock=None):
    """The progress callback of the feature moments: one line per network, and once the
    remainder looks long (30 s or more), the time so far and an estimate of what is left from
    the mean per network. A pool over LARGE_POOL networks is announced first: every network
    costs one pass over the training data (cached for later runs), so 2,000 networks take
    250 times the default 8's."""
    import time
    stream = stream or sys.stderr
    clock = clock or time.monotonic
    if pool_size > LARGE_POOL:
        print(f"mgdd: note: --pool-size {pool_size}: each network's feature moments cost one pass over the "
              f"training data, {pool_size / 8:.0f} times the default 8 networks' time (cached for later runs); "
              "an estimate follows the first network.", file=stream, flush=True)
    t0 = clock()

    def say(i: int, n: int) -> None:
        spent = clock() - t0
        left = spent / i * (n - i)
        tail = f" ({duration(spent)} so far, about {duration(left)} left)" if i < n and left >= 30 else ""
        print(f"  feature moments {i}/{n}{tail}", file=stream, flush=True)
    return say


def device(args) -> str:
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

def set_path(text: str, what: str = "--out") -> Path:
    """A distilled-set output: a .safetensors file (its PNG grid is written beside it)."""
    if text == "":
        raise UsageError(f"{what} is empty; give a file name ending in .safetensors.")
    path = Path(text)
    if path.suffix != ".safetensors":
        raise UsageError(f"{what} {text} must end in .safetensors (the grid is written beside it as .png).")
    return path


def input_paths(args) -> list:
    """(what, path) for every file or folder this command reads."""
    found = []
    dataset = getattr(args, "dataset", None) or ""
    if args.command == "meta-train":
        dataset = args.source
    for prefix in ("npz:", "imagefolder:"):
        if dataset.startswith(prefix) and dataset[len(prefix):]:
            found.append((f"dataset {dataset}", Path(dataset[len(prefix):]).expanduser()))
    for attr in ("file", "generator", "source", "random"):
        value = getattr(args, attr, None)
        if isinstance(value, str) and value not in ("meta", "scratch") and (attr != "source" or args.command in
                                                                              ("adapt", "distill")):
            p, what = Path(value), {"source": "--from", "random": "--random"}.get(attr, attr)
            if p.is_dir():  # a generator folder: its weights and config are what we read
                found += [(what, p / "model.safetensors"), (what, p / "config.json")]
            else:
                found.append((what, p))
    return found


def check_outputs(args, outputs, force: bool) -> list:
    """Before any work: claim the outputs for this run (lock.py), so a second run onto them is
    refused now, not hours later, then io.check_outputs on them and the inputs."""
    from ..io import check_outputs as check
    from ..lock import claim
    outputs = list(outputs)
    for o in outputs:  # first: a run at work on these outputs is named as such, not by its checkpoint
        claim(o)
    return check(outputs, force, input_paths(args))


def table(rows, headers):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def accuracy_text(res) -> str:
    # a spread needs at least two runs; one run reports its accuracy alone
    mean = f"{100 * res['accuracy_mean']:.2f}"
    return f"{mean} +- {100 * res['accuracy_std']:.2f}" if res["runs"] > 1 else f"{mean} (1 run)"


def folder_out(args) -> Path:
    if args.out == "":
        raise UsageError("--out is empty; give a folder name.")
    out = Path(args.out)
    if os.path.lexists(out) and (out.is_symlink() or not out.is_dir()):
        raise UsageError(f"{out} exists and is not a folder; this command writes a folder. Choose another --out.")
    return out


def check_start(args):
    """Refuse an unknown --start before any work (the feature moments take minutes)."""
    from ..start import check_start as check_name
    if args.start is not None:
        check_name(args.start)


def check_guide_nets(args):
    """Refuse an explicit --guide-nets over --pool-size before the feature moments are built (the
    default, 2, takes what a smaller pool has, as the objective's guide does)."""
    if args.guide_nets not in (None, 2) and args.guide_nets > args.pool_size:
        raise UsageError(f"--guide-nets {args.guide_nets} is more than the pool's {args.pool_size} networks; "
                         "use at most --pool-size.")


START_HELP = ("where X_0 starts: random real images, a herding / kcenter coreset in pool network 0's feature "
               "space, greedy: real images picked on the pool's KRR loss, or auto: greedy up to 500 images in the "
               "set (classes x IPC), else herding (default: the start the generator records; the shipped one's "
               "is auto)")


