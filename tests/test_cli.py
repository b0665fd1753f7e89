"""The CLI end to end on tiny data, in-process, plus exit codes for bad input."""

import json
import subprocess
import sys

import pytest
import torch

from mgdd.cli import main

OBJ = ["--pool-size", "2", "--feature-width", "8", "--feature-depth", "2", "--quiet"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_for_every_subcommand(capsys):
    for cmd in ["datasets", "fetch", "precompute", "baseline", "evaluate", "export", "adapt", "distill", "generate",
                "meta-train", "bench"]:
        with pytest.raises(SystemExit) as e:  # argparse exits 0 after printing the help
            main([cmd, "--help"])
        assert e.value.code == 0 and "usage" in capsys.readouterr().out, cmd
    r = subprocess.run([sys.executable, "-m", "mgdd", "--help"], capture_output=True, text=True)  # the entry point
    assert r.returncode == 0 and "usage" in r.stdout


def test_ridge_defaults_come_from_the_objective_and_flags_override_them(tmp_path, tiny_npz, capsys):
    from mgdd.distilled import DistilledSet
    from mgdd.objective import DEFAULT_LAM, DEFAULT_RIDGE
    with pytest.raises(SystemExit):
        main(["baseline", "--help"])
    assert f"default {DEFAULT_LAM}" in " ".join(capsys.readouterr().out.split())  # the help tells the truth
    common = ["--dataset", f"npz:{tiny_npz}", "--ipc", "1", "--steps", "1", "--feature-width", "8",
              "--feature-depth", "2", "--pool-size", "1", "--no-cache", "--quiet"]
    for flags, lam, ridge in (([], DEFAULT_LAM, DEFAULT_RIDGE), (["--lam", "0.01", "--ridge", "kernel"], 0.01, "kernel")):
        out = tmp_path / f"{ridge}.safetensors"
        code, _, err = run(capsys, "baseline", "krr-pixel", *common, *flags, "--out", str(out))
        assert code == 0, err
        recorded = DistilledSet.load(out).meta["objective"]
        assert recorded["lam"] == lam and recorded.get("ridge", "kernel") == ridge


def test_adaptation_steps_default_is_the_same_in_the_cli_and_the_api():
    """`mgdd adapt` and mgdd.distill adapt the same number of steps by default; `mgdd distill`
    leaves the default to the API (it depends on --method)."""
    import inspect

    from mgdd.cli import build_parser
    from mgdd.pipeline import DEFAULT_STEPS, distill

    parser = build_parser()
    assert inspect.signature(distill).parameters["steps"].default is None
    assert parser.parse_args(["adapt", "--dataset", "digits", "--out", "x"]).steps == DEFAULT_STEPS["generator"] == 25
    assert parser.parse_args(["distill", "--dataset", "digits", "--out", "x"]).steps is None


def test_baseline_evaluate_export(tmp_path, tiny_npz, capsys):
    ds = f"npz:{tiny_npz}"
    out = tmp_path / "r.safetensors"
    code, text, _ = run(capsys, "baseline", "random", "--dataset", ds, "--ipc", "2", "--out", str(out))
    assert code == 0 and out.exists() and (tmp_path / "r.png").exists()
    code, text, _ = run(capsys, "evaluate", str(out), "--epochs", "2", "--runs", "2", "--model", "mlp",
                        "--out", str(tmp_path / "res.json"), "--quiet")
    assert code == 0 and "test accuracy" in text and "+-" in text
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["runs"] == 2 and 0 <= res["accuracy_mean"] <= 1 and len(res["per_run"]) == 2
    code, _, _ = run(capsys, "export", str(out), "--out", str(tmp_path / "exp"))
    assert code == 0 and (tmp_path / "exp" / "grid.png").exists()


def test_an_interrupted_evaluation_continues_with_resume(tmp_path, tiny_npz, capsys):
    """`mgdd evaluate --out R` keeps its runs' progress in R.checkpoints/ until R is written: left
    there by an interrupted run, it is refused without --resume (nothing lost), continued with it
    (the same accuracies as an uninterrupted evaluation), and removed once R is written."""
    from mgdd.data import load_dataset
    from mgdd.distilled import DistilledSet
    from mgdd.evaluate import evaluate
    s = tmp_path / "s.safetensors"
    assert run(capsys, "baseline", "random", "--dataset", f"npz:{tiny_npz}", "--ipc", "2", "--out", str(s))[0] == 0
    args = ["evaluate", str(s), "--epochs", "3", "--runs", "2", "--quiet"]
    code, _, err = run(capsys, *args, "--resume")
    assert code == 2 and "--resume continues an evaluation written with --out" in err
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "whole.json"))
    assert code == 0, err
    whole = json.loads((tmp_path / "whole.json").read_text())
    assert not (tmp_path / "whole.json.checkpoints").exists()
    # what `--out r.json` interrupted in its second run leaves: run 0 finished (a run stopped midway
    # resuming as if never stopped is tested in test_components)
    ckpts = tmp_path / "r.json.checkpoints"
    evaluate(DistilledSet.load(s), load_dataset(f"npz:{tiny_npz}"), epochs=3, runs=1, progress=False,
             checkpoint_dir=ckpts)
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "r.json"))
    assert code == 2 and "holds an unfinished evaluation" in err and (ckpts / "seed0.safetensors").is_file()
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "r.json"), "--resume")
    assert code == 0, err
    res = json.loads((tmp_path / "r.json").read_text())
    assert [r["accuracy"] for r in res["per_run"]] == [r["accuracy"] for r in whole["per_run"]]
    assert res["per_run"][0]["resumed_at_epoch"] == 3 and "resumed_at_epoch" not in res["per_run"][1]
    assert not ckpts.exists()


