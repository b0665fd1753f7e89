"""The quick preset runs the full bench code path on scikit-learn's digits."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("sklearn")


def _tiny_preset(tmp_path, monkeypatch, snapshot, adapt_steps):
    """Register preset "tiny": IPC 1 only, one krr snapshot, 2-epoch single-run evaluations."""
    from mgdd import bench

    monkeypatch.setenv("MGDD_CACHE", str(tmp_path / "cache"))
    cfg = replace(bench.PRESETS["quick"], ipcs=[1], krr_snapshots={"1": [snapshot]}, k_sweep=[], pass_sweep=[], runs=1,
                  eval_epochs=2, adapt_steps=adapt_steps, cross_ipc=1, unseen={"adapt": [1], "generate": 99})
    monkeypatch.setitem(bench.PRESETS, "tiny", cfg)
    return cfg


def test_a_size_never_adapted_on_runs_its_generator_cells_before_its_curves(tmp_path, monkeypatch):
    """The block exists to test the generator there and its curves cost hours on a CPU, so a
    run cut short must already hold the generator's rows; block_cells says the same order."""
    from mgdd.bench import PRESETS, Bench, block_cells

    parts = []
    monkeypatch.setattr(Bench, "baselines", lambda self, ipc: [])
    monkeypatch.setattr(Bench, "_curve_cells", lambda self, ipc: parts.append(("curves", ipc)) or {})
    monkeypatch.setattr(Bench, "_generator_cells", lambda self, ipc: parts.append(("generator", ipc)) or {})
    monkeypatch.setattr(Bench, "hard_cell", lambda self, name: parts.append(("hard", name)))
    monkeypatch.setattr(Bench, "aug_cell", lambda self, name: parts.append(("aug", name)))
    bench = Bench("quick", tmp_path / "bench")
    assert PRESETS["quick"].adapt_ipcs == [1, 5] and PRESETS["quick"].cross_ipc not in (1, 3)
    bench.ipc_block(1)
    bench.ipc_block(3)
    from mgdd.bench.presets import aug_sources, hard_sources
    hard = lambda ipc: ([("hard", n) for n in hard_sources(PRESETS["quick"], ipc)]  # noqa: E731
                        + [("aug", n) for n in aug_sources(PRESETS["quick"], ipc)])
    # the hard-label and augmented twins (DD-Ranking's scores) close each block: they evaluate its finished sets
    assert parts == [("curves", 1), ("generator", 1), *hard(1), ("generator", 3), ("curves", 3), *hard(3)]
    fm = PRESETS["fmnist"]
    for ipc in fm.ipcs:
        names = block_cells(fm, ipc)
        first_curve, k0 = names.index(f"krr-pixel-ipc{ipc}-step{fm.krr_snapshots[str(ipc)][0]}"), names.index("mgdd-k0-adapt")
        assert (first_curve < k0) == (ipc in fm.adapt_ipcs), ipc
        assert names[:5] == [f"random-ipc{ipc}", f"random+ls-ipc{ipc}", f"herding-ipc{ipc}", f"kmeans-ipc{ipc}",
                             f"greedy-ipc{ipc}"]


def test_robust_rows_score_each_method_against_random_ls_and_the_real_data():
    """The bench's DD-Ranking table against hand-computed cases: HLR 0.30 and IOR 0.20 give
    alpha = -0.05, LRS = 100 (e^-0.05 - e^-1) / (e - e^-1) = 24.82; no real-hard cell, no HLR."""
    from mgdd.bench import PRESETS
    from mgdd.bench.presets import hard_sources
    from mgdd.bench.report import robust_rows

    cfg = replace(PRESETS["quick"], k_sweep=[0], one_shot=[])
    cell = lambda a: {"accuracy_mean": a, "accuracy_std": 0.0}  # noqa: E731
    cells = {"random-ipc1": cell(0.40), "random+ls-ipc1": cell(0.50)}
    for n in hard_sources(cfg, 1):
        cells[n], cells[f"{n}-hard"] = cell(0.70), cell(0.60)
    assert hard_sources(cfg, 1) == ["herding-ipc1", "krr-pixel-ipc1-step10", "mgdd-k0-ipc1", "mgdd-ipc1", "scratch-ipc1"]
    rows = robust_rows(cells, cfg.as_dict(), 1)
    assert [r["method"] for r in rows] == ["random", "random+ls", "herding+ls", "krr-pixel (10 steps)", "mgdd K=0",
                                           f"mgdd K={cfg.adapt_steps}", f"scratch K={cfg.adapt_steps}"]
    assert all("lrs" not in r for r in rows) and rows[2]["ior"] == pytest.approx(0.20)
    rows = {r["method"]: r for r in robust_rows({**cells, "real-hard": cell(0.90)}, cfg.as_dict(), 1)}
    assert rows["mgdd K=0"]["hlr"] == pytest.approx(0.30) and rows["mgdd K=0"]["lrs"] == pytest.approx(24.82, abs=0.01)
    # random and random+ls are their own random subsets (IOR 0); random+ls's hard evaluation is random's
    assert rows["random"]["ior"] == 0 == rows["random+ls"]["ior"]
    assert rows["random+ls"]["hlr"] == pytest.approx(0.50) == rows["random"]["hlr"]
    assert all("ars" not in r for r in rows.values())
    # ARS (Preset.robust_aug): IOR 0.25 with DSA (0.80 against random+ls's 0.55) and 0.20 without give
    # beta = 0.225, ARS = 100 (e^0.225 - e^-1) / (e - e^-1) = 37.63; random and random+ls score beta = 0
    aug = {f"{n}-aug": cell(0.80) for n in hard_sources(cfg, 1)}
    aug.update({"random-ipc1-aug": cell(0.45), "random+ls-ipc1-aug": cell(0.55)})
    rows = {r["method"]: r for r in robust_rows({**cells, **aug}, cfg.as_dict(), 1)}
    assert rows["mgdd K=0"]["ars"] == pytest.approx(37.63, abs=0.01) and rows["mgdd K=0"]["aug"] == 0.80
    assert rows["random"]["ars"] == pytest.approx(26.89, abs=0.01) == rows["random+ls"]["ars"]


