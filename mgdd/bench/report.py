"""The bench report: pure functions from cells to results.json, results.md and plots/.

    results = summarise(cells, config, done, run)   # every figure, from the cell files
    text = markdown(results)                          # results.md from results.json alone
    rebuild(out)                                      # all of it from OUT/cells/ and OUT/run.json

Nothing here loads a dataset or trains a network, so a report can be rebuilt on any machine
from the committed cells (`mgdd bench --report`).
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import torch

from ..distilled import DistilledSet, save_grid
from ..errors import UsageError
from ..io import read_json, write_bytes, write_json
from ..objective import GCV_FROM_IPC
from ..version import __version__
from .cells import cpu_model, read_cells
from ..scores import augmentation_robust_score, robust_scores
from .presets import TARGET_SPEEDUP, Preset, block_cells, hard_sources


def _s(seconds: float) -> str:
    """Seconds for a table: one decimal from 1 s up, more below (a GPU runs a K = 0 generator
    in hundredths of a second, which one decimal would show as 0.0)."""
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2f}" if seconds >= 0.1 else f"{seconds:.3f}"


def machine() -> dict:
    """The machine a run is measured on (recorded in run.json)."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "mgdd": __version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def summarise(cells: dict, cfg: dict, done, run: dict) -> dict:
    """results.json: every figure of the report, from the cells alone (and the run's record)."""
    done = sorted(done)  # report rows by IPC, whatever order the preset runs them in
    acc = {}
    for ipc in done:
        row = {}
        for m in ("random", "random+ls", "herding", "scratch", "mgdd"):
            row[m] = point(cells[f"{m}-ipc{ipc}"])
        for m in cfg.get("one_shot", []):  # the one-shot rows beside herding+ls (issue #39)
            row[m] = point(cells[f"{m}-ipc{ipc}"])
        # both krr curves start, at step 0, from exactly the random+ls set (same images, same
        # label solve): a point below random+ls is reached before the first pixel step
        start = {"steps": 0, **row["random+ls"]}
        curve = [start] + [{"steps": s, **krr_point(cells[f"krr-pixel-ipc{ipc}-step{s}"])}
                           for s in cfg["krr_snapshots"][str(ipc)]]
        row["krr-pixel"] = curve
        row["acceleration"] = _acceleration(curve, row["mgdd"])
        fresh_steps = cfg.get("krr_fresh_snapshots", {}).get(str(ipc), [])
        fresh = [start] + [{"steps": s, **krr_point(cells[f"krr-fresh-ipc{ipc}-step{s}"])}
                           for s in fresh_steps] if fresh_steps else []
        if fresh:
            row["krr-fresh"] = fresh
        # few-step regime: mgdd vs scratch after K adaptation steps (scratch at K = 0 is random+ls)
        few = []
        for k in cfg.get("k_sweep", []):
            mg = point(cells[f"mgdd-k{k}-ipc{ipc}"])
            sc = row["random+ls"] if k == 0 else point(cells[f"scratch-k{k}-ipc{ipc}"])
            few.append({"k": k, "mgdd": mg, "scratch": sc, "acceleration": _acceleration(curve, mg)})
        few.append({"k": cfg["adapt_steps"], "mgdd": row["mgdd"], "scratch": row["scratch"],
                    "acceleration": row["acceleration"]})
        for p in few:
            if fresh:
                p["acceleration_fresh"] = _acceleration(fresh, p["mgdd"])
        row["by_k"] = few
        # the shipped generator unadapted at each pass count: its own count (the K = 0 row) and pass_sweep's
        if cfg.get("pass_sweep") and "mgdd-k0-adapt" in cells:
            own = cells["mgdd-k0-adapt"].get("passes", 1)
            by_p = {own: point(cells[f"mgdd-k0-ipc{ipc}"])} if f"mgdd-k0-ipc{ipc}" in cells else {}
            by_p.update({p: point(cells[f"mgdd-k0-p{p}-ipc{ipc}"]) for p in cfg["pass_sweep"]})
            row["by_passes"] = [{"passes": p, "own": p == own, "mgdd": by_p[p], "acceleration": _acceleration(curve, by_p[p])}
                                for p in sorted(by_p)]
        if cfg.get("robust"):
            row["robust"] = robust_rows(cells, cfg, ipc)
        acc[str(ipc)] = row
    un = cfg["unseen"]
    unseen = cells.get(f"unseen-ipc{un['generate']}")
    pending = [i for i in cfg["ipcs"] if i not in done]
    # cells of blocks still running, so a long block shows its progress
    in_progress = {str(i): {k: point(c) for k, c in cells.items()
                            if (k.endswith(f"-ipc{i}") or f"-ipc{i}-step" in k) and "seconds" in c
                            and not k.endswith("-" + cfg["cross_model"])}
                   for i in pending}
    # "any size": one adaptation serves every IPC, while krr-pixel starts over for each one
    all_sizes = None
    if done:  # over the finished blocks (each row names its IPCs), so a pending block does not hide it
        all_sizes = []
        for k in [*cfg.get("k_sweep", []), cfg["adapt_steps"]]:
            prefix = "mgdd" if k == cfg["adapt_steps"] else f"mgdd-k{k}"
            adapt_s = cells[f"{prefix}-adapt"]["seconds"]
            gen_s = sum(cells[f"{prefix}-ipc{i}"]["timing"]["generate_seconds"]
                        + cells[f"{prefix}-ipc{i}"]["timing"]["label_seconds"] for i in done)
            reach = [next(p for p in acc[str(i)]["by_k"] if p["k"] == k)["acceleration"]["krr_seconds_to_reach_mgdd"]
                     for i in done]
            total = adapt_s + gen_s
            all_sizes.append({"k": k, "ipcs": done, "mgdd_seconds": total, "adapt_seconds": adapt_s,
                              "krr_seconds_to_reach": None if None in reach else sum(reach),
                              "ratio": None if None in reach else sum(reach) / total})
    # timing only: how each method's time grows with M (the shipped generator's passes, one pixel step)
    scaling = [{k: cells[n][k] for k in ("ipc", "images", "passes", "generate_seconds", "label_seconds",
                                         "pixel_step_seconds")}
               for n in (f"scaling-ipc{i}" for i in cfg.get("scaling_ipcs", [])) if n in cells]
    pending_scaling = [i for i in cfg.get("scaling_ipcs", []) if f"scaling-ipc{i}" not in cells]
    return {"preset": run["preset"], "complete": not pending and not pending_scaling, "pending_ipcs": pending,
            "pending_scaling": pending_scaling, "scaling": scaling, "in_progress": in_progress,
            "dataset": run["dataset"], "machine": run["machine"], "device": run.get("device", "cpu"),
            "seed": run["seed"], "config": cfg, "command": run["command"],
            "protocol": f"ConvNet-3 (width 128, instance norm), SGD lr 0.01 momentum 0.9 wd 5e-4, batch 256, "
                        f"{cfg['eval_epochs']} epochs, lr x0.1 at half, no augmentation; soft labels -> "
                        + ("MSE" if cfg.get("eval_temperature") is None
                           else f"cross-entropy to softmax(labels / {cfg['eval_temperature']})")
                        + f", hard -> cross-entropy; {cfg['runs']} runs; full test set",
            "meta_training": run.get("meta_training"), "features": cells["features"],
            **({"orders": cells["orders-herding"]} if "orders-herding" in cells else {}),
            **({"greedy_orders": cells["orders-greedy"]} if "orders-greedy" in cells else {}),
            "adapt": {k[:-len("-adapt")]: v for k, v in cells.items() if k.endswith("-adapt")},
            "accuracy": acc, "all_sizes": all_sizes,
            **({"real_hard": _real(cells["real-hard"])} if "real-hard" in cells else {}), "bench_cost": _bench_cost(cells),
            "retimed": _retimed(cells),
            "never_adapted": _never_adapted(acc, cells, cfg, run),
            "unseen": None if unseen is None else {
                "adapt_ipcs": un["adapt"], "ipc": un["generate"], "mean": unseen["accuracy_mean"],
                "std": unseen["accuracy_std"], "seconds": unseen["seconds"],
                "random+ls": acc.get(str(un["generate"]), {}).get("random+ls")},
            "cross_architecture": {k: {"mean": v["accuracy_mean"], "std": v["accuracy_std"], "model": v["model"]}
                                   for k, v in cells.items() if k.endswith("-" + cfg["cross_model"])},
            "cells": cells}