@pytest.mark.parametrize("name", ["random+ls", "herding", "kcenter", "greedy"])
def test_other_baselines(tmp_path, tiny_npz, capsys, name):
    out = tmp_path / "b.safetensors"
    code, _, err = run(capsys, "baseline", name, "--dataset", f"npz:{tiny_npz}", "--ipc", "3", "--out", str(out), *OBJ)
    assert code == 0, err


def test_krr_pixel_init_flag(tmp_path, tiny_npz, capsys):
    out = tmp_path / "h.safetensors"
    base = ["--dataset", f"npz:{tiny_npz}", "--ipc", "2", *OBJ]
    code, _, err = run(capsys, "baseline", "krr-pixel", *base, "--steps", "2", "--init", "herding", "--out", str(out))
    assert code == 0, err
    from mgdd.distilled import DistilledSet
    assert DistilledSet.load(out).meta["init"] == "herding"
    code, _, err = run(capsys, "baseline", "krr-pixel", *base, "--steps", "2", "--init", "mean",
                       "--out", str(tmp_path / "m.safetensors"))
    assert code == 2 and "herding" in err and "Traceback" not in err
    code, _, err = run(capsys, "baseline", "random+ls", *base, "--init", "herding", "--out", str(tmp_path / "r.safetensors"))
    assert code == 2 and "--init" in err and not (tmp_path / "r.safetensors").exists()