@pytest.mark.slow
def test_quick_bench_writes_results_and_resumes(tmp_path, monkeypatch):
    from mgdd.bench import Bench
    from mgdd.errors import UsageError

    monkeypatch.setenv("MGDD_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    made, cell = [], Bench.cell
    monkeypatch.setattr(Bench, "cell", lambda self, name, fn: made.append(name) or cell(self, name, fn))
    r = Bench("quick", out).run()
    monkeypatch.setattr(Bench, "cell", cell)
    # the runner makes a block's cells in block_cells' order: at an adapted size, baselines, both
    # pixel curves, then the generator cells by K (so a long block's baseline rows land first)
    from mgdd.bench import PRESETS, block_cells
    first = list(dict.fromkeys(block_cells(PRESETS["quick"], 1)))
    assert [n for n in dict.fromkeys(made) if n in first] == first
    assert first.index("krr-pixel-ipc1-step10") < first.index("mgdd-k0-adapt") < first.index("mgdd-adapt")
    for f in ("results.json", "results.md", "plots/accuracy_vs_time.png", "plots/grid-mgdd-ipc5.png"):
        assert (out / f).exists(), f
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["accuracy"]) == {"1", "5"}
    for ipc, row in saved["accuracy"].items():
        for m in ("random", "random+ls", "herding", "kmeans", "greedy", "scratch", "mgdd"):
            assert 0 <= row[m]["mean"] <= 1 and row[m]["seconds"] >= 0
        # the one-shot rows are the kmeans and greedy baselines with least-squares labels
        from mgdd.distilled import DistilledSet as _DS
        assert _DS.load(out / "sets" / f"kmeans-ipc{ipc}.safetensors").meta["method"] == "kmeans+ls"
        assert _DS.load(out / "sets" / f"greedy-ipc{ipc}.safetensors").meta["method"] == "greedy+ls"
        assert [p["steps"] for p in row["krr-pixel"]] == [0, 5, 10]
        # the unoptimised start of the krr curve is the random+ls set itself
        assert row["krr-pixel"][0] == {"steps": 0, **row["random+ls"]}
        assert [p["k"] for p in row["by_k"]] == [0, 2, 5]
        # one optimisation run reaches both snapshots, so its clock (label solves not counted) is
        # cumulative; the curve's points add each snapshot's own label solve, which load can vary
        cell = lambda s: json.loads((out / "cells" / f"krr-pixel-ipc{ipc}-step{s}.json").read_text())  # noqa: E731
        assert cell(10)["seconds"] >= cell(5)["seconds"]
        for p in row["krr-pixel"][1:]:
            c = cell(p["steps"])
            assert p["seconds"] == pytest.approx(c["seconds"] + c["timing"]["label_seconds"])
        x = row["acceleration"]
        assert (x["ratio"] is None) != (x["ratio_lower_bound"] is None)
    fresh = saved["accuracy"]["5"]
    assert [p["steps"] for p in fresh["krr-fresh"]] == [0, 2, 4] and "krr-fresh" not in saved["accuracy"]["1"]
    assert all("acceleration_fresh" in p for p in fresh["by_k"])
    from mgdd.distilled import DistilledSet
    assert DistilledSet.load(out / "sets" / "krr-fresh-ipc5-step4.safetensors").meta["objective"]["mode"] == "fresh"
    assert "krr-fresh" in (out / "results.md").read_text() and "kmeans+ls" in (out / "results.md").read_text()
    # the shipped generator starts from auto: greedy at these sizes (10 classes x IPC 5 <= 500 images),
    # whose orders are the bench's one-time precompute, reported beside the moments
    k0 = DistilledSet.load(out / "sets" / "mgdd-k0-ipc5.safetensors").meta
    assert (k0["start"], k0["start_rule"]) == ("greedy", "auto") and "Greedy orders" in (out / "results.md").read_text()
    assert saved["unseen"]["ipc"] == 5 and saved["unseen"]["adapt_ipcs"] == [1]
    # sizes never adapted on: here only the unseen cell (adapted on IPC 1, generating IPC 5), set
    # against its start and inside the shipped generator's meta-training range, which run.json records
    from mgdd.io import read_json
    from mgdd.pipeline import default_meta_generator as shipped
    span = read_json(shipped(1) / "config.json")["metadata"]["ipc_range"]
    assert saved["meta_training"]["ipc_range"] == span and span[0] <= 5 <= span[1]
    never = saved["never_adapted"]
    assert [(x["ipc"], x["adapted_on"], x["in_meta_training_range"]) for x in never] == [(5, [1], True)]
    assert never[0]["minus_random_ls"] == pytest.approx(saved["unseen"]["mean"] - fresh["random+ls"]["mean"])
    assert "## Sizes never adapted on" in (out / "results.md").read_text()
    # the pass sweep: the shipped generator unadapted at its own pass count (the K = 0 row) and at 2
    from mgdd.generate import default_passes
    from mgdd.generator import MetaGenerator
    from mgdd.pipeline import default_meta_generator
    own = default_passes(MetaGenerator.from_pretrained(default_meta_generator(1)))
    by_p = {p["passes"]: p for p in saved["accuracy"]["5"]["by_passes"]}
    assert sorted(by_p) == sorted({own, 2}) and by_p[own]["own"] and (own == 2 or not by_p[2]["own"])
    assert by_p[own]["mgdd"] == saved["accuracy"]["5"]["by_k"][0]["mgdd"]
    shipped, two = (DistilledSet.load(out / "sets" / f"{n}-ipc5.safetensors") for n in ("mgdd-k0", "mgdd-k0-p2"))
    assert two.meta["passes"] == 2 and shipped.meta.get("passes", 1) == own
    assert own == 2 or not torch.equal(shipped.images, two.images)
    assert two.meta["timing"]["generate_seconds"] > 0 and "by pass count" in (out / "results.md").read_text()
    # timing-only cells: the shipped generator's passes and a pixel step at each size, after the blocks
    assert [(x["ipc"], x["images"], x["passes"]) for x in saved["scaling"]] == [(1, 10, own), (3, 30, own)]
    assert all(x["pixel_step_seconds"] > 0 and x["generate_seconds"] > 0 for x in saved["scaling"])
    assert saved["complete"] and "How time grows with the set size" in (out / "results.md").read_text()
    assert saved["machine"]["cpus"] >= 1 and "protocol" in saved
    # each new cell records the host that made it: a resumed run may span machines
    made = json.loads((out / "cells" / "random+ls-ipc1.json").read_text())["host"]
    assert made["torch_threads"] >= 1 and made["platform"] and "cpu_model" in made
    assert "| IPC |" in (out / "results.md").read_text()
    # DD-Ranking's scores: each least-squares set again with hard labels, the real data after the blocks
    from mgdd.bench.presets import hard_sources
    real = json.loads((out / "cells" / "real-hard.json").read_text())
    assert saved["real_hard"]["accuracy_mean"] == real["accuracy_mean"] and real["label_kind"] == "hard"
    assert real["images"] > 1000 and real["epochs"] == PRESETS["quick"].eval_epochs and real["runs"] == 1
    for ipc in ("1", "5"):
        names = hard_sources(PRESETS["quick"], int(ipc))
        hard = {n: json.loads((out / "cells" / f"{n}-hard.json").read_text()) for n in names}
        assert all(c["label_kind"] == "hard" for c in hard.values())
        # a hard twin holds its source's images with the classes they were made for
        src, twin = (DistilledSet.load(out / "sets" / f"{n}.safetensors") for n in (names[0], f"{names[0]}-hard"))
        assert torch.equal(src.images, twin.images) and not twin.soft
        # random is random+ls's hard twin: the same images
        a, b = (DistilledSet.load(out / "sets" / f"{n}-ipc{ipc}.safetensors") for n in ("random", "random+ls"))
        assert torch.equal(a.images, b.images)
        rows = {x["cell"]: x for x in saved["accuracy"][ipc]["robust"]}
        assert set(rows) == {f"random-ipc{ipc}", f"random+ls-ipc{ipc}", *names} and rows[f"random-ipc{ipc}"]["ior"] == 0
        mg = rows[f"mgdd-ipc{ipc}"]
        assert mg["hard"] == hard[f"mgdd-ipc{ipc}"]["accuracy_mean"]
        assert mg["hlr"] == pytest.approx(real["accuracy_mean"] - mg["hard"])
        assert mg["ior"] == pytest.approx(saved["accuracy"][ipc]["mgdd"]["mean"] - saved["accuracy"][ipc]["random+ls"]["mean"])
        # ARS: every row's set and its random subset again with DSA augmentation, the same epochs
        augs = {n: json.loads((out / "cells" / f"{n}-aug.json").read_text()) for n in (f"random+ls-ipc{ipc}", *names)}
        assert all(c["dsa"] and c["epochs"] == PRESETS["quick"].eval_epochs for c in augs.values())
        assert mg["aug"] == augs[f"mgdd-ipc{ipc}"]["accuracy_mean"] and 0 <= mg["ars"] <= 100
    assert "## Protocol-robust scores (DD-Ranking)" in (out / "results.md").read_text()
    assert "| ARS |" in (out / "results.md").read_text()
    assert saved["bench_cost"]["cells_timed"] > 0 and saved["bench_cost"]["cells_untimed"] == 0
    # the preset's soft-label loss (cross-entropy at T = 0.25) is the one each cell was scored with
    assert json.loads((out / "cells" / "random+ls-ipc1.json").read_text())["soft_loss"] == "cross-entropy, T=0.25"
    assert "cross-entropy to softmax(labels / 0.25)" in saved["protocol"]
    # the preset's ridge is the objective's default, used by every KRR cell and named in the report
    from mgdd.objective import DEFAULT_LAM, DEFAULT_RIDGE
    krr_set = DistilledSet.load(out / "sets" / "krr-fresh-ipc5-step4.safetensors").meta["objective"]
    assert krr_set["lam"] == DEFAULT_LAM and krr_set.get("ridge", "kernel") == DEFAULT_RIDGE
    assert f"kernel ridge {DEFAULT_LAM}, {DEFAULT_RIDGE}-scaled" in (out / "results.md").read_text()
    # the report of a resumed run holds every finished cell, also those it has not reached yet
    assert Bench("quick", out, resume=True).report(plots=False)["scaling"] == saved["scaling"]
    # finished cells are reused: a resumed run changes nothing
    again = Bench("quick", out, resume=True).run()
    assert again["accuracy"] == r["accuracy"]
    with pytest.raises(UsageError, match="--resume"):
        Bench("quick", out)
    # a resume under changed settings (a new default) is refused, not mixed into the table
    from mgdd import bench
    monkeypatch.setitem(bench.PRESETS, "quick", replace(bench.PRESETS["quick"], lr_pixel=0.5))
    for attempt in (lambda b: b.run(), lambda b: b.retime()):
        with pytest.raises(UsageError, match="lr_pixel"):
            attempt(Bench("quick", out, resume=True))
    monkeypatch.undo()
    monkeypatch.setenv("MGDD_CACHE", str(tmp_path / "cache"))
    # so is a resume on another kind of device: its times would share one table with these
    assert json.loads((out / "run.json").read_text())["device"] == "cpu"
    assert "every stage ran on cpu" in (out / "results.md").read_text()
    for attempt in (lambda b: b.run(), lambda b: b.retime()):
        with pytest.raises(UsageError, match="measured on cpu"):
            attempt(Bench("quick", out, resume=True, device="cuda"))

    # re-timing re-runs every timed stage, checks it rebuilds the evaluated sets, keeps accuracies
    retimed = Bench("quick", out, resume=True).retime()
    assert retimed["retimed"]["cells"] > 0 and "Timings re-measured" in (out / "results.md").read_text()
    # the moments are re-measured cold too, so a first build that read a partial cache is not the figure
    features = json.loads((out / "cells" / "features.json").read_text())
    assert features["retimed"]["previous_seconds"] == r["features"]["seconds"] and features["seconds"] > 0
    assert retimed["features"]["seconds"] == features["seconds"]  # the report reads the re-timed moments
    for ipc, row in retimed["accuracy"].items():
        for m in ("random+ls", "mgdd", "scratch"):
            assert row[m]["mean"] == r["accuracy"][ipc][m]["mean"]
    cell = json.loads((out / "cells" / "mgdd-ipc5.json").read_text())
    assert cell["retimed"]["previous_seconds"] == r["accuracy"]["5"]["mgdd"]["seconds"]
    assert cell["seconds"] == retimed["accuracy"]["5"]["mgdd"]["seconds"]
    assert json.loads((out / "cells" / "krr-fresh-ipc5-step4.json").read_text())["retimed"]["verified"]
    assert json.loads((out / "cells" / "mgdd-k0-p2-ipc5.json").read_text())["retimed"]["verified"]
    scaling = json.loads((out / "cells" / "scaling-ipc3.json").read_text())
    assert scaling["retimed"]["verified"] and scaling["retimed"]["previous_timing"]["pixel_step_seconds"] > 0
    assert retimed["retimed"]["unverified"] == []
    # a set no longer on disk is checked against the digest its cell recorded; lost generator
    # weights leave the adaptation unchecked but its generated sets are still checked
    import shutil
    (out / "sets" / "herding-ipc5.safetensors").unlink()
    shutil.rmtree(out / "sets" / "scratch-generator")
    again = Bench("quick", out, resume=True).retime()
    assert json.loads((out / "cells" / "herding-ipc5.json").read_text())["retimed"]["verified"]
    assert again["retimed"]["unverified"] == ["scratch-adapt"]
    # a stored set that the code no longer rebuilds stops the re-time before anything is written
    before = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    tampered = DistilledSet.load(out / "sets" / "random+ls-ipc1.safetensors")
    DistilledSet(tampered.images + 1, tampered.labels, tampered.meta).save(
        out / "sets" / "random+ls-ipc1.safetensors", force=True)
    with pytest.raises(UsageError, match="random\\+ls-ipc1 rebuilt differently"):
        Bench("quick", out, resume=True).retime()
    assert {p.name: p.read_text() for p in (out / "cells").glob("*.json")} == before
    # a run made on a machine with other arithmetic: --other-machine times that stage and marks it;
    # the refused re-time kept its progress, which continues only the way it began
    with pytest.raises(UsageError, match="rebuilt differently.*--other-machine"):
        Bench("quick", out, resume=True).retime(cont=True)
    with pytest.raises(UsageError, match="continue it the same way"):
        Bench("quick", out, resume=True).retime(cont=True, other_machine=True)
    (out / "retime-progress.json").unlink()
    marked = Bench("quick", out, resume=True).retime(other_machine=True)
    cell = json.loads((out / "cells" / "random+ls-ipc1.json").read_text())
    assert cell["retimed"]["differs"] and not cell["retimed"]["verified"]
    assert cell["set_sha256"] == json.loads(before["random+ls-ipc1.json"])["set_sha256"]  # still the evaluated set's
    assert marked["retimed"]["other_bits"] == ["random+ls-ipc1"] and "random+ls-ipc1" not in marked["retimed"]["unverified"]
    assert "1 cells rebuilt with other low bits" in (out / "results.md").read_text()


