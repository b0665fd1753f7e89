"""One distilled set under other evaluation protocols: soft-label loss, DSA, other architectures.

    python benchmarks/eval_protocols.py SET.safetensors [SET ...] [--variants default,T0.25,dsa,mlp]
                                        [--runs 1] [--out results/ablation]

Variants: ``default`` (ConvNet-3, 300 epochs, the soft-label loss the set records: MSE for
sets saved before cross-entropy at T = 0.25 became the default, that after); ``mse`` (MSE on
the soft labels); ``T<t>`` (cross-entropy against softmax(labels / t)); ``dsa`` (DSA-style
augmentation, 1,000 epochs, as DC/DSA/DM/IDC report); an architecture name from mgdd.models
(``mlp``, ``lenet``, ``alexnet``, ``resnet18``, ``convnet-bn``; 300 epochs); ``a+b`` joins two
(``dsa+T0.25``). Each (set, variant, runs)
is a cell under OUT/protocol-cells/, reused when present; OUT/protocols.md is the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgdd.data import load_dataset  # noqa: E402
from mgdd.distilled import DistilledSet  # noqa: E402
from mgdd.evaluate import evaluate  # noqa: E402


def settings(variant: str) -> dict:
    """evaluate() keywords of a variant; "a+b" joins two (e.g. dsa+T0.25, mlp+T0.25)."""
    if "+" in variant:
        out = {}
        for part in variant.split("+"):
            out.update(settings(part))
        return out
    if variant == "default":
        return {}
    if variant == "mse":
        return {"soft_loss": "mse"}
    if variant.startswith("T"):
        return {"temperature": float(variant[1:])}
    if variant == "dsa":
        return {"dsa": True}
    return {"model": variant}


def table(cells: list) -> str:
    lines = ["# Distilled sets under other evaluation protocols", "",
             "Made by `python benchmarks/eval_protocols.py` (seed 0; 300 epochs unless DSA, which trains "
             "1,000 epochs with augmentation). 2 CPU cores, no GPU; the training times were measured with "
             "up to four jobs sharing those cores, so they are not comparable with each other.", "",
             "| set | variant | model | epochs | soft-label loss | runs | accuracy % | train s/run |",
             "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        acc = f"{100 * c['accuracy_mean']:.2f}" + (f" ± {100 * c['accuracy_std']:.2f}" if c["runs"] > 1 else "")
        lines.append(f"| {c['set']} | {c['variant']} | {c['model']} | {c['epochs']} | {c['soft_loss']} | "
                     f"{c['runs']} | {acc} | {c['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--variants", default="default")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "ablation"))
    args = ap.parse_args()
    out = Path(args.out)
    (out / "protocol-cells").mkdir(parents=True, exist_ok=True)
    datasets = {}
    for set_path in args.sets:
        ds = DistilledSet.load(set_path)
        name = Path(set_path).name.removesuffix(".safetensors")
        dataset = datasets.setdefault(ds.meta["dataset"], load_dataset(ds.meta["dataset"]))
        for variant in [v for v in args.variants.split(",") if v]:
            path = out / "protocol-cells" / f"{name}--{variant}-runs{args.runs}.json"
            if path.exists():
                continue
            t0 = time.perf_counter()
            res = evaluate(ds, dataset, runs=args.runs, seed=0, progress=False, **settings(variant))
            print(f"[{name} {variant}] {100 * res['accuracy_mean']:.2f} % ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
            path.write_text(json.dumps({
                "set": name, "variant": variant, "model": res["model"], "epochs": res["epochs"],
                "soft_loss": res["soft_loss"], "runs": res["runs"], "accuracy_mean": res["accuracy_mean"],
                "accuracy_std": res["accuracy_std"], "accuracies": [r["accuracy"] for r in res["per_run"]],
                "train_seconds": sum(r["train_seconds"] for r in res["per_run"]) / res["runs"],
                "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                            "torch": torch.__version__, "device": res["device"]}}, indent=2) + "\n")
    cells = [json.loads(p.read_text()) for p in sorted((out / "protocol-cells").glob("*.json"))]
    (out / "protocols.md").write_text(table(cells))
    print(table(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