def test_krr_fresh_is_krr_pixel_with_a_fresh_network_every_step(tmp_path, tiny_npz, capsys):
    """`mgdd baseline krr-fresh` runs the fresh objective (the same steps as krr-pixel
    --objective-mode fresh), resumes, and refuses a pool objective and krr-only options elsewhere."""
    from mgdd.distilled import DistilledSet
    base = ["--dataset", f"npz:{tiny_npz}", "--ipc", "2", *OBJ]
    code, _, err = run(capsys, "baseline", "krr-fresh", *base, "--steps", "3", "--snapshots", "1",
                       "--out", str(tmp_path / "f.safetensors"))
    assert code == 0, err
    fresh = DistilledSet.load(tmp_path / "f.safetensors")
    assert fresh.meta["objective"]["mode"] == "fresh" and fresh.meta["timing"]["steps"] == 3
    assert (tmp_path / "f-step1.safetensors").exists() and (tmp_path / "f.checkpoint.safetensors").exists()
    code, _, err = run(capsys, "baseline", "krr-pixel", *base, "--steps", "3", "--objective-mode", "fresh",
                       "--out", str(tmp_path / "p.safetensors"))
    assert code == 0, err
    assert torch.equal(DistilledSet.load(tmp_path / "p.safetensors").images, fresh.images)
    code, _, err = run(capsys, "baseline", "krr-fresh", *base, "--steps", "3", "--objective-mode", "pool",
                       "--out", str(tmp_path / "x.safetensors"))
    assert code == 2 and "krr-pixel" in err and not (tmp_path / "x.safetensors").exists()
    code, _, err = run(capsys, "baseline", "random", *base, "--steps", "3", "--out", str(tmp_path / "y.safetensors"))
    assert code == 2 and "--steps" in err and not (tmp_path / "y.safetensors").exists()


def test_unrolled_meta_generator_generates_with_its_passes(tmp_path, tiny_npz, capsys):
    ds = f"npz:{tiny_npz}"
    code, text, err = run(capsys, "meta-train", "--source", ds, "--algorithm", "unrolled", "--passes", "2",
                          "--meta-steps", "2", "--tasks-per-step", "1", "--ipc-range", "1,2", "--no-cache",
                          "--out", str(tmp_path / "U"), *OBJ)
    assert code == 0, err
    assert "relative to X_0" in text
    info = json.loads((tmp_path / "U" / "config.json").read_text())["metadata"]
    assert info["algorithm"] == "unrolled" and info["passes"] == 2 and "inner_steps" not in info
    from mgdd.distilled import DistilledSet
    for extra, passes in [([], 2), (["--passes", "3"], 3)]:
        out = tmp_path / f"g{passes}.safetensors"
        code, _, err = run(capsys, "generate", str(tmp_path / "U"), "--dataset", ds, "--ipc", "2", "--out", str(out),
                           "--no-cache", *extra, *OBJ)
        assert code == 0, err
        assert DistilledSet.load(out).meta["passes"] == passes
        assert "guide_nets" not in DistilledSet.load(out).meta  # the default guide
    out = tmp_path / "one.safetensors"
    code, _, err = run(capsys, "generate", str(tmp_path / "U"), "--dataset", ds, "--ipc", "2", "--out", str(out),
                       "--no-cache", "--guide-nets", "1", *OBJ)
    assert code == 0, err
    one, two = DistilledSet.load(out), DistilledSet.load(tmp_path / "g2.safetensors")
    assert one.meta["guide_nets"] == 1 and not torch.equal(one.images, two.images)
    out = tmp_path / "many.safetensors"
    code, _, err = run(capsys, "generate", str(tmp_path / "U"), "--dataset", ds, "--ipc", "2", "--out", str(out),
                       "--no-cache", "--guide-nets", "5", *OBJ)
    assert code == 2 and "--guide-nets 5" in err and "Traceback" not in err and not out.exists()