def test_a_bench_cut_off_mid_evaluation_continues_the_run_where_it_stopped(tmp_path, monkeypatch):
    """A bench killed during a cell's evaluation resumes that evaluation from its checkpoint (the
    cell says at which epoch) and ends with the cells of a bench never stopped; no checkpoint is
    left once the cells are written."""
    import importlib
    ev = importlib.import_module("mgdd.evaluate")
    from mgdd.bench import PRESETS, Bench
    cfg = _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=1)
    monkeypatch.setitem(PRESETS, "tiny", replace(cfg, eval_epochs=4))
    Bench("tiny", tmp_path / "whole").run()
    monkeypatch.setattr(ev, "CHECKPOINT_SECONDS", 0)

    class Stop(Exception):
        pass

    class StopOnce(ev.Progress):  # the first evaluation is killed after its second epoch's checkpoint
        stopped = False

        def update(self, n=1, **postfix):
            super().update(n, **postfix)
            if self.n == 2 and not StopOnce.stopped:
                StopOnce.stopped = True
                raise Stop()

    plain = ev.Progress
    monkeypatch.setattr(ev, "Progress", StopOnce)
    with pytest.raises(Stop):
        Bench("tiny", tmp_path / "cut").run()
    assert len(list((tmp_path / "cut" / "checkpoints").glob("*/seed0.safetensors"))) == 1
    monkeypatch.setattr(ev, "Progress", plain)
    Bench("tiny", tmp_path / "cut", resume=True).run()
    cells = lambda d: {p.name: json.loads(p.read_text()) for p in (tmp_path / d / "cells").glob("*.json")}  # noqa: E731
    whole, cut = cells("whole"), cells("cut")
    assert whole.keys() == cut.keys()
    resumed = [name for name, c in cut.items() if c.get("resumed_at_epochs")]
    assert len(resumed) == 1 and cut[resumed[0]]["resumed_at_epochs"] == [2]
    for name, c in whole.items():
        assert cut[name].get("accuracies") == c.get("accuracies"), name
    assert not any((tmp_path / "cut" / "checkpoints").iterdir())


