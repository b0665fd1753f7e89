"""Issue #41: the field's dataset shapes on one machine, stage by stage: time and peak memory.

    python benchmarks/shapes.py data                   # builds the shape-equivalent sets (once)
    python benchmarks/shapes.py run [--shapes c100-32,c200-64,c10-128] [--ipcs 1,10,50]
    python benchmarks/shapes.py run --evaluate c100-32:1,c100-32:10,c10-128:1   # 300-epoch accuracies
    python benchmarks/shapes.py run --stages none --evaluate c10-128:50 --eval-methods generate  # one set only
    python benchmarks/shapes.py table                  # results/shapes/table.md from the cells
    python benchmarks/shapes.py check                  # Fashion-MNIST: total Gram against per-class Grams
    python benchmarks/shapes.py grid                   # 64 px: features pooled to 4 x 4 against today's 8 x 8

The real CIFAR-100, Tiny-ImageNet and ImageNet do not install here, so these are built from
Fashion-MNIST (which does). They test the SHAPES (classes, image size, channels, set sizes),
not the difficulty of the real data:

  c100-32   100 classes, 3 x 32 x 32 (CIFAR-100's shape): 10 garments x 10 colour schemes; a
            scheme is a fixed ink and background colour pair (jittered per image), so the
            scheme, like the garment, decides the class. 600 training / 100 test images a class.
  c200-64   200 classes, 3 x 64 x 64 (Tiny-ImageNet's shape): 10 garments x 20 schemes;
            300 / 50 a class (Tiny-ImageNet has 500 / 50).
  c10-128   10 classes, 3 x 128 x 128 (an ImageNet subset's shape): the 10 garments in random
            colours over a two-colour gradient (colour is a nuisance); 300 / 50 a class.

Each (shape, stage, IPC) is one cell, run in its own process so that its peak resident memory
(ru_maxrss: the dataset, the moments and the stage) is its own, and written to
results/shapes/cells/ when it finishes; a rerun skips finished cells. Stages, all with mgdd's
defaults (8 random ConvNet-3 of width 64, features pooled to 4 x 4: d = 1,024):

  precompute   the feature moments and the herding orders (cold: the shape's cache folder is
               emptied first), as `mgdd precompute --start herding` does
  random+ls    a random class-balanced sample and the exact least-squares label solve
  krr-pixel    --krr-steps (5) Adam steps on the pixels (seconds a step; 300 is the default run)
  adapt        --adapt-steps (3) adaptation steps of the shipped meta generator at this IPC
  generate     the shipped meta generator, K = 0: one pass per recorded pass and the label solve
  eval-*       ConvNet-3, 300 epochs, 1 run, the cheap protocol, on the random+ls or generate set; its
               run checkpoints in checkpoints/ every minute, so a cell cut off (hours at 200 x 64 px
               on a CPU) continues where it stopped on the next `run` (where checkpoints/ and
               sets/, not committed, are still there)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = Path(os.environ.get("MGDD_SHAPES_OUT", ROOT / "results" / "shapes"))  # a GPU run: another folder
SHAPES = {  # name: (garment schemes, size, train a class, test a class)
    "c100-32": (10, 32, 600, 100),
    "c200-64": (20, 64, 300, 50),
    "c10-128": (0, 128, 300, 50),   # 0 schemes: random colours, 10 classes
}
STAGES = ("precompute", "random+ls", "krr-pixel", "adapt", "generate")
MIN_CONTRAST = 0.35


def data_dir() -> Path:
    from mgdd.data import user_data_dir
    return user_data_dir() / "shapes"


# the generator's start in every cell: the shipped generator's default when they were measured,
# kept so a rerun makes the same sets (its default is now "auto": greedy up to 500 images a set)
HERDING = "herding"


def cache_dir(shape: str) -> Path:
    from mgdd.io import cache_root
    return cache_root() / "shapes" / shape


def _schemes(rng, k: int) -> tuple:
    """k (ink, background) colour pairs, each pair at least MIN_CONTRAST apart, and the pairs
    apart from each other, so a scheme is recognisable."""
    inks, bgs = [], []
    while len(inks) < k:
        ink, bg = rng.random(3), rng.random(3)
        if np.abs(ink - bg).mean() < MIN_CONTRAST:
            continue
        if any(np.abs(ink - i).mean() + np.abs(bg - b).mean() < 0.3 for i, b in zip(inks, bgs)):
            continue
        inks.append(ink), bgs.append(bg)
    return np.array(inks, np.float32), np.array(bgs, np.float32)


def _colour(grey, scheme, inks, bgs, rng, size: int):
    """grey (n, 1, 28, 28) in [0, 1] -> uint8 (n, 3, size, size): resized, then ink and
    background colours per image (the scheme's, jittered by +-0.08; or random with a gradient)."""
    import torch
    import torch.nn.functional as F
    g = F.interpolate(torch.from_numpy(grey), size=(size, size), mode="bilinear", align_corners=False,
                      antialias=True).clamp_(0, 1).numpy()
    n = len(g)
    if scheme is None:  # random colours, a left-to-right gradient background
        a, b = rng.random((n, 3), dtype=np.float32), rng.random((n, 3), dtype=np.float32)
        t = np.linspace(0, 1, size, dtype=np.float32)[None, None, None, :]
        bg = a[:, :, None, None] * (1 - t) + b[:, :, None, None] * t
        ink = rng.random((n, 3), dtype=np.float32)
        close = np.abs(ink - (a + b) / 2).mean(1) < MIN_CONTRAST
        ink[close] = 1 - (a[close] + b[close]) / 2
    else:
        jitter = lambda: rng.uniform(-0.08, 0.08, (n, 3)).astype(np.float32)  # noqa: E731
        ink, bg = np.clip(inks[scheme] + jitter(), 0, 1), np.clip(bgs[scheme] + jitter(), 0, 1)[:, :, None, None]
    x = g * ink[:, :, None, None] + (1 - g) * bg
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def build(shape: str, out: Path) -> None:
    from mgdd.data import load_dataset
    schemes, size, n_train, n_test = SHAPES[shape]
    ds = load_dataset("fashion-mnist")
    m, s = np.float32(ds.mean[0]), np.float32(ds.std[0])
    rng = np.random.default_rng(41)
    inks, bgs = _schemes(rng, schemes) if schemes else (None, None)
    classes = 10 * max(schemes, 1)
    splits = {}
    for split, x_all, y_all, per_class in (("train", ds.train_x, ds.train_y, n_train),
                                           ("test", ds.test_x, ds.test_y, n_test)):
        xs, ys = [], []
        for garment in range(10):
            idx = np.flatnonzero(y_all.numpy() == garment)
            rng.shuffle(idx)
            for k in range(max(schemes, 1)):
                pick = idx[k * per_class:(k + 1) * per_class] if schemes else idx[:per_class]
                if len(pick) < per_class:
                    raise SystemExit(f"{shape}: Fashion-MNIST has too few {split} images of class {garment}")
                grey = np.clip(x_all[pick].numpy() * s + m, 0, 1)  # undo the normalisation
                xs.append(_colour(grey, k if schemes else None, inks, bgs, rng, size))
                ys.append(np.full(len(pick), garment * max(schemes, 1) + k, np.int64))
        splits[split] = (np.concatenate(xs), np.concatenate(ys))
    names = [f"{g}/{k}" if schemes else g for g in ds.classes for k in range(max(schemes, 1))]
    info = {"built_by": "benchmarks/shapes.py", "from": "fashion-mnist", "shape": shape, "classes": classes,
            "size": size, "seed": 41, "note": "shape-equivalent test data, not the real dataset"}
    np.savez(out, x_train=splits["train"][0], y_train=splits["train"][1], x_test=splits["test"][0],
             y_test=splits["test"][1], class_names=np.array(names), info=np.array(json.dumps(info)))
    print(f"wrote {out}: {classes} classes, {len(splits['train'][1])} train, {len(splits['test'][1])} test, "
          f"3x{size}x{size}", flush=True)


# -- one cell, in its own process

def _stored_as(dataset) -> str:
    """How the dataset's images sit in memory: uint8 (images.Images, since issue #41) or float32."""
    from mgdd.images import Images
    return "uint8" if isinstance(dataset.train_x, Images) else "float32"


def cell(shape: str, stage: str, ipc: int, args) -> dict:
    from mgdd.data import load_dataset
    from mgdd.objective import KRRObjective

    t0 = time.perf_counter()
    dataset = load_dataset(f"npz:{data_dir() / (shape + '.npz')}")
    out = {"shape": shape, "stage": stage, "ipc": ipc, "classes": dataset.num_classes,
           "image": list(dataset.train_x.shape[1:]), "train_images": len(dataset.train_y),
           "load_seconds": time.perf_counter() - t0, "stored_as": _stored_as(dataset)}
    sets = OUT / "sets"
    if stage.startswith("eval-"):
        from mgdd.distilled import DistilledSet
        from mgdd.evaluate import evaluate
        ds = DistilledSet.load(sets / f"{shape}-{stage[5:]}-ipc{ipc}.safetensors")
        t0 = time.perf_counter()
        # a cell cut off (a session's end) continues from its run's checkpoint on the next `run`
        ckpts = OUT / "checkpoints" / f"{shape}-{stage}-ipc{ipc}"
        res = evaluate(ds, dataset, epochs=300, runs=1, progress=False, device=args.device, checkpoint_dir=ckpts,
                       resume=True)
        run = res["per_run"][0]
        out.update(accuracy=100 * res["accuracy_mean"], seconds=time.perf_counter() - t0,
                   protocol="ConvNet-3, 300 epochs, 1 run, the set's own soft-label loss")
        if run.get("resumed_at_epoch"):  # seconds: this session's; train_seconds: every session's training
            out.update(resumed_at_epoch=run["resumed_at_epoch"], train_seconds=run["train_seconds"])
        shutil.rmtree(ckpts, ignore_errors=True)
        return out
    if stage == "precompute":
        shutil.rmtree(cache_dir(shape), ignore_errors=True)
    t0 = time.perf_counter()
    obj = KRRObjective(dataset, cache_dir=cache_dir(shape), device=args.device)
    out.update(device=args.device, feature_dim=obj.pool.dim, objective_seconds=time.perf_counter() - t0)
    if stage == "precompute":  # the moments, then the herding orders the shipped generator starts from
        from mgdd.start import coreset_indices, order_seconds
        coreset_indices(obj, 1, "herding")
        out.update(seconds=obj.build_seconds, orders_seconds=order_seconds(obj, "herding"))
        return out
    sets.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if stage == "random+ls":
        from mgdd.baselines import random_ls
        ds = random_ls(obj, ipc, seed=0)
        ds.save(sets / f"{shape}-random+ls-ipc{ipc}.safetensors", force=True)
        shutil.rmtree(OUT / "checkpoints" / f"{shape}-eval-random+ls-ipc{ipc}", ignore_errors=True)  # a new set
        out["seconds"] = time.perf_counter() - t0
    elif stage == "krr-pixel":
        from mgdd.baselines import krr_pixel
        krr_pixel(obj, ipc, args.krr_steps, progress=False)
        out.update(steps=args.krr_steps, seconds=time.perf_counter() - t0,
                   seconds_per_step=(time.perf_counter() - t0) / args.krr_steps)
    elif stage == "adapt":
        from mgdd.adapt import adapt
        from mgdd.pipeline import load_generator
        gen, origin = load_generator("meta", dataset.channels, seed=0)
        # HERDING: the start every committed cell was made from (the shipped default before start="auto")
        log = adapt(gen, obj, steps=args.adapt_steps, ipcs=[ipc], progress=False, start=HERDING)
        out.update(steps=args.adapt_steps, seconds=log["seconds"], seconds_per_step=log["seconds"] / args.adapt_steps,
                   generator=origin, rebuild_guides=log["rebuild_guides"],
                   memory_limit=os.environ.get("MGDD_MEMORY_LIMIT"))
    elif stage == "generate":
        from mgdd.generate import generate
        from mgdd.pipeline import load_generator
        gen, origin = load_generator("meta", dataset.channels, seed=0)
        ds = generate(gen, obj, ipc, seed=0, start=HERDING)
        ds.save(sets / f"{shape}-generate-ipc{ipc}.safetensors", force=True)
        shutil.rmtree(OUT / "checkpoints" / f"{shape}-eval-generate-ipc{ipc}", ignore_errors=True)  # a new set
        t = ds.meta["timing"]
        out.update(seconds=time.perf_counter() - t0, pass_seconds=t["generate_seconds"],
                   label_seconds=t["label_seconds"], generator=origin)
    else:
        raise SystemExit(f"unknown stage {stage}")
    return out


def cell_path(shape: str, stage: str, ipc: int) -> Path:
    return OUT / "cells" / f"{shape}-{stage}-ipc{ipc}.json"


def run(args) -> None:
    shapes = args.shapes.split(",")
    todo = []
    for shape in shapes:
        todo.append((shape, "precompute", 0))
        for ipc in [int(i) for i in args.ipcs.split(",")]:
            todo += [(shape, stage, ipc) for stage in args.stages.split(",") if stage not in ("precompute", "none")]
    for item in (args.evaluate.split(",") if args.evaluate else []):
        shape, ipc = item.split(":")
        if shape in shapes:  # a cell of a shape not run here (SHAPES of device_shapes.sh) waits for its run
            todo += [(shape, f"eval-{m}", int(ipc)) for m in args.eval_methods.split(",")]
    for shape, stage, ipc in todo:
        path = cell_path(shape, stage, ipc)
        if path.is_file():
            continue
        cmd = [sys.executable, __file__, "cell", shape, stage, str(ipc), "--krr-steps", str(args.krr_steps),
               "--adapt-steps", str(args.adapt_steps), "--device", args.device]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            res = {"shape": shape, "stage": stage, "ipc": ipc, "failed": r.stderr.strip().splitlines()[-1:],
                   "wall_seconds": time.perf_counter() - t0}
            print(json.dumps(res), flush=True)
            continue  # not written: a rerun tries again
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["wall_seconds"] = time.perf_counter() - t0
        res["machine"] = f"{platform.machine()} {os.cpu_count()} cpus, torch threads {os.environ.get('OMP_NUM_THREADS')}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1) + "\n")
        tmp.replace(path)
        print(json.dumps(res), flush=True)


def table() -> str:
    rows = [json.loads(p.read_text()) for p in sorted((OUT / "cells").glob("*.json"))]
    order = {s: i for i, s in enumerate(SHAPES)}
    stage_order = {s: i for i, s in enumerate(STAGES + ("eval-random+ls", "eval-generate"))}
    rows.sort(key=lambda r: (order.get(r["shape"], 9), r["ipc"], stage_order.get(r["stage"], 9)))
    lines = ["| shape | classes x image | IPC | stage | seconds | peak memory (GB) | accuracy (%) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["stage"] == "krr-pixel" or r["stage"] == "adapt":
            t = f"{r['seconds_per_step']:.2f} a step ({r['steps']} steps)"
            if r.get("rebuild_guides"):
                t += f", guides rebuilt (MGDD_MEMORY_LIMIT={r['memory_limit']})"
        elif r["stage"] == "generate":
            t = f"{r['pass_seconds']:.1f} pass + {r['label_seconds']:.1f} labels"
        elif r["stage"] == "precompute":
            t = (f"{r['seconds']:.0f} moments ({r['train_images']} images, d = {r['feature_dim']}) + "
                 f"{r['orders_seconds']:.0f} herding orders")
        elif "train_seconds" in r:
            t = f"{r['train_seconds']:.1f} training, over sessions"
        else:
            t = f"{r['seconds']:.1f}"
        acc = f"{r['accuracy']:.2f}" if "accuracy" in r else ""
        ipc = "" if r["stage"] == "precompute" else r["ipc"]
        img = "x".join(map(str, r["image"]))
        mem = (f"{r['peak_rss_gb']:.2f}" + ("" if r.get("stored_as") == "uint8" else " †")
               + (f" (GPU {r['peak_gpu_gb']:.2f})" if "peak_gpu_gb" in r else ""))
        lines.append(f"| {r['shape']} | {r['classes']} x {img} | {ipc} | {r['stage']} | {t} | {mem} | {acc} |")
    text = "\n".join(lines) + "\n"
    if any(r.get("stored_as") != "uint8" for r in rows):
        text += ("\n† measured while the datasets were held as float32 (before uint8 storage, issue #41): four "
                 "times the images' bytes; a cell measured again since keeps its earlier copy in before-uint8/.\n")
    (OUT / "table.md").write_text(text)
    return text


def check() -> dict:
    """Fashion-MNIST, the default objective: the total-Gram layout (the default since #41) against
    the per-class layout mgdd used before, on the same sets: labels and losses."""
    import torch

    from mgdd.data import load_dataset, sample_init
    from mgdd.objective import KRRObjective
    dataset = load_dataset("fashion-mnist")
    # the per-class moments from the cache (or computed), the total computed cold: no cache entry is summed
    per, total = KRRObjective(dataset, class_subsets=True), KRRObjective(dataset, cache=False)
    out = {"dataset": dataset.name, "rows": []}
    for ipc in (1, 10, 50):
        x, _ = sample_init(dataset, ipc, seed=0)
        a, b = per.labels(x), total.labels(x)
        losses = [(per.pool_loss(x, i).item(), total.pool_loss(x, i).item()) for i in range(per.pool.size)]
        out["rows"].append({"ipc": ipc, "labels_max_abs_diff": float((a - b).abs().max()),
                            "labels_max_abs": float(a.abs().max()),
                            "loss_max_rel_diff": max(abs(p - t) / abs(p) for p, t in losses),
                            "same_argmax": bool(torch.equal(a.argmax(1), b.argmax(1)))})
    out["moments_bytes"] = {"per_class": sum(m.nbytes() for m in per.moments),
                            "total": sum(m.nbytes() for m in total.moments)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fmnist-total-vs-per-class.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def grid(train_images: int = 10000) -> dict:
    """Fashion-MNIST at 64 x 64 (its first ``train_images`` training images, every test image):
    the default feature grid 4 (d = 1,024) against grid 8, the unpooled 8 x 8 map (d = 4,096),
    on random+ls and the shipped generator at K = 0, IPC 1 (3 runs) and 10 (1 run), the cheap
    protocol. Resumable: one JSON file a (grid, row, IPC) under results/shapes/grid/."""
    import dataclasses

    from mgdd.baselines import random_ls
    from mgdd.data import load_dataset
    from mgdd.evaluate import evaluate
    from mgdd.features import FeatureConfig
    from mgdd.generate import generate
    from mgdd.objective import KRRObjective
    from mgdd.pipeline import load_generator
    full = load_dataset("fashion-mnist", image_size=64)
    dataset = dataclasses.replace(full, train_x=full.train_x[:train_images].clone(),
                                  train_y=full.train_y[:train_images].clone(), name=f"{full.name}[:{train_images}]@64")
    dataset.__dict__.pop("_fingerprint", None)
    del full
    out_dir = OUT / "grid"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for g in (4, 8):
        obj = None
        for row in ("random+ls", "generator-k0"):
            for ipc, runs in ((1, 3), (10, 1)):
                path = out_dir / f"grid{g}-{row}-ipc{ipc}.json"
                if path.is_file():
                    rows[path.stem] = json.loads(path.read_text())
                    continue
                if obj is None:
                    obj = KRRObjective(dataset, FeatureConfig(grid=g), cache_dir=cache_dir("grid64"))
                t0 = time.perf_counter()
                if row == "random+ls":
                    ds = random_ls(obj, ipc, seed=0)
                else:
                    gen, _ = load_generator("meta", dataset.channels, seed=0)
                    ds = generate(gen, obj, ipc, seed=0, start=HERDING)
                seconds = time.perf_counter() - t0
                res = evaluate(ds, dataset, epochs=300, runs=runs, progress=False)
                cell_out = {"grid": g, "feature_dim": obj.pool.dim, "row": row, "ipc": ipc,
                            "accuracies": [r["accuracy"] for r in res["per_run"]], "set_seconds": seconds,
                            "precompute_seconds": obj.build_seconds, "train_images": train_images,
                            "protocol": "ConvNet-3, 300 epochs, CE at T=0.25, runs seeded 0.."}
                path.write_text(json.dumps(cell_out, indent=1) + "\n")
                rows[path.stem] = cell_out
                print(json.dumps(cell_out), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("--shapes", default=",".join(SHAPES))
    r = sub.add_parser("run")
    r.add_argument("--shapes", default=",".join(SHAPES))
    r.add_argument("--stages", default=",".join(STAGES), help="stages to run (none: only --evaluate's cells)")
    r.add_argument("--ipcs", default="1,10,50")
    r.add_argument("--evaluate", default="", help="shape:ipc,... cells to score (300 epochs, 1 run)")
    r.add_argument("--eval-methods", default="random+ls,generate",
                   help="the sets --evaluate scores (two processes can split them: one each)")
    r.add_argument("--krr-steps", type=int, default=5)
    r.add_argument("--adapt-steps", type=int, default=3)
    r.add_argument("--device", default="cpu", help="cpu or cuda (the table is per device: use another results folder)")
    c = sub.add_parser("cell")
    c.add_argument("shape")
    c.add_argument("stage")
    c.add_argument("ipc", type=int)
    c.add_argument("--krr-steps", type=int, default=5)
    c.add_argument("--adapt-steps", type=int, default=3)
    c.add_argument("--device", default="cpu")
    sub.add_parser("table")
    sub.add_parser("check")
    sub.add_parser("grid")
    args = ap.parse_args()
    if args.cmd == "data":
        data_dir().mkdir(parents=True, exist_ok=True)
        for shape in args.shapes.split(","):
            if not (data_dir() / f"{shape}.npz").is_file():
                build(shape, data_dir() / f"{shape}.npz")
    elif args.cmd == "run":
        run(args)
        print(table())
    elif args.cmd == "cell":
        res = cell(args.shape, args.stage, args.ipc, args)
        res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        if args.device.startswith("cuda"):
            import torch
            res["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
        print(json.dumps(res))
    elif args.cmd == "grid":
        grid()
    elif args.cmd == "check":
        print(json.dumps(check(), indent=1))
    else:
        print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