def test_meta_train_records_its_guide_networks(tmp_path, tiny_npz, capsys):
    """An unrolled generator trained with --guide-nets 1 records it; generate uses it by default
    and --guide-nets overrides it; other algorithms and counts over the pool are refused."""
    from mgdd.distilled import DistilledSet
    ds = f"npz:{tiny_npz}"
    meta = ["meta-train", "--source", ds, "--meta-steps", "2", "--tasks-per-step", "1", "--ipc-range", "1,2",
            "--no-cache", *OBJ]
    code, _, err = run(capsys, *meta, "--algorithm", "unrolled", "--guide-nets", "1", "--out", str(tmp_path / "U"))
    assert code == 0, err
    assert json.loads((tmp_path / "U" / "config.json").read_text())["metadata"]["guide_nets"] == 1
    for extra, want in [([], 1), (["--guide-nets", "2"], None)]:
        out = tmp_path / f"g{want}.safetensors"
        code, _, err = run(capsys, "generate", str(tmp_path / "U"), "--dataset", ds, "--ipc", "2", "--out", str(out),
                           "--no-cache", *extra, *OBJ)
        assert code == 0, err
        assert DistilledSet.load(out).meta.get("guide_nets") == want
    for extra, message in [(["--algorithm", "reptile", "--guide-nets", "1"], "--algorithm unrolled"),
                           (["--algorithm", "unrolled", "--guide-nets", "3"], "--guide-nets 3")]:
        code, _, err = run(capsys, *meta, *extra, "--out", str(tmp_path / "R"))
        assert code == 2 and message in err and "Traceback" not in err
        assert not (tmp_path / "R" / "model.safetensors").exists()


def test_meta_train_finishing_a_cut_run(tmp_path, tiny_npz, capsys):
    """--resume continues the checkpoint, and a resume at the step the checkpoint holds writes the
    model with no more steps (how a run cut off by a time limit is closed); a resume with other
    settings is refused."""
    from mgdd.distilled import DistilledSet
    from mgdd.generator import MetaGenerator
    ds = f"npz:{tiny_npz}"
    meta = ["meta-train", "--source", ds, "--algorithm", "unrolled", "--tasks-per-step", "1",
            "--no-cache", "--checkpoint-every", "1", "--out", str(tmp_path / "U"), *OBJ]
    code, _, err = run(capsys, *meta, "--ipc-range", "1,2", "--meta-steps", "2")
    assert code == 0, err
    gen = MetaGenerator.from_pretrained(tmp_path / "U")
    assert "history_input" not in json.loads((tmp_path / "U" / "config.json").read_text())["config"]
    out = tmp_path / "g.safetensors"
    code, _, err = run(capsys, "generate", str(tmp_path / "U"), "--dataset", ds, "--ipc", "2", "--out", str(out),
                       "--no-cache", *OBJ)
    assert code == 0, err
    assert len(DistilledSet.load(out).images) > 0 and gen.num_parameters() > 0
    (tmp_path / "U" / "model.safetensors").unlink()
    code, _, err = run(capsys, *meta, "--ipc-range", "1,2", "--meta-steps", "3", "--resume")
    assert code == 0, err
    log = json.loads((tmp_path / "U" / "meta-log.json").read_text())["history"]
    assert [h["step"] for h in log] == [1, 2, 3]
    code, _, err = run(capsys, *meta, "--ipc-range", "1,2", "--meta-steps", "3", "--resume")
    assert code == 0, err
    assert json.loads((tmp_path / "U" / "config.json").read_text())["metadata"]["meta_steps"] == 3
    code, _, err = run(capsys, *meta, "--ipc-range", "1,3", "--meta-steps", "4", "--resume")
    assert code == 2 and "Traceback" not in err


def test_krr_pixel_snapshots_and_resume(tmp_path, tiny_npz, capsys):
    out = tmp_path / "k.safetensors"
    args = ["baseline", "krr-pixel", "--dataset", f"npz:{tiny_npz}", "--ipc", "2", "--steps", "6",
            "--snapshots", "2,4", "--out", str(out), *OBJ]
    code, text, err = run(capsys, *args)
    assert code == 0, err
    assert (tmp_path / "k-step2.safetensors").exists() and (tmp_path / "k-step4.safetensors").exists()
    from mgdd.distilled import DistilledSet
    s2, s4 = DistilledSet.load(tmp_path / "k-step2.safetensors"), DistilledSet.load(tmp_path / "k-step4.safetensors")
    assert s2.meta["timing"]["steps"] == 2 and s4.meta["timing"]["seconds"] >= s2.meta["timing"]["seconds"]