def test_snapshot_added_after_the_run_replays_the_same_trajectory(tmp_path, monkeypatch):
    import torch

    from mgdd import bench
    from mgdd.baselines import krr_pixel
    from mgdd.distilled import DistilledSet

    cfg = _tiny_preset(tmp_path, monkeypatch, snapshot=4, adapt_steps=1)
    out = tmp_path / "bench"
    first = bench.Bench("tiny", out)
    first.run()
    # a snapshot before the checkpoint's step: replayed from the start, same seeded trajectory
    monkeypatch.setitem(bench.PRESETS, "tiny", replace(cfg, krr_snapshots={"1": [2, 4]}))
    r = bench.Bench("tiny", out, resume=True).run()
    assert [p["steps"] for p in r["accuracy"]["1"]["krr-pixel"]] == [0, 2, 4]
    replayed = DistilledSet.load(out / "sets" / "krr-pixel-ipc1-step2.safetensors")
    direct = krr_pixel(first.objective(), 1, 2, lr=cfg.lr_pixel, progress=False)
    assert torch.equal(replayed.images, direct.images)
    assert r["accuracy"]["1"]["krr-pixel"][2] == {"steps": 4, **bench.report.krr_point(
        json.loads((out / "cells" / "krr-pixel-ipc1-step4.json").read_text()))}