def markdown(r: dict) -> str:
    """results.md, from results.json alone."""
    cfg = r["config"]
    pct = lambda d: f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f}"  # noqa: E731
    lines = [f"# mgdd bench: {r['dataset']['name']} (preset `{r['preset']}`)", "",
             f"Machine: {r['machine']['processor']}, {r['machine']['cpus']} CPUs, torch {r['machine']['torch']}"
             f"{', GPU ' + r['machine']['cuda'] if r['machine']['cuda'] else ', no GPU'}; every stage ran on "
             f"{r.get('device', 'cpu')}.  ",
             f"Protocol: {r['protocol']}.  ",
             f"Feature moments (pool of {cfg['pool_size']} random ConvNets, width {cfg['feature']['width']}): "
             f"{_s(r['features']['seconds'])} s"
             + (" (read from a filled cache, not computed; `mgdd bench --retime` measures it cold)"
                if r['features'].get('from_cache') else "")
             + ", shared by every KRR method and not counted below; kernel ridge "
             f"{cfg.get('lam', 1e-3)}, {cfg.get('ridge', 'kernel')}-scaled (docs/design.md §2)"
             + (f"; label ridge {cfg['label_mu']}" + (f" (GCV from {GCV_FROM_IPC} images a class)" if cfg["label_mu"] == "auto"
                                                       else "") if cfg.get("label_mu") is not None else "") + "."
             + (f" Herding orders (every class's first {r['orders']['length']} picks in pool network 0's feature "
                f"space): {_s(r['orders']['seconds'])} s, one-time like the moments, shared by herding+ls and "
                "every herding-start generator and not counted below." if r.get("orders") else "")
             + (f" Greedy orders (every class's first {r['greedy_orders']['length']} picks on the pool's KRR loss): "
                f"{_s(r['greedy_orders']['seconds'])} s, one-time, shared by greedy+ls and by the generator "
                "wherever it starts from greedy, and not counted below." if r.get("greedy_orders") else ""), "",
             "## Test accuracy (%)", "",
             f"scratch and mgdd: {cfg['adapt_steps']} adaptation steps (fewer steps: the K table below).", "",
             "| IPC | random | random+ls | herding+ls | " + "".join(f"{m}+ls | " for m in cfg.get("one_shot", []))
             + "krr-pixel (best) | scratch | **mgdd** |",
             "|---|---|---|---|" + "---|" * len(cfg.get("one_shot", [])) + "---|---|---|"]
    ipcs = [int(i) for i in r["accuracy"]]
    if r["pending_ipcs"]:
        lines[2:2] = [f"**Partial run**: IPC {r['pending_ipcs']} not finished yet (resume with `--resume`).", ""]
    if r.get("retimed"):
        other = len(r["retimed"].get("other_bits", []))
        lines[2:2] = [f"**Timings re-measured** with `--retime` ({r['retimed']['at']}, {r['retimed']['cells']} "
                      "cells): every timed stage was re-run with the current code on this machine"
                      + (", and" if other else " and rebuilt bit-identical sets, so")
                      + " the accuracies are those of the original evaluations. Each cell keeps its earlier "
                      "seconds under `retimed`."
                      + (f" {len(r['retimed']['unverified'])} cells could not be checked: their sets predate "
                         "the recorded digests and are no longer on disk (sets are not committed); they were "
                         "rebuilt by the same seeded code as the checked ones." if r["retimed"]["unverified"]
                         else "")
                      + (f" {other} cells rebuilt with other low bits than "
                         "their evaluated sets (`--other-machine`: the run was made on machines with other "
                         "arithmetic), so their seconds are those of the same seeded steps, not of the exact "
                         "sets evaluated." if other else ""), ""]
    for ipc in ipcs:
        a = r["accuracy"][str(ipc)]
        best = a["acceleration"]["krr_best"]
        lines.append(f"| {ipc} | {pct(a['random'])} | {pct(a['random+ls'])} | {pct(a['herding'])} | "
                     + "".join(f"{pct(a[m])} | " for m in cfg.get("one_shot", []))
                     + f"{pct(best)} ({best['steps']} steps, {best['seconds']:.0f} s) | {pct(a['scratch'])} | "
                     f"**{pct(a['mgdd'])}** |")
    lines += ["", "## Time and acceleration", "",
              f"mgdd (K = {cfg['adapt_steps']}) time = adaptation (shared by all IPCs) + generation + label solve "
              "for that IPC. "
              "Acceleration = time krr-pixel needs to first reach mgdd's mean accuracy / mgdd time.", "",
              f"| IPC | mgdd s | krr-pixel s to reach mgdd | acceleration | krr-pixel at {TARGET_SPEEDUP}x mgdd time | mgdd - best krr-pixel |",
              "|---|---|---|---|---|---|"]
    for ipc in ipcs:
        x = r["accuracy"][str(ipc)]["acceleration"]
        reach = "never (in budget)" if x["ratio"] is None else _s(x["krr_seconds_to_reach_mgdd"])
        ratio = _ratio_text(x)
        lines.append(f"| {ipc} | {_s(x['mgdd_seconds'])} | {reach} | {ratio} | {_at22_text(x)} | "
                     f"{100 * x['mgdd_minus_krr_best']:+.2f} |")
    if cfg.get("k_sweep"):
        lines += ["", "## mgdd vs scratch after K adaptation steps", "",
                  "Both adapt with the same steps, tasks and learning rate; mgdd starts from the shipped meta "
                  "generator, scratch from random init (an identity map, so scratch at K = 0 is random+ls). "
                  "Time = adaptation + generation + label solve.", "",
                  "| IPC | K | mgdd % | scratch % | mgdd - scratch | mgdd s | acceleration vs krr-pixel "
                  f"| krr-pixel % at {TARGET_SPEEDUP}x mgdd time |",
                  "|---|---|---|---|---|---|---|---|"]
        for ipc in ipcs:
            for p in r["accuracy"][str(ipc)]["by_k"]:
                lines.append(f"| {ipc} | {p['k']} | {pct(p['mgdd'])} | {pct(p['scratch'])} | "
                             f"{100 * (p['mgdd']['mean'] - p['scratch']['mean']):+.2f} | "
                             f"{_s(p['mgdd']['seconds'])} | {_ratio_text(p['acceleration'])} | "
                             f"{_at22_text(p['acceleration'])} |")
    pass_rows = [(ipc, r["accuracy"][str(ipc)]["by_passes"]) for ipc in ipcs if "by_passes" in r["accuracy"][str(ipc)]]
    if pass_rows:
        lines += ["", "## The shipped generator by pass count (K = 0)", "",
                  "No adaptation: X_0, P generator passes (each reading a fresh guide), label solve. The pass "
                  "count the generator was meta-trained for is marked *; it is the K = 0 row above. "
                  "Time = generation + label solve.", "",
                  f"| IPC | passes | mgdd % | mgdd s | acceleration vs krr-pixel | krr-pixel % at {TARGET_SPEEDUP}x mgdd time |",
                  "|---|---|---|---|---|---|"]
        for ipc, rows in pass_rows:
            for p in rows:
                lines.append(f"| {ipc} | {p['passes']}{' *' if p['own'] else ''} | {pct(p['mgdd'])} | "
                             f"{_s(p['mgdd']['seconds'])} | {_ratio_text(p['acceleration'])} | "
                             f"{_at22_text(p['acceleration'])} |")
    if r.get("all_sizes"):
        lines += ["", "## Every size from one adaptation", "",
                  "mgdd adapts once and then generates each IPC in one pass; krr-pixel optimises each IPC "
                  "from scratch. Totals over IPC " + ", ".join(str(i) for i in r["all_sizes"][0]["ipcs"])
                  + " (krr-pixel: the time it needs to reach mgdd's accuracy at each IPC).", "",
                  "| K | mgdd s (adapt + all generations) | krr-pixel s to match every IPC | ratio |",
                  "|---|---|---|---|"]
        for a in r["all_sizes"]:
            reach = "never (in budget)" if a["krr_seconds_to_reach"] is None else _s(a["krr_seconds_to_reach"])
            ratio = "n/a" if a["ratio"] is None else f"{a['ratio']:.3g}x"
            lines.append(f"| {a['k']} | {_s(a['mgdd_seconds'])} | {reach} | {ratio} |")
    if r.get("scaling"):
        lines += ["", "## How time grows with the set size", "",
                  "Timing only, no evaluation, seed-0 X_0 of each size: the shipped generator's passes (each "
                  "with its guide), one krr-pixel step (the mean of steps 2 and 3) and the label solve both "
                  "end with. A pass must do the work of more pixel steps than it costs.", "",
                  "| IPC | images M | generator s (passes) | pixel step s | generator / step | label solve s |",
                  "|---|---|---|---|---|---|"]
        for x in r["scaling"]:
            lines.append(f"| {x['ipc']} | {x['images']} | {x['generate_seconds']:.2f} ({x['passes']}) | "
                         f"{x['pixel_step_seconds']:.3f} | {x['generate_seconds'] / x['pixel_step_seconds']:.1f} | "
                         f"{x['label_seconds']:.2f} |")
    fresh_rows = [(ipc, r["accuracy"][str(ipc)]) for ipc in ipcs if "krr-fresh" in r["accuracy"][str(ipc)]]
    if fresh_rows:
        lines += ["", "## Against krr-fresh: pixel optimisation without the cached moments", "",
                  "krr-fresh is krr-pixel as the published iterative methods (KIP/RFAD-style) run it: a new "
                  "random network and two real batches of 1024 every step instead of the pool's cached "
                  "full-data moments. Acceleration = seconds krr-fresh needs to first reach mgdd's accuracy "
                  "/ mgdd seconds.", "",
                  "| IPC | K | mgdd % | mgdd s | krr-fresh s to reach | acceleration vs krr-fresh | krr-fresh best |",
                  "|---|---|---|---|---|---|---|"]
        for ipc, a in fresh_rows:
            for p in a["by_k"]:
                x = p["acceleration_fresh"]
                reach = "never (in budget)" if x["ratio"] is None else _s(x["krr_seconds_to_reach_mgdd"])
                best = x["krr_best"]
                lines.append(f"| {ipc} | {p['k']} | {pct(p['mgdd'])} | {_s(p['mgdd']['seconds'])} | {reach} | "
                             f"{_ratio_text(x)} | {pct(best)} ({best['steps']} steps, {best['seconds']:.0f} s) |")
        lines += ["", "| IPC | krr-fresh steps | seconds | accuracy % |", "|---|---|---|---|"]
        for ipc, a in fresh_rows:
            lines += [f"| {ipc} | {p['steps']} | {_s(p['seconds'])} | {pct(p)} |" for p in a["krr-fresh"]]
    lines += ["", "## krr-pixel accuracy vs time", "",
              "Seconds = optimisation + the final label solve, both wall-clock of the run that wrote the "
              "snapshot (mgdd's time includes its label solve too). Step 0 is the random+ls set: krr-pixel "
              "starts from the same real images and solves its labels the same way. "
              + ("Every snapshot of a curve was timed in one run (`--retime`)." if r.get("retimed") else
                 "Snapshots added to the preset later come from a replay of the same seeded trajectory (same "
                 "images), timed in that run, so run-to-run timing noise can make the column slightly "
                 "non-monotone."), "",
              "| IPC | steps | seconds | accuracy % |", "|---|---|---|---|"]
    for ipc in ipcs:
        for p in r["accuracy"][str(ipc)]["krr-pixel"]:
            lines.append(f"| {ipc} | {p['steps']} | {_s(p['seconds'])} | {pct(p)} |")
    u, never = r["unseen"], r.get("never_adapted")
    if never:
        span = (r.get("meta_training") or {}).get("ipc_range")
        lines += ["", "## Sizes never adapted on", "",
                  "One adaptation serves every size: each row generates an IPC its generator was never "
                  "adapted on, against the generator's own start (random+ls) and against krr-pixel given "
                  "the same seconds at the same size."
                  + (f" The shipped generator was meta-trained on IPC {span[0]}-{span[1]}." if span else ""), "",
                  "| IPC | K | adapted on IPC | mgdd % | mgdd s | mgdd - random+ls | krr-pixel % at mgdd's time "
                  "| mgdd - krr-pixel there |", "|---|---|---|---|---|---|---|---|"]
        for x in never:
            lines.append(f"| {x['ipc']}{'' if x['in_meta_training_range'] in (None, True) else ' (outside)'} | "
                         f"{x['k']} | {', '.join(str(i) for i in x['adapted_on'])} | {pct(x['mgdd'])} | "
                         f"{_s(x['mgdd']['seconds'])} | {100 * x['minus_random_ls']:+.2f} | "
                         + _equal_time_text(x))
        if span and any(x["in_meta_training_range"] is False for x in never):
            lines += ["", "(outside): a size outside the meta-training range as well."]
    elif u is not None:  # reports from before the never-adapted table
        lines += ["", "## A size never seen in adaptation", "",
                  f"mgdd adapted on IPC {u['adapt_ipcs']} only, generating IPC {u['ipc']}: **{100 * u['mean']:.2f} ± "
                  f"{100 * u['std']:.2f}** (random+ls at IPC {u['ipc']}: "
                  + (pct(u["random+ls"]) if u["random+ls"] else "n/a") + ")"]
    lines += ["", f"## Cross-architecture ({cfg['cross_model']}, IPC {cfg['cross_ipc']})", "",
              "| set | accuracy % |", "|---|---|"]
    for k, v in r["cross_architecture"].items():
        lines.append(f"| {k.rsplit('-' + cfg['cross_model'], 1)[0]} | {pct(v)} |")
    lines += _robust_markdown(r)
    ad = r["adapt"]
    lines += ["", "## Adaptation", ""]
    for k, v in ad.items():
        lines.append(f"- {k}: from `{v['from']}`, {v['steps']} steps on IPCs {v['ipcs']}, {_s(v['seconds'])} s")
    for ipc, got in r.get("in_progress", {}).items():
        if got:
            lines += ["", f"## IPC {ipc}: cells finished so far (block in progress)", "",
                      "| cell | accuracy % | seconds |", "|---|---|---|"]
            lines += [f"| {k} | {pct(p)} | {_s(p['seconds'])} |" for k, p in got.items()]
    c = r.get("bench_cost")
    if c:
        lines += ["", "## What the bench itself cost", "",
                  f"{c['cells_timed']} cells timed end to end (build + every evaluation run): "
                  f"{c['timed_seconds'] / 3600:.2f} h in all, plus {r['features']['seconds']:.0f} s of feature "
                  "moments; the krr-pixel optimisation runs themselves are in the krr-pixel table." + (f" {c['cells_untimed']} cells come from runs before per-cell timing was "
                                "recorded and are not in that sum." if c["cells_untimed"] else "")]
    lines += ["", f"Command: `{r['command']}`", ""]
    return "\n".join(lines)