def test_adapt_generate_distill(tmp_path, tiny_npz, capsys):
    ds = f"npz:{tiny_npz}"
    code, _, err = run(capsys, "adapt", "--dataset", ds, "--steps", "3", "--ipcs", "1,2", "--from", "scratch",
                       "--out", str(tmp_path / "G"), *OBJ)
    assert code == 0, err
    code, text, err = run(capsys, "generate", str(tmp_path / "G"), "--dataset", ds, "--ipc", "5",
                          "--out", str(tmp_path / "x.safetensors"), *OBJ)
    assert code == 0, err
    code, text, err = run(capsys, "distill", "--dataset", ds, "--ipc", "1,3", "--steps", "2", "--from", "scratch",
                          "--out", str(tmp_path / "D"), "--evaluate", "--epochs", "2", "--start", "auto", *OBJ)
    assert code == 0, err
    assert "(1 run)" in text and "+-" not in text  # no spread from a single run
    summary = json.loads((tmp_path / "D" / "summary.json").read_text())
    assert set(summary["sets"]) == {"1", "3"} and "evaluation" in summary["sets"]["3"]
    # auto at 3 classes x IPC 3 is the greedy start, and the table says so
    assert summary["sets"]["3"]["start"] == "greedy" and "start" in text.splitlines()[1] and "greedy" in text
    assert (tmp_path / "D" / "ipc3.png").exists() and (tmp_path / "D" / "generator" / "model.safetensors").exists()
    assert not (tmp_path / "D" / "adapt-checkpoint.safetensors").exists()  # a finished run leaves its outputs only


def test_krr_fresh_default_lr_follows_the_size(tmp_path, tiny_npz, capsys):
    """Without --lr, krr-fresh runs 0.03 below IPC 10 and 0.01 from it (results/krr-fresh), in
    `mgdd baseline` and `mgdd distill` alike; krr-pixel stays at 0.03; --lr overrides."""
    from mgdd.baselines import default_lr
    from mgdd.distilled import DistilledSet
    assert [default_lr("krr-fresh", i) for i in (1, 9, 10, 50)] == [0.03, 0.03, 0.01, 0.01]
    assert default_lr("krr-pixel", 50) == 0.03
    data = ["--dataset", f"npz:{tiny_npz}", *OBJ, "--steps", "1"]
    for name, ipc, extra, lr in (("krr-fresh", 10, [], 0.01), ("krr-fresh", 2, [], 0.03),
                                 ("krr-pixel", 10, ["--objective-mode", "fresh"], 0.01),
                                 ("krr-pixel", 10, [], 0.03), ("krr-fresh", 10, ["--lr", "0.02"], 0.02)):
        out = tmp_path / f"{name}-{ipc}-{len(extra)}.safetensors"
        code, _, err = run(capsys, "baseline", name, *data, "--ipc", str(ipc), *extra, "--out", str(out))
        assert code == 0, err
        assert DistilledSet.load(out).meta["lr"] == lr, (name, ipc, extra)
    code, _, err = run(capsys, "distill", "--method", "krr-fresh", *data, "--ipc", "2,10", "--out", str(tmp_path / "D"))
    assert code == 0, err
    assert [DistilledSet.load(tmp_path / "D" / f"ipc{i}.safetensors").meta["lr"] for i in (2, 10)] == [0.03, 0.01]


@pytest.mark.parametrize("method,label", [("krr-pixel", "krr-pixel"), ("krr-fresh", "krr-fresh"),
                                          ("herding", "herding+ls"), ("greedy", "greedy+ls")])