def test_retime_cut_off_continues_from_its_progress(tmp_path, monkeypatch):
    """A re-time keeps each finished stage; --resume continues it without redoing them, and a
    cut-off re-time is neither restarted silently nor continued on cells that changed."""
    import importlib

    from mgdd import bench
    from mgdd.errors import UsageError

    retime_mod = importlib.import_module("mgdd.bench.retime")  # the module; mgdd.bench exports the function
    _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=1)
    out = tmp_path / "bench"
    bench.Bench("tiny", out).run()
    cells_before = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}

    def cut(*a, **k):  # the session ends during the first iterative curve
        raise KeyboardInterrupt

    monkeypatch.setattr(retime_mod, "krr_pixel", cut)
    with pytest.raises(KeyboardInterrupt):
        bench.Bench("tiny", out, resume=True).retime()
    monkeypatch.undo()
    _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=1)
    # no cell was touched; the progress holds the stages before the cut
    assert {p.name: p.read_text() for p in (out / "cells").glob("*.json")} == cells_before
    progress = json.loads((out / retime_mod.PROGRESS).read_text())
    assert "features" in progress["stages"] and "generator:mgdd-adapt" in progress["stages"]
    assert not any(k.startswith("curve:") for k in progress["stages"])
    # a plain --retime does not throw it away
    with pytest.raises(UsageError, match="--retime --resume"):
        bench.Bench("tiny", out, resume=True).retime()
    # nor is it continued on another host: one table must not mix two machines' times
    moved = {**progress, "host": {**progress["host"], "cpu_model": "another CPU"}}
    (out / retime_mod.PROGRESS).write_text(json.dumps(moved))
    with pytest.raises(UsageError, match="another host"):
        bench.Bench("tiny", out, resume=True).retime(cont=True)
    (out / retime_mod.PROGRESS).write_text(json.dumps(progress))

    # continuing redoes none of the finished stages (they would raise) and uses their seconds
    def redone(*a, **k):
        raise AssertionError("a finished stage was measured again")

    monkeypatch.setattr(bench.Bench, "adapted_generator", redone)
    make_objective = bench.Bench.make_objective
    monkeypatch.setattr(bench.Bench, "make_objective",
                        lambda self, **kw: redone() if kw.get("cache") is False else make_objective(self, **kw))
    r = bench.Bench("tiny", out, resume=True).retime(cont=True)
    assert not (out / retime_mod.PROGRESS).exists() and r["retimed"]["cells"] > 0
    features = json.loads((out / "cells" / "features.json").read_text())
    assert features["seconds"] == progress["stages"]["features"]["features"]["seconds"]
    mgdd_cell = json.loads((out / "cells" / "mgdd-ipc1.json").read_text())
    assert mgdd_cell["seconds"] == progress["stages"]["generator:mgdd-adapt"]["mgdd-ipc1"]["seconds"]
    assert json.loads((out / "cells" / "krr-pixel-ipc1-step2.json").read_text())["retimed"]["verified"]
    # a progress file from before the cells changed is refused
    monkeypatch.undo()
    _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=1)
    monkeypatch.setattr(retime_mod, "krr_pixel", cut)
    with pytest.raises(KeyboardInterrupt):
        bench.Bench("tiny", out, resume=True).retime()
    (out / "cells" / "random-ipc1.json").write_text(json.dumps({**json.loads(
        (out / "cells" / "random-ipc1.json").read_text()), "seconds": 1.0}))
    with pytest.raises(UsageError, match="changed since the cut-off"):
        bench.Bench("tiny", out, resume=True).retime(cont=True)


def test_resume_without_local_generator_weights_rebuilds_the_same_set(tmp_path, monkeypatch):
    """Only cells are committed; a resume elsewhere re-runs the seeded adaptation for missing weights."""
    import shutil

    import torch

    from mgdd import bench
    from mgdd.distilled import DistilledSet

    _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=2)
    out = tmp_path / "bench"
    bench.Bench("tiny", out).run()
    before = DistilledSet.load(out / "sets" / "mgdd-ipc1.safetensors").images
    shutil.rmtree(out / "sets")
    for p in [out / "cells" / "mgdd-ipc1.json", *(out / "cells").glob("*.safetensors")]:
        p.unlink()
    bench.Bench("tiny", out, resume=True).run()
    assert (out / "sets" / "mgdd-generator").exists()
    assert torch.equal(DistilledSet.load(out / "sets" / "mgdd-ipc1.safetensors").images, before)


def test_cross_cells_rebuild_source_sets_missing_from_a_new_checkout(tmp_path, monkeypatch):
    """Sets are not committed: a cross-architecture cell whose source set is gone rebuilds it by
    the cell's seeded path, checks it against the recorded digest, and refuses a mismatch."""
    import shutil

    import torch

    from mgdd import bench
    from mgdd.bench.presets import cross_sources
    from mgdd.distilled import DistilledSet
    from mgdd.errors import UsageError

    cfg = _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=1)
    out = tmp_path / "bench"
    bench.Bench("tiny", out).run()
    sources = cross_sources(cfg, 1)
    assert sources == ["random+ls-ipc1", "mgdd-ipc1", "scratch-ipc1", "krr-pixel-ipc1-step2"]
    first = {n: json.loads((out / "cells" / f"{n}-mlp.json").read_text()) for n in sources}
    stored = {n: DistilledSet.load(out / "sets" / f"{n}.safetensors") for n in sources}
    # a new checkout: no sets, no generator weights, no checkpoints; the cross cells still to do
    shutil.rmtree(out / "sets")
    for p in [*(out / "cells").glob("*-mlp.json"), *(out / "cells").glob("*.safetensors")]:
        p.unlink()
    again = bench.Bench("tiny", out, resume=True)
    again.run()
    for n in sources:
        cell = json.loads((out / "cells" / f"{n}-mlp.json").read_text())
        assert cell["accuracies"] == first[n]["accuracies"] and cell["set_sha256"] == first[n]["set_sha256"]
        assert torch.equal(DistilledSet.load(out / "sets" / f"{n}.safetensors").images, stored[n].images)
    # a cell whose recorded digest the rebuilt set does not match: one clear refusal, nothing written
    (out / "cells" / "random+ls-ipc1-mlp.json").unlink()
    (out / "sets" / "random+ls-ipc1.safetensors").unlink()
    cell = json.loads((out / "cells" / "random+ls-ipc1.json").read_text())
    (out / "cells" / "random+ls-ipc1.json").write_text(json.dumps({**cell, "set_sha256": "0" * 64}))
    with pytest.raises(UsageError, match="rebuilds differently"):
        bench.Bench("tiny", out, resume=True).run()
    assert not (out / "sets" / "random+ls-ipc1.safetensors").exists()
    assert not (out / "cells" / "random+ls-ipc1-mlp.json").exists()


def test_report_shows_cells_of_a_block_still_running(tmp_path, monkeypatch):
    from mgdd import bench
    from mgdd.baselines import random_ls, random_real

    _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=1)
    b = bench.Bench("tiny", tmp_path / "bench")
    b.objective()
    b.reporting = True  # as run() does before the first block; stop after two cells of it
    b.set_cell("random-ipc1", lambda: bench.timed(random_real, b.dataset, 1, 0))
    b.set_cell("random+ls-ipc1", lambda: bench.timed(random_ls, b.objective(), 1, 0))
    md = (tmp_path / "bench" / "results.md").read_text()
    assert "IPC 1: cells finished so far" in md and "| random+ls-ipc1 |" in md
    saved = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert saved["pending_ipcs"] == [1] and set(saved["in_progress"]["1"]) == {"random-ipc1", "random+ls-ipc1"}


