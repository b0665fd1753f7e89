"""Table for a meta-training sweep made by benchmarks/device_meta_sweep.sh (issue #16).

    python benchmarks/meta_sweep_report.py results/extra/meta-sweep-h200

Reads each run's config.json and meta-log.json and the K = 0 evaluations in evals/, and writes
table.md next to them: Fashion-MNIST accuracy per run and IPC, and the meta-training loss.
Runs with the recipe's tasks per step draw the same tasks at every step (same seed), so their
loss is compared with gpu-control step by step (a paired difference, with its standard error);
a run drawing other tasks is compared by its mean over the same steps only.
"""
import json
import statistics
import sys
from pathlib import Path

from paired_meta_loss import paired  # benchmarks/ is this script's folder, so first on sys.path

CHANGES = {"shipped": "the shipped generator (meta-trained on 2 CPU cores)", "gpu-control": "none: the recipe on the GPU",
           "width96": "--generator-width 96", "blocks8": "--generator-blocks 8", "tasks8": "--tasks-per-step 8"}


def accuracy(path: Path) -> str:
    r = json.loads(path.read_text())
    return f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}"


def main(folder: str) -> None:
    root = Path(folder)
    names = [n for n in CHANGES if n == "shipped" or (root / n / "meta-log.json").exists()]
    ipcs = sorted({int(p.stem.rsplit("-ipc", 1)[1]) for p in (root / "evals").glob("*.json")})
    lines = ["# Meta-training sweep: one change per run (issue #16)", "",
             f"Made by `bash benchmarks/device_meta_sweep.sh OUT SECONDS` (log: `{root.name}/sweep.log`); "
             f"this table by `python benchmarks/meta_sweep_report.py {folder}`.", "",
             "K = 0 on Fashion-MNIST (never seen in meta-training): seed-0 sets, ConvNet-3, 300 epochs, mean ± std "
             "of 3 runs, all evaluated in the same call on the same GPU.", "",
             "| run | change | meta-steps | meta-training s | " + " | ".join(f"IPC {i}" for i in ipcs) + " |",
             "|---|---|---|---|" + "---|" * len(ipcs)]
    logs = {}
    for n in names:
        shipped = Path(__file__).resolve().parents[1] / "mgdd" / "pretrained" / "meta-mnist" / "config.json"
        meta = json.loads((shipped if n == "shipped" else root / n / "config.json").read_text())["metadata"]
        steps, seconds = str(meta["meta_steps"]), f"{meta['seconds']:.0f}"
        if n != "shipped":
            logs[n] = (meta["tasks_per_step"], [h["relative_loss"] for h in
                                                 json.loads((root / n / "meta-log.json").read_text())["history"]])
        cells = [accuracy(root / "evals" / f"{n}-ipc{i}.json") if (root / "evals" / f"{n}-ipc{i}.json").exists()
                 else "-" for i in ipcs]
        lines.append(f"| {n} | {CHANGES[n]} | {steps} | {seconds} | " + " | ".join(cells) + " |")

    tasks0, base = logs["gpu-control"]
    lines += ["", "Meta-training loss (the mean over tasks and passes of the KRR loss relative to X_0's; "
              "1 = no better than the start), on MNIST tasks:", "",
              "| run | steps | its mean | gpu-control's mean, same steps | paired difference (± s.e.) |",
              "|---|---|---|---|---|"]
    for n, (tasks, loss) in logs.items():
        if n == "gpu-control":
            continue
        done = min(len(loss), len(base))
        for a, b in [(0, min(100, done)), (100, min(200, done)), (200, done)]:
            if b <= a:
                continue
            mine, theirs = statistics.mean(loss[a:b]), statistics.mean(base[a:b])
            diff = "- (other tasks)"
            if tasks == tasks0:
                mean, se = paired(loss[a:b], base[a:b])
                diff = f"{mean:+.4f} ± {se:.4f}"
            lines.append(f"| {n} | {a + 1}-{b} | {mine:.4f} | {theirs:.4f} | {diff} |")
    (root / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/extra/meta-sweep-h200")