def test_distill_with_another_method(tmp_path, tiny_npz, capsys, method, label):
    """`mgdd distill --method` makes every IPC with krr-pixel or the herding or greedy coreset
    (least-squares labels), writes no generator, and removes its checkpoints unless asked to keep them."""
    from mgdd.distilled import DistilledSet
    steps = ["--steps", "2"] if method.startswith("krr-") else []
    for out, keep in (("D", []), ("K", ["--keep-checkpoints"])):
        code, text, err = run(capsys, "distill", "--method", method, "--dataset", f"npz:{tiny_npz}", "--ipc", "1,2",
                              *steps, *keep, "--out", str(tmp_path / out), *OBJ)
        assert code == 0, err
        summary = json.loads((tmp_path / out / "summary.json").read_text())
        assert summary["method"] == method and set(summary["sets"]) == {"1", "2"}
        ds = DistilledSet.load(tmp_path / out / "ipc2.safetensors")
        assert ds.meta["method"] == label and ds.soft and len(ds.images) == 2 * ds.labels.shape[1]
        assert not (tmp_path / out / "generator").exists()
        checkpoints = sorted(p.name for p in (tmp_path / out).glob("*checkpoint*"))
        expected = ["ipc1.checkpoint.safetensors", "ipc2.checkpoint.safetensors"]
        assert checkpoints == (expected if keep and method.startswith("krr-") else [])
        assert ds.meta["objective"]["mode"] == ("fresh" if method == "krr-fresh" else "pool")


@pytest.mark.parametrize("args,message", [
    (["--method", "herding", "--steps", "5"], "one shot and takes no steps"),
    (["--method", "krr-pixel", "--from", "scratch"], "takes no source"),
    (["--method", "krr-pixel", "--start", "herding"], "takes no start"),
    (["--method", "magic"], "invalid choice"),
])
def test_distill_refuses_options_its_method_does_not_take(tmp_path, tiny_npz, capsys, args, message):
    code, _, err = run(capsys, "distill", "--dataset", f"npz:{tiny_npz}", *args, "--out", str(tmp_path / "D"), *OBJ)
    assert code == 2 and message in err, err
    assert not (tmp_path / "D").exists()


@pytest.mark.parametrize("args,code,message", [
    (["baseline", "random", "--dataset", "fashion-mnsit", "--ipc", "1", "--out", "{tmp}/a.safetensors"], 2,
     "Did you mean 'fashion-mnist'"),
    (["baseline", "random", "--dataset", "npz:{tmp}/nope.npz", "--ipc", "1", "--out", "{tmp}/a.safetensors"], 1,
     "does not exist"),
    (["baseline", "random", "--dataset", "npz:{npz}", "--ipc", "99", "--out", "{tmp}/a.safetensors"], 2,
     "larger than the smallest class"),
    (["baseline", "magic", "--dataset", "npz:{npz}", "--ipc", "1", "--out", "{tmp}/a.safetensors"], 2,
     "unknown baseline"),
    (["evaluate", "{npz}"], 1, "not a safetensors file"),
    (["evaluate", "{tmp}/missing.safetensors"], 1, "does not exist"),
    (["generate", "{tmp}", "--dataset", "npz:{npz}", "--ipc", "1", "--out", "{tmp}/g.safetensors"], 1,
     "/model.safetensors. Make one"),
    (["baseline", "random+ls", "--dataset", "npz:{npz}", "--ipc", "1", "--lam", "-1", "--out", "{tmp}/a.safetensors"],
     2, "must be a finite number > 0"),
    (["baseline", "random+ls", "--dataset", "npz:{npz}", "--ipc", "1", "--label-mu", "best", "--out",
      "{tmp}/a.safetensors"], 2, "expected auto, gcv or a finite number > 0, got 'best'"),
    (["evaluate", "{tmp}/x.safetensors", "--model", "vgg"], 2, "unknown model"),
    (["bench", "--preset", "quick", "--out", "{tmp}/none", "--retime"], 2, "no finished run to re-time"),
    (["bench", "--preset", "quick", "--out", "{tmp}/none", "--retime", "--force"], 2, "cannot be combined"),
])
def test_bad_input_one_clear_error(tmp_path, tiny_npz, args, code, message):
    args = [a.format(tmp=tmp_path, npz=tiny_npz) for a in args]
    r = subprocess.run([sys.executable, "-m", "mgdd", *args], capture_output=True, text=True)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "none").exists()  # a refused command writes nothing