def test_never_adapted_rows_compare_with_the_start_and_krr_pixel_at_equal_time():
    """A block outside the adaptation's IPCs gets a row per K; krr-pixel is read at mgdd's own
    seconds (log-time interpolation), and past its last snapshot the row falls back to its best."""
    from mgdd.bench.report import _never_adapted

    def pt(mean, seconds):
        return {"mean": mean, "std": 0.01, "seconds": seconds}
    curve = [{"steps": 0, **pt(0.70, 1.0)}, {"steps": 10, **pt(0.80, 10.0)}, {"steps": 100, **pt(0.85, 100.0)}]
    block = {"random+ls": pt(0.70, 1.0), "krr-pixel": curve,
             "by_k": [{"k": 0, "mgdd": pt(0.74, 10 ** 0.5)}, {"k": 25, "mgdd": pt(0.78, 1000.0)}]}
    acc = {"1": block, "20": block}
    cfg = {"adapt_ipcs": [1], "unseen": {"adapt": [1], "generate": 99}}
    rows = _never_adapted(acc, {"mgdd-adapt": {"ipcs": [1]}}, cfg, {"meta_training": {"ipc_range": [1, 10]}})
    assert [(r["ipc"], r["k"], r["adapted_on"]) for r in rows] == [(20, 0, [1]), (20, 25, [1])]
    k0, k25 = rows
    assert k0["in_meta_training_range"] is False  # 20 is outside 1-10
    assert k0["minus_random_ls"] == pytest.approx(0.04)
    assert k0["krr_at_mgdd_time"] == pytest.approx(0.75)  # halfway in log-time between 1 s and 10 s
    assert k25["krr_at_mgdd_time"] is None and k25["krr_best"]["mean"] == 0.85
    # as the report's table prints them: at mgdd's time, past krr-pixel's curve, before its start
    from mgdd.bench.report import _equal_time_text
    assert _equal_time_text(k0) == "75.00 | -1.00 |"
    assert _equal_time_text(k25) == "past the last snapshot (best 85.00) | -7.00 (vs best) |"
    early = _never_adapted({"20": {**block, "by_k": [{"k": 0, "mgdd": pt(0.74, 0.5)}]}},
                           {"mgdd-adapt": {"ipcs": [1]}}, cfg, {})[0]
    assert early["krr_at_mgdd_time"] is None and _equal_time_text(early) == "before its start | n/a |"
    # a run recorded before the meta-training range was: the range is unknown, not guessed
    assert _never_adapted(acc, {"mgdd-adapt": {"ipcs": [1]}}, cfg, {})[0]["in_meta_training_range"] is None


def test_report_rebuilds_from_the_committed_cells_alone(tmp_path):
    """results.json and results.md of the Fashion-MNIST bench come back exactly from cells/ (no dataset)."""
    from mgdd.bench import rebuild
    src = Path(__file__).resolve().parents[1] / "results" / "fmnist"
    shutil.copytree(src / "cells", tmp_path / "cells")
    shutil.copy(src / "results.json", tmp_path / "results.json")
    rebuild(tmp_path, plots_too=False)
    assert (tmp_path / "results.md").read_text() == (src / "results.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads((src / "results.json").read_text())


def test_cli_report_rebuilds_without_the_dataset(tmp_path, capsys):
    from mgdd.cli import main
    src = Path(__file__).resolve().parents[1] / "results" / "fmnist"
    shutil.copytree(src / "cells", tmp_path / "cells")
    shutil.copy(src / "results.json", tmp_path / "results.json")
    assert main(["bench", "--out", str(tmp_path), "--report", "--data-dir", str(tmp_path / "no-data")]) == 0
    assert (tmp_path / "results.md").read_text() == (src / "results.md").read_text()
    assert (tmp_path / "plots" / "accuracy_vs_time.png").exists()
    assert main(["bench", "--out", str(tmp_path / "empty"), "--report"]) == 2
    # set-aside cells (superseded/) have a run.json but no features cell: a clear refusal
    aside = tmp_path / "aside"
    (aside / "cells").mkdir(parents=True)
    shutil.copy(tmp_path / "cells" / "mgdd-ipc10.json", aside / "cells")
    (aside / "run.json").write_text((tmp_path / "results.json").read_text())
    capsys.readouterr()
    assert main(["bench", "--out", str(aside), "--report"]) == 2
    err = capsys.readouterr().err
    assert "no features.json" in err and "Traceback" not in err


def test_protocol_calibration_counts_agreeing_pairs():
    import importlib.util
    spec = importlib.util.spec_from_file_location("calibration", ROOT / "benchmarks" / "protocol_calibration.py")
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    assert cal.ranks([3.0, 1.0, 3.0, 2.0]) == [2.5, 0.0, 2.5, 1.0]
    assert cal.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert cal.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # means 0.80, 0.81, 0.85; run 0 swaps the first two (0.3 pt apart), keeps the third on top
    cells = [{"ipc": 10, "accuracies": [0.812, 0.794, 0.794]}, {"ipc": 10, "accuracies": [0.805, 0.812, 0.813]},
             {"ipc": 10, "accuracies": [0.85, 0.85, 0.85]}]
    (row,) = cal.calibrate(cells)
    assert row["cells"] == 3 and row["pairs"][0.0] == (3, 2) and row["pairs"][1.0] == (2, 2)
    assert row["rho"] == pytest.approx(0.5)


def test_resume_with_another_shipped_generator_is_refused(tmp_path, monkeypatch):
    """The mgdd cells are the shipped generator's: a resume after it changed would mix two
    generators in one table."""
    from mgdd import bench, pipeline
    from mgdd.errors import UsageError
    from mgdd.generator import GeneratorConfig, MetaGenerator

    _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=1)
    out = tmp_path / "bench"
    bench.Bench("tiny", out).run()
    recorded = json.loads((out / "run.json").read_text())["meta_generator"]
    assert recorded["name"] == pipeline.SHIPPED[1] and len(recorded["sha256"]) == 64
    assert recorded["generate_start"] == "auto"  # its default start: the mgdd cells' sets depend on it
    bench.Bench("tiny", out, resume=True).run()  # the same generator resumes
    # a run recorded before the generator named its default start made its cells from another one
    run = json.loads((out / "run.json").read_text())
    run["meta_generator"].pop("generate_start")
    (out / "run.json").write_text(json.dumps(run))
    with pytest.raises(UsageError, match="generating from its meta-training start"):
        bench.Bench("tiny", out, resume=True).run()
    run["meta_generator"] = recorded
    (out / "run.json").write_text(json.dumps(run))
    other = tmp_path / "pretrained" / "meta-mnist"
    MetaGenerator(GeneratorConfig(channels=1)).save_pretrained(other)
    monkeypatch.setattr(pipeline, "PRETRAINED_DIR", tmp_path / "pretrained")
    with pytest.raises(UsageError, match="another shipped meta generator"):
        bench.Bench("tiny", out, resume=True).run()