def _robust_markdown(r: dict) -> list:
    """The protocol-robust table (Preset.robust): accuracy beside DD-Ranking's scores."""
    ipcs = [i for i, a in r["accuracy"].items() if "robust" in a]
    if not ipcs:
        return []
    real = r.get("real_hard")
    lines = ["", "## Protocol-robust scores (DD-Ranking)", "",
             "DD-Ranking's scores (arXiv 2505.13300; mgdd/scores.py): HLR = Acc(real, hard) - Acc(set, hard), lower "
             "is better; IOR = Acc(set, its labels) - Acc(random subset, the same labels and evaluation), higher is "
             "better; LRS = 100 (e^a - e^-1) / (e - e^-1) with a = (IOR - HLR) / 2, higher is better, 26.9 = "
             "no better than random and no worse than the real data. The random subset of a least-squares method "
             "is random+ls; 'hard labels' is the same images evaluated the same way with the class each was made "
             "for (the dc protocol's labels). Points, not %."]
    if real:
        lines += ["", f"Acc(real, hard) = {100 * real['accuracy_mean']:.2f}: the evaluation's network on the whole "
                  f"training split ({real['images']} images), {real['epochs']} epochs, {real['runs']} run."]
    else:
        lines += ["", "Acc(real, hard) not measured yet (the real-hard cell runs after the blocks): HLR and LRS "
                  "are blank."]
    aug = any("ars" in x for ipc in ipcs for x in r["accuracy"][ipc]["robust"])
    if aug:
        lines += ["", "ARS = 100 (e^b - e^-1) / (e - e^-1) with b = (IOR with DSA augmentation + IOR without) / 2: "
                  "every set and its random subset evaluated again with DSA, the same epochs; higher is better."]
    lines += ["", "| IPC | method | accuracy % (its labels) | accuracy % (hard labels) | HLR | IOR | LRS |"
              + (" accuracy % (DSA) | ARS |" if aug else ""),
              "|---|---|---|---|---|---|---|" + ("---|---|" if aug else "")]
    for ipc in ipcs:
        for x in r["accuracy"][ipc]["robust"]:
            hlr, lrs = (f"{100 * x['hlr']:.2f}", f"{x['lrs']:.2f}") if "lrs" in x else ("—", "—")
            line = (f"| {ipc} | {x['method']} | {100 * x['accuracy']:.2f} | {100 * x['hard']:.2f} | {hlr} | "
                    f"{100 * x['ior']:+.2f} | {lrs} |")
            if aug:
                line += f" {100 * x['aug']:.2f} | {x['ars']:.2f} |" if "ars" in x else " — | — |"
            lines.append(line)
    return lines