def test_label_mu_gcv_is_recorded_in_the_set(tmp_path, tiny_npz, capsys):
    from mgdd import krr
    from mgdd.distilled import DistilledSet
    out = tmp_path / "g.safetensors"
    code, _, err = run(capsys, "baseline", "random+ls", "--dataset", f"npz:{tiny_npz}", "--ipc", "2", "--label-mu", "gcv",
                       "--out", str(out), *OBJ)
    assert code == 0, err
    obj = DistilledSet.load(out).meta["objective"]
    assert obj["label_mu"] == "gcv" and obj["label_mu_picked"] in krr.GCV_MUS and obj["mu"] == 1e-3
    default = tmp_path / "d.safetensors"                 # auto: under 100 images a class, mu's labels
    code, _, err = run(capsys, "baseline", "random+ls", "--dataset", f"npz:{tiny_npz}", "--ipc", "2", "--out",
                       str(default), *OBJ)
    assert code == 0, err
    obj = DistilledSet.load(default).meta["objective"]
    assert obj["label_mu"] == "auto" and obj["label_mu_picked"] == obj["mu"] == 1e-3


def test_existing_output_is_kept(tmp_path, tiny_npz, capsys):
    out = tmp_path / "a.safetensors"
    out.write_bytes(b"precious")
    code, _, err = run(capsys, "baseline", "random", "--dataset", f"npz:{tiny_npz}", "--ipc", "1", "--out", str(out))
    assert code == 2 and "--force" in err and out.read_bytes() == b"precious"


def test_interrupted_distill_keeps_its_finished_evaluations(tmp_path, tiny_npz, capsys, monkeypatch):
    """#43 (17): summary.json holds every finished evaluation as soon as it ends, and --resume
    scores only the sets it has no scores for (here: the one whose evaluation was cut off)."""
    import mgdd.pipeline as pipeline
    real, calls = pipeline.evaluate, []

    def cut_at_second(ds, *a, **k):
        calls.append(ds.meta["ipc"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(ds, *a, **k)

    monkeypatch.setattr(pipeline, "evaluate", cut_at_second)
    args = ["distill", "--method", "herding", "--dataset", f"npz:{tiny_npz}", "--ipc", "1,2", "--evaluate",
            "--epochs", "2", "--out", str(tmp_path / "D"), *OBJ]
    code, _, _ = run(capsys, *args)
    assert code == 130
    partial = json.loads((tmp_path / "D" / "summary.json").read_text())
    assert partial["finished"] is False and "evaluation" in partial["sets"]["1"]
    assert "evaluation" not in partial["sets"]["2"]
    monkeypatch.setattr(pipeline, "evaluate", lambda ds, *a, **k: (calls.append(ds.meta["ipc"]), real(ds, *a, **k))[1])
    code, _, err = run(capsys, *args, "--resume")
    assert code == 0, err
    assert calls == [1, 2, 2]  # IPC 1 kept its scores; IPC 2 was scored once more
    final = json.loads((tmp_path / "D" / "summary.json").read_text())
    assert "finished" not in final and final["sets"]["1"]["evaluation"] == partial["sets"]["1"]["evaluation"]
    # each score names its protocol and what was changed from it (#40)
    assert final["sets"]["2"]["evaluation"]["protocol"] == "mgdd"
    assert final["sets"]["2"]["evaluation"]["deviations"] == {"epochs": 2}


def test_a_distill_cut_off_mid_evaluation_continues_that_evaluation(tmp_path, tiny_npz, capsys, monkeypatch):
    """`mgdd distill --evaluate` cut off inside a set's evaluation: --resume continues its run from
    the checkpoint in ipcN.eval-checkpoints/ (the score says at which epoch) and ends with the score
    of a run never stopped; the folder goes once the score is in summary.json."""
    import importlib
    ev = importlib.import_module("mgdd.evaluate")
    args = ["distill", "--method", "herding", "--dataset", f"npz:{tiny_npz}", "--ipc", "1,2", "--evaluate",
            "--epochs", "4", *OBJ]
    assert run(capsys, *args, "--out", str(tmp_path / "whole"))[0] == 0
    monkeypatch.setattr(ev, "CHECKPOINT_SECONDS", 0)
    plain, bars = ev.Progress, []

    class CutInSecond(plain):  # Ctrl-C after the second evaluation's second epoch
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            bars.append(self)

        def update(self, n=1, **postfix):
            super().update(n, **postfix)
            if len(bars) == 2 and self.n == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(ev, "Progress", CutInSecond)
    assert run(capsys, *args, "--out", str(tmp_path / "D"))[0] == 130
    assert (tmp_path / "D" / "ipc2.eval-checkpoints" / "seed0.safetensors").is_file()
    monkeypatch.setattr(ev, "Progress", plain)
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "D"), "--resume")
    assert code == 0, err
    got, want = (json.loads((tmp_path / d / "summary.json").read_text())["sets"]["2"]["evaluation"]
                 for d in ("D", "whole"))
    assert got["per_run"][0]["resumed_at_epoch"] == 2 and got["accuracy_mean"] == want["accuracy_mean"]
    assert not (tmp_path / "D" / "ipc2.eval-checkpoints").exists()