def test_resume_with_a_new_generator_redoes_only_its_cells(tmp_path, monkeypatch):
    """--new-generator: the old generator's cells are set aside (kept, not overwritten) and redone
    with the new one, a few-pass generator generates with its passes, the other cells stand."""
    import torch

    from mgdd import bench, pipeline
    from mgdd.distilled import DistilledSet
    from mgdd.errors import UsageError
    from mgdd.generator import GeneratorConfig, MetaGenerator

    _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=1)
    out = tmp_path / "bench"
    bench.Bench("tiny", out).run()
    old_digest = json.loads((out / "run.json").read_text())["meta_generator"]["sha256"]
    before = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    old_mgdd = DistilledSet.load(out / "sets" / "mgdd-ipc1.safetensors")
    torch.manual_seed(3)
    MetaGenerator(GeneratorConfig(channels=1)).save_pretrained(tmp_path / "pretrained" / "meta-mnist",
                                                               metadata={"passes": 2})
    monkeypatch.setattr(pipeline, "PRETRAINED_DIR", tmp_path / "pretrained")
    with pytest.raises(UsageError, match="--new-generator"):
        bench.Bench("tiny", out, resume=True).run()
    with pytest.raises(UsageError, match="--resume"):
        bench.Bench("tiny", out, new_generator=True)
    bench.Bench("tiny", out, resume=True, new_generator=True).run()
    aside = out / "superseded" / old_digest[:12]
    assert json.loads((aside / "cells" / "mgdd-ipc1.json").read_text()) == json.loads(before["mgdd-ipc1.json"])
    assert torch.equal(DistilledSet.load(aside / "sets" / "mgdd-ipc1.safetensors").images, old_mgdd.images)
    assert (aside / "sets" / "mgdd-generator" / "model.safetensors").is_file()
    after = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    for name, text in before.items():  # baselines, krr curve and scratch untouched; mgdd cells redone
        assert (after[name] == text) != name.startswith(("mgdd-", "unseen-")), name
    new = DistilledSet.load(out / "sets" / "mgdd-ipc1.safetensors")
    assert new.meta["passes"] == 2 and not torch.equal(new.images, old_mgdd.images)
    assert json.loads((out / "cells" / "mgdd-adapt.json").read_text())["passes"] == 2
    assert json.loads((out / "run.json").read_text())["meta_generator"]["sha256"] != old_digest
    # the same generator again: a plain resume, nothing set aside or redone
    after = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    bench.Bench("tiny", out, resume=True, new_generator=True).run()
    assert {p.name: p.read_text() for p in (out / "cells").glob("*.json")} == after
    assert [p.name for p in (out / "superseded").iterdir()] == [old_digest[:12]]


def test_second_target_preset_upsamples_digits(tmp_path):
    """digits28 (issue #16's second target) benches digits at the meta generators' 28 x 28."""
    from mgdd.bench import Bench, PRESETS

    b = Bench("digits28", tmp_path / "out")
    assert tuple(b.dataset.train_x.shape[1:]) == (1, 28, 28)
    assert b.run_record()["config"]["image_size"] == 28
    # a run recorded before the field existed (no image_size) resumes as a native-size run
    assert PRESETS["fmnist"].image_size is None


def test_rebuild_check_on_the_machine_that_made_the_bench(tmp_path, monkeypatch):
    """benchmarks/rebuild_check.py: on the machine that ran the bench, the adaptation and the
    krr-pixel sets rebuild bit for bit (distance 0); a stored generator that differs is measured."""
    import importlib.util

    from mgdd import bench
    from mgdd.generator import MetaGenerator

    spec = importlib.util.spec_from_file_location("rebuild_check", ROOT / "benchmarks" / "rebuild_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=2)
    out = tmp_path / "bench"
    bench.Bench("tiny", out).run()
    mod.main(["--preset", "tiny", str(out), "--adapt", "mgdd", "--krr", "krr-pixel-ipc1-step2",
              "--out", str(tmp_path / "check")])
    r = json.loads((tmp_path / "check" / "table.json").read_text())
    assert r["adapt"][0]["identical"] and r["adapt"][0]["distance"] == 0 and r["adapt"][0]["moved"] > 0
    assert r["krr"] == [{"cell": "krr-pixel-ipc1-step2", "identical": True}]
    # weights from "another machine": nudged, so the distance is the nudge's
    gen = MetaGenerator.from_pretrained(out / "sets" / "mgdd-generator")
    with torch.no_grad():
        next(gen.parameters()).add_(1e-3)
    gen.save_pretrained(out / "sets" / "mgdd-generator", metadata=gen.metadata, force=True)
    b = bench.Bench("tiny", out, resume=True)
    a = mod.adapt_check(b, bench.read_cells(out), "mgdd")
    n = next(gen.parameters()).numel()
    assert not a["identical"] and a["distance"] == pytest.approx(1e-3 * n ** 0.5, rel=1e-3)


def _bench_worker(rank, world, port, out, cache):
    """One torchrun-like rank of `mgdd bench --preset tiny-dist` (env:// rendezvous, gloo)."""
    import os
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), MGDD_CACHE=cache, CUDA_VISIBLE_DEVICES="")
    torch.set_num_threads(1)
    from mgdd import bench
    from mgdd.cli import main
    bench.PRESETS["tiny-dist"] = replace(bench.PRESETS["quick"], ipcs=[1], krr_snapshots={"1": [3]},
                                         krr_fresh_snapshots={}, k_sweep=[0], pass_sweep=[], scaling_ipcs=[], runs=3,
                                         eval_epochs=2, adapt_steps=2, cross_ipc=1, unseen={"adapt": [1], "generate": 99})
    main(["bench", "--preset", "tiny-dist", "--out", out, "--device", "cpu"])