def plots(r: dict, out) -> None:
    """plots/: accuracy vs time per IPC, and grids of the cross-architecture IPC's sets (when on disk)."""
    out = Path(out)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cfg = r["config"]
    ipcs = [int(i) for i in r["accuracy"]]
    fig, axes = plt.subplots(1, len(ipcs), figsize=(5 * len(ipcs), 4), squeeze=False)
    for ax, ipc in zip(axes[0], ipcs):
        a = r["accuracy"][str(ipc)]
        curve = a["krr-pixel"]
        ax.errorbar([p["seconds"] for p in curve], [100 * p["mean"] for p in curve],
                    yerr=[100 * p["std"] for p in curve], marker="o", label="krr-pixel")
        if "krr-fresh" in a:
            fresh = a["krr-fresh"]
            ax.errorbar([p["seconds"] for p in fresh], [100 * p["mean"] for p in fresh],
                        yerr=[100 * p["std"] for p in fresh], marker="^", label="krr-fresh")
        # mgdd and scratch after K adaptation steps: a line per method, the full-K point starred
        few = a.get("by_k") or [{"k": cfg["adapt_steps"], "mgdd": a["mgdd"], "scratch": a["scratch"]}]
        for m, color, marker in (("mgdd", "red", "*"), ("scratch", "green", "s")):
            pts = [p for p in few if not (m == "scratch" and p["k"] == 0)]  # scratch K=0 is random+ls
            ax.errorbar([p[m]["seconds"] for p in pts], [100 * p[m]["mean"] for p in pts],
                        yerr=[100 * p[m]["std"] for p in pts], color=color, marker=marker, linestyle=":",
                        markersize=12 if m == "mgdd" else 7, label=f"{m} (K = {', '.join(str(p['k']) for p in pts)})")
        if a.get("by_passes"):  # the pass-count knob: K = 0, one point per pass count
            pts = a["by_passes"]
            ax.errorbar([p["mgdd"]["seconds"] for p in pts], [100 * p["mgdd"]["mean"] for p in pts],
                        yerr=[100 * p["mgdd"]["std"] for p in pts], color="orange", marker="D", linestyle="-.",
                        label=f"mgdd K = 0 (passes {', '.join(str(p['passes']) for p in pts)})")
        for m, color in (("random", "gray"), ("random+ls", "black"), ("herding", "purple"), ("kmeans", "brown")):
            if m in a:
                ax.axhline(100 * a[m]["mean"], color=color, linestyle="--", linewidth=1, label=m)
        ax.set_xscale("log")
        ax.set_xlabel("wall-clock seconds (log)")
        ax.set_ylabel("test accuracy %")
        ax.set_title(f"{r['dataset']['name']} IPC {ipc}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "plots" / "accuracy_vs_time.png", dpi=110)
    plt.close(fig)
    ipc = cfg["cross_ipc"]
    last = max(cfg["krr_snapshots"][str(ipc)])
    for name in (f"random-ipc{ipc}", f"random+ls-ipc{ipc}", f"herding-ipc{ipc}", f"krr-pixel-ipc{ipc}-step{last}",
                 f"scratch-ipc{ipc}", f"mgdd-ipc{ipc}"):
        p = out / "sets" / f"{name}.safetensors"
        if p.exists():
            save_grid(DistilledSet.load(p), out / "plots" / f"grid-{name}.png", force=True)


def _never_adapted(acc: dict, cells: dict, cfg: dict, run: dict) -> list:
    """Issue #16: does the generator keep its margin at sizes it never adapted on? A row per
    finished IPC outside the adaptation's IPCs and per K (the same adapted generators as the K
    table), plus the ``unseen`` cell (adapted on fewer IPCs): mgdd against its own start
    (random+ls) and against krr-pixel given the same seconds at the same size."""
    adapted = sorted(cells["mgdd-adapt"]["ipcs"]) if "mgdd-adapt" in cells else sorted(cfg["adapt_ipcs"])
    span = (run.get("meta_training") or {}).get("ipc_range")  # absent in runs recorded before it was

    def row(ipc, k, adapted_on, mg):
        a = acc[str(ipc)]
        x = _acceleration(a["krr-pixel"], mg)
        return {"ipc": ipc, "k": k, "adapted_on": adapted_on, "mgdd": mg,
                "in_meta_training_range": None if span is None else span[0] <= ipc <= span[1],
                "random+ls": a["random+ls"], "minus_random_ls": mg["mean"] - a["random+ls"]["mean"],
                "krr_at_mgdd_time": x["krr_at_mgdd_time"], "krr_best": x["krr_best"]}

    rows = [row(int(ipc), p["k"], adapted, p["mgdd"]) for ipc in acc if int(ipc) not in adapted
            for p in acc[ipc]["by_k"]]
    un = cfg["unseen"]
    cell = cells.get(f"unseen-ipc{un['generate']}")
    if cell is not None and str(un["generate"]) in acc:
        rows.append(row(un["generate"], cells["unseen-adapt"]["steps"], sorted(un["adapt"]), point(cell)))
    return rows


def _equal_time_text(x) -> str:
    """The last two cells of a never-adapted row: krr-pixel at mgdd's seconds, and the difference."""
    at, mean = x["krr_at_mgdd_time"], x["mgdd"]["mean"]
    if at is not None:
        return f"{100 * at:.2f} | {100 * (mean - at):+.2f} |"
    if x["mgdd"]["seconds"] < x["random+ls"]["seconds"]:  # sooner than krr-pixel's own start
        return "before its start | n/a |"
    best = x["krr_best"]["mean"]  # past the last snapshot: by then krr-pixel had reached its best
    return f"past the last snapshot (best {100 * best:.2f}) | {100 * (mean - best):+.2f} (vs best) |"


def _ratio_text(x) -> str:
    return f"{x['ratio']:.3g}x" if x["ratio"] is not None else f">= {x['ratio_lower_bound']:.3g}x"


def _at22_text(x) -> str:
    # the paper's target read directly: mgdd >= krr-pixel given TARGET_SPEEDUP x mgdd's time
    at22 = x["krr_at_22x_mgdd_time"]
    return f"{100 * at22:.2f}" if at22 is not None else "past the last snapshot"


def _retimed(cells) -> dict | None:
    done = [c["retimed"] for c in cells.values() if "retimed" in c]
    if not done:
        return None
    other_bits = sorted(k for k, c in cells.items() if c.get("retimed", {}).get("differs"))
    return {"at": max(d["at"] for d in done), "cells": len(done),
            "unverified": sorted(k for k, c in cells.items() if "retimed" in c and not c["retimed"]["verified"]
                                 and not c["retimed"].get("differs")),
            **({"other_bits": other_bits} if other_bits else {})}  # absent: runs re-timed before the option read back


def _bench_cost(cells) -> dict:
    once = ("features", "orders-herding")  # the one-time precompute, reported apart
    timed = [c["cell_wall_seconds"] for k, c in cells.items() if k not in once and "cell_wall_seconds" in c]
    untimed = [k for k, c in cells.items() if k not in once and "cell_wall_seconds" not in c]
    return {"timed_seconds": sum(timed), "cells_timed": len(timed), "cells_untimed": len(untimed)}


def _method_label(cell: str, ipc: int, cfg: dict) -> str:
    """A hard_sources cell name as the robust table's method: herding-ipc1 -> herding+ls,
    mgdd-k0-ipc1 -> mgdd K=0, krr-pixel-ipc1-step800 -> krr-pixel (800 steps)."""
    stem, rest = cell.rsplit(f"-ipc{ipc}", 1)
    if rest:
        return f"{stem} ({rest[len('-step'):]} steps)"
    if stem.startswith("mgdd-k"):
        return f"mgdd K={stem[len('mgdd-k'):]}"
    if stem in ("mgdd", "scratch"):
        return f"{stem} K={cfg['adapt_steps']}"
    return f"{stem}+ls"


def robust_rows(cells: dict, cfg: dict, ipc: int) -> list:
    """DD-Ranking's scores (scores.py) of every method at one IPC, from its cell (its own labels
    and evaluation), its "-hard" twin, random+ls (the random subset given the same label solve
    and evaluation) and real-hard; HLR and LRS wait for the real-hard cell. random's images are
    random+ls's (same seed), so random's cell is random+ls's hard evaluation, and random is its
    own random subset (IOR = 0)."""
    real = cells.get("real-hard")
    rdm, rdm_ls = f"random-ipc{ipc}", f"random+ls-ipc{ipc}"
    # (method, its cell, its hard-label cell, its random subset's cell)
    rows = [("random", rdm, rdm, rdm), ("random+ls", rdm_ls, rdm, rdm_ls)]
    rows += [(_method_label(n, ipc, cfg), n, f"{n}-hard", rdm_ls) for n in hard_sources(Preset(**cfg), ipc)]
    out = []
    for method, name, hard, subset in rows:
        own, random_subset = cells[name], cells[subset]
        row = {"method": method, "cell": name, "accuracy": own["accuracy_mean"], "hard": cells[hard]["accuracy_mean"],
               "ior": own["accuracy_mean"] - random_subset["accuracy_mean"]}
        if real is not None:
            s = robust_scores(own["accuracy_mean"], random_subset["accuracy_mean"], cells[hard]["accuracy_mean"],
                              real["accuracy_mean"])
            row.update(hlr=s["hlr"], lrs=s["lrs"])  # its IOR is the row's, computed the same way
        if f"{name}-aug" in cells and f"{subset}-aug" in cells:  # Preset.robust_aug
            aug, rdm_aug = cells[f"{name}-aug"]["accuracy_mean"], cells[f"{subset}-aug"]["accuracy_mean"]
            row.update(aug=aug, ars=augmentation_robust_score(aug, rdm_aug, own["accuracy_mean"],
                                                              random_subset["accuracy_mean"]))
        out.append(row)
    return out


def _real(cell) -> dict:
    return {k: cell[k] for k in ("accuracy_mean", "accuracy_std", "epochs", "runs", "images")}


def krr_point(cell) -> dict:
    # a krr snapshot is usable once its labels are solved: count that, as mgdd's time does
    return {**point(cell), "seconds": cell["seconds"] + cell["timing"].get("label_seconds", 0.0)}


def point(cell) -> dict:
    return {"mean": cell["accuracy_mean"], "std": cell["accuracy_std"], "seconds": cell["seconds"]}


def _acceleration(curve, point) -> dict:
    """How long krr-pixel needs to first reach ``point``'s mean accuracy, relative to its time."""
    reach = next((p for p in curve if p["mean"] >= point["mean"]), None)
    best = max(curve, key=lambda p: p["mean"])
    return {"mgdd_seconds": point["seconds"], "krr_seconds_to_reach_mgdd": reach["seconds"] if reach else None,
            "ratio": (reach["seconds"] / point["seconds"]) if reach else None,
            "ratio_lower_bound": None if reach else curve[-1]["seconds"] / point["seconds"],
            "krr_best": best, "mgdd_minus_krr_best": point["mean"] - best["mean"],
            "krr_at_22x_mgdd_time": _interp_curve(curve, TARGET_SPEEDUP * point["seconds"]),
            "krr_at_mgdd_time": _interp_curve(curve, point["seconds"])}


def _interp_curve(curve, seconds):
    """krr-pixel accuracy at a given time (linear in log-time between snapshots); None outside the curve."""
    pts = sorted((p["seconds"], p["mean"]) for p in curve)
    if not pts or seconds < pts[0][0] or seconds > pts[-1][0]:
        return None
    for (t0, a0), (t1, a1) in zip(pts, pts[1:]):
        if t0 <= seconds <= t1:
            if t1 == t0:
                return a1
            w = (math.log(seconds) - math.log(t0)) / (math.log(t1) - math.log(t0))
            return a0 + w * (a1 - a0)
    return pts[-1][1]


def finished_blocks(cells: dict, preset: Preset) -> list:
    """IPC blocks whose every cell is on disk, in the preset's order."""
    return [ipc for ipc in preset.ipcs if all(n in cells for n in block_cells(preset, ipc))]


def ordered(cells: dict, preset: Preset) -> dict:
    """Cells in the order a full run makes them (features, then each block's cells), others after:
    the report's rows and sums do not depend on which process or resume wrote which cell."""
    names = ["features", "orders-herding"] + [n for ipc in preset.ipcs for n in block_cells(preset, ipc)]
    names = list(dict.fromkeys(n for n in names if n in cells))
    return {**{n: cells[n] for n in names}, **{n: cells[n] for n in sorted(cells) if n not in names}}


def write_report(out, cells: dict, preset: Preset, run: dict, plots_too: bool = True) -> dict:
    """Summarise ``cells``; write results.json, results.md and (once a block is done) plots/."""
    out = Path(out)
    cells = ordered(cells, preset)
    done = finished_blocks(cells, preset)
    results = summarise(cells, preset.as_dict(), done, run)
    write_json(out / "results.json", results, force=True)
    write_bytes(out / "results.md", markdown(results).encode(), force=True)
    if plots_too and done:
        (out / "plots").mkdir(exist_ok=True)
        plots(results, out)
    return results


def run_record(out) -> dict:
    """OUT/run.json (preset, config, dataset, machine, seed, command); a run from before it
    was written falls back to the same fields of its results.json."""
    out = Path(out)
    if (out / "run.json").exists():
        return read_json(out / "run.json")
    r = read_json(out / "results.json")
    return {k: r[k] for k in ("preset", "config", "dataset", "machine", "seed", "command")}


def rebuild(out, plots_too: bool = True) -> dict:
    """results.json, results.md and plots/ from OUT/cells/ and OUT/run.json alone."""
    run, cells = run_record(out), read_cells(out)
    if "features" not in cells:
        # a run cut off before its first stage, or a folder of set-aside cells (superseded/)
        raise UsageError(f"{Path(out) / 'cells'} has no features.json, so there is no run to report on: "
                         "point --out at a bench folder whose run got past its feature moments.")
    return write_report(out, cells, Preset(**run["config"]), run, plots_too)