def test_resume_onto_other_data_of_the_same_shape_is_refused(tmp_path, capsys):
    """#43 (5): a checkpoint records its training data's fingerprint, so --resume after the file
    at the same path changed its pixels (same shapes, same name) is refused."""
    from conftest import make_npz
    data = make_npz(tmp_path / "d.npz", seed=0)
    args = ["baseline", "krr-pixel", "--dataset", f"npz:{data}", "--ipc", "1", "--steps", "2",
            "--out", str(tmp_path / "K.safetensors"), *OBJ]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    make_npz(tmp_path / "d.npz", seed=1)
    code, _, err = run(capsys, *args[:-len(OBJ) - 2], "--steps", "4", "--out", str(tmp_path / "K.safetensors"),
                       "--resume", *OBJ)
    assert code == 2 and "other settings: dataset" in err and "fingerprint" in err, err


def test_the_cli_starts_without_torch():
    """#43 (13): importing the command line imports no torch (the package API loads on first
    use), so `mgdd --help` is quick and Ctrl-C while a command starts lands inside main(), which
    prints one line; the package's names still resolve to the same functions."""
    code = ("import sys, mgdd.cli; assert 'torch' not in sys.modules; import mgdd.pipeline, mgdd; "
            "assert callable(mgdd.adapt) and callable(mgdd.evaluate) and callable(mgdd.generate); "
            "assert mgdd.distill is mgdd.pipeline.distill and 'KRRObjective' in dir(mgdd)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_a_large_pool_is_announced_and_its_moments_carry_an_estimate():
    """#43 (minor): --pool-size 2000 ran 300+ s with no word. A pool over LARGE_POOL networks is
    announced before its moments, and a long remainder gets an estimate from the mean so far."""
    import io

    from mgdd.cli.common import LARGE_POOL, moments_progress

    ticks = iter([0.0, 40.0])  # start; 40 s for network 1 of 2000
    out = io.StringIO()
    say = moments_progress(2000, stream=out, clock=lambda: next(ticks))
    say(1, 2000)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("mgdd: note: --pool-size 2000:") and "250 times" in lines[0]
    assert lines[1] == "  feature moments 1/2000 (40 s so far, about 22.2 h left)"
    out = io.StringIO()
    ticks = iter([0.0, 5.0])
    say = moments_progress(LARGE_POOL, stream=out, clock=lambda: next(ticks))  # no note; 5 s left: no estimate
    say(1, 2)
    assert out.getvalue() == "  feature moments 1/2\n"