def test_the_bench_under_torchrun_records_the_one_process_cells(tmp_path):
    """`mgdd bench` on 2 ranks (as torchrun starts it): rank 0 writes the run in --out, the other
    rank follows in a scratch folder, and each block's evaluations are spread over the ranks one
    run at a time (job j of the block, in cell order, on rank j mod 2), so a cell's 3 runs are not
    always split the same way; the cells hold the same sets and accuracies, run by run, as one
    process's run."""
    import socket

    import torch.multiprocessing as mp
    for world in (1, 2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_bench_worker, args=(world, port, str(tmp_path / f"w{world}"), str(tmp_path / "cache")),
                 nprocs=world, join=True)
    one, two = (json.loads((tmp_path / f"w{w}" / "results.json").read_text()) for w in (1, 2))
    cells = sorted(p.name for p in (tmp_path / "w1" / "cells").glob("*.json"))
    assert cells == sorted(p.name for p in (tmp_path / "w2" / "cells").glob("*.json")) and len(cells) > 10
    evaluated, splits = 0, set()
    for name in cells:
        a, b = (json.loads((tmp_path / f"w{w}" / "cells" / name).read_text()) for w in (1, 2))
        if "accuracies" in a:
            evaluated += 1
            assert a["accuracies"] == b["accuracies"] and a.get("set_sha256") == b.get("set_sha256"), name
            assert a["accuracy_mean"] == b["accuracy_mean"] and a["accuracy_std"] == b["accuracy_std"], name
            assert {k: a.get(k) for k in ("epochs", "runs", "label_kind", "soft_loss", "model", "set", "dsa")} == \
                {k: b.get(k) for k in ("epochs", "runs", "label_kind", "soft_loss", "model", "set", "dsa")}, name
            assert "ranks" not in a and "run_ranks" not in a, name
            if b.get("run_ranks") is not None:  # the real-data cell splits its own runs (evaluate)
                assert b["ranks"] == 2 and len(b["run_ranks"]) == 3, name
                splits.add(tuple(b["run_ranks"]))
                assert b["cell_wall_seconds"] > 0, name
    # consecutive cells alternate: a cell's runs 0, 1, 2 went to ranks 0, 1, 0 or to 1, 0, 1
    # (splitting runs only, rank 1 would always train run 1 and rank 0 runs 0 and 2)
    assert splits == {(0, 1, 0), (1, 0, 1)}
    assert evaluated > 8 and one["accuracy"]["1"]["mgdd"]["mean"] == two["accuracy"]["1"]["mgdd"]["mean"]


def test_a_preset_runs_on_another_dataset_and_resumes_only_there(tmp_path, monkeypatch):
    """--dataset runs a preset's protocol on another dataset (issue #41: the field's shapes through
    the bench): here 4 colour classes of 16 x 16, the shipped grey generator folded over the
    channels. The record holds the dataset's absolute path; a resume without it is refused, and a
    preset whose sets outgrow the classes is refused before any folder is made."""
    from conftest import make_npz
    from mgdd.bench import Bench
    from mgdd.errors import UsageError

    _tiny_preset(tmp_path, monkeypatch, snapshot=1, adapt_steps=1)
    path = make_npz(tmp_path / "colour.npz", n_per_class=12, classes=4, size=16, channels=3)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench"
    r = Bench("tiny", out, dataset="npz:colour.npz").run()
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["dataset"] == f"npz:{path}" and run["config"]["image_size"] is None
    assert r["dataset"]["name"] == f"npz:{path}" and r["dataset"]["classes"] == 4 and r["dataset"]["channels"] == 3
    cells = json.loads((out / "cells" / "mgdd-ipc1.json").read_text())
    assert cells["runs"] == 1 and len(cells["accuracies"]) == 1 and 0 <= cells["accuracy_mean"] <= 1
    with pytest.raises(UsageError, match="dataset"):
        Bench("tiny", out, resume=True).run()  # the preset's own dataset: other settings
    assert Bench("tiny", out, resume=True, dataset=f"npz:{path}").run()["dataset"] == r["dataset"]
    with pytest.raises(UsageError, match=r"up to IPC 500 .*smallest class .* has 12 training images"):
        Bench("fmnist", tmp_path / "big", dataset=f"npz:{path}").run()
    assert not (tmp_path / "big").exists()
    with pytest.raises(UsageError, match="--image-size goes with --dataset"):
        Bench("tiny", tmp_path / "other", image_size=32)


def test_deferred_evaluations_past_the_memory_budget_run_at_once_and_match_one_process(tmp_path, monkeypatch):
    """The torchrun path in one process (a gloo group of one): each cell's evaluation is deferred,
    and with a budget of 0 bytes for the pending sets each is evaluated as soon as it is built
    (one pending cell per flush), never held; the cells are the undeferred run's."""
    import torch.distributed as dist

    from mgdd.bench import PRESETS, Bench, runner
    cfg = _tiny_preset(tmp_path, monkeypatch, snapshot=2, adapt_steps=1)
    monkeypatch.setitem(PRESETS, "tiny", replace(cfg, runs=2))
    Bench("tiny", tmp_path / "one").run()
    monkeypatch.setattr(runner, "PENDING_BYTES", 0)
    sizes, flush = [], Bench.flush
    monkeypatch.setattr(Bench, "flush", lambda self: sizes.append(len(self.store.pending)) or flush(self))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        b = Bench("tiny", tmp_path / "deferred")
        b.deferred = True  # as under torchrun (WORLD_SIZE > 1)
        b.run()
    finally:
        dist.destroy_process_group()
    assert max(sizes) == 1 and sizes.count(1) > 8 and not b.store.pending
    names = sorted(p.name for p in (tmp_path / "one" / "cells").glob("*.json"))
    assert names == sorted(p.name for p in (tmp_path / "deferred" / "cells").glob("*.json"))
    evaluated = 0
    for name in names:
        a, d = (json.loads((tmp_path / w / "cells" / name).read_text()) for w in ("one", "deferred"))
        if "accuracies" in a and name != "real-hard.json":
            evaluated += 1
            assert d["run_ranks"] == [0, 0] and d["ranks"] == 1, name
            for k in ("accuracies", "accuracy_mean", "accuracy_std", "set_sha256", "epochs", "runs", "soft_loss",
                      "label_kind", "set", "model"):
                assert a.get(k) == d.get(k), (name, k)
    assert evaluated > 8
