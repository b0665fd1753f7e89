"""Evaluation protocols by name (mgdd/protocols.py): each scores what it says, records itself
and any setting changed from it, and refuses settings it does not take."""

import copy

import pytest
import torch

from mgdd.errors import UsageError
from mgdd.protocols import (PROTOCOLS, RFAD_SETTINGS, _centred_accuracy, _outputs, _rfad_network, _validation_split,
                            evaluate_protocol, hard_copy, rfad_settings)

TINY_RFAD = dict(width=8, max_iterations=40, eval_every=10, patience=20, valid_per_class=3)


@pytest.fixture
def soft_set(tiny_objective):
    from mgdd.baselines import random_ls
    return random_ls(tiny_objective, 2, seed=0)


def test_rfad_settings_are_its_table_then_the_nearest_ipc_then_cifar10():
    assert rfad_settings("fashion-mnist", 10) == ((1e-2, 8, 1e-3), "RFAD's setting for fashion-mnist at IPC 10")
    (lr_s_wd, source) = rfad_settings("fashion-mnist", 20)  # log-nearest of 10 and 50 is 10
    assert lr_s_wd == RFAD_SETTINGS[("fashion-mnist", 10)] and "nearest" in source and "IPC 20" in source
    assert rfad_settings("cifar100", 50)[0] == RFAD_SETTINGS[("cifar100", 10)]  # CIFAR-100 has IPC 1 and 10 only
    assert rfad_settings("npz:x.npz", 1)[0] == RFAD_SETTINGS[("cifar10", 1)]


def test_rfad_network_starts_centred_at_zero():
    """Outputs are f(x) - f_0(x): before any step every prediction is the zero vector, so the
    accuracy is the share of class 0 (argmax of a tie is the first class)."""
    torch.manual_seed(0)
    net = _rfad_network(1, 3, (12, 12), 8)
    x, y = torch.randn(9, 1, 12, 12), torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2])
    assert _centred_accuracy(net, x, y, _outputs(copy.deepcopy(net), x)) == pytest.approx(2 / 9)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.padding == (1, 1) for m in convs) and not any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())


def test_rfad_stops_after_patience_and_tests_the_best_validated_network(soft_set, tiny_dataset):
    res = evaluate_protocol(soft_set, tiny_dataset, "rfad", runs=2, progress=False, **TINY_RFAD)
    assert res["protocol"] == "rfad" and res["deviations"]["width"] == 8 and "valid_per_class" in res["deviations"]
    for run in res["per_run"]:
        assert run["best_iteration"] % 10 == 0
        assert run["iterations"] == min(40, run["best_iteration"] + 20)  # patience 20 after the best, or the cap
        assert 0 <= run["accuracy"] <= 1
    assert res["settings"]["label_scale"] == 8.0 and res["label_kind"] == "soft"


def _rfad_reference(ds, dataset, seed: int, settings: dict) -> dict:
    """The rfad loop written plainly: f_0 run again on every batch and at every check, one batch
    of every image at once; the second formulation of protocols._rfad_run, which computes f_0's
    outputs once a run."""
    from mgdd.evaluate import images_to_test
    x, y, s = ds.images, settings["label_scale"] * ds.labels.float(), settings["label_scale"]
    n = len(x)
    batch = n if n <= settings["full_batch_up_to"] else settings["batch"]
    vx, vy = _validation_split(dataset, settings["valid_per_class"], seed)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = _rfad_network(dataset.channels, dataset.num_classes, dataset.image_size, settings["width"])
    net0 = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=settings["lr"], momentum=0.9)

    def accuracy(xs, ys):
        with torch.no_grad():
            return (net(xs) - net0(xs)).argmax(1).eq(ys).sum().item() / len(ys)
    best, best_it, best_state, steps = -1.0, -1, None, 0
    for it in range(settings["max_iterations"]):
        if it % settings["eval_every"] == 0 and accuracy(vx, vy) > best:
            best, best_it, best_state = accuracy(vx, vy), it, copy.deepcopy(net.state_dict())
        if it >= best_it + settings["patience"]:
            break
        steps += 1
        idx = torch.arange(n) if batch == n else torch.randint(n, (batch,), generator=g)
        with torch.no_grad():
            out0 = net0(x[idx])
        loss = ((net(x[idx]) - out0 - y[idx]) ** 2).mean() / s ** 2 + settings["weight_decay"] * sum(
            ((p - p0) ** 2).sum() for p, p0 in zip(net.parameters(), net0.parameters()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.load_state_dict(best_state)
    return {"accuracy": accuracy(images_to_test(ds, dataset), dataset.test_y), "valid_accuracy": best,
            "best_iteration": best_it, "iterations": steps}


@pytest.mark.parametrize("batched", [False, True])
def test_rfad_run_matches_the_loop_that_runs_f0_every_time(soft_set, tiny_dataset, batched):
    """f_0's outputs computed once a run give what running f_0 on every batch and check gives:
    the same best iteration, iteration count and accuracies, full batch and sampled batches."""
    tiny = dict(TINY_RFAD, max_iterations=60, patience=30, weight_decay=1e-3)
    if batched:
        tiny.update(full_batch_up_to=3, batch=4)
    res = evaluate_protocol(soft_set, tiny_dataset, "rfad", runs=1, seed=1, progress=False, **tiny)
    ref = _rfad_reference(soft_set, tiny_dataset, 1, res["settings"])
    got = res["per_run"][0]
    for key in ("best_iteration", "iterations"):
        assert got[key] == ref[key], key
    for key in ("accuracy", "valid_accuracy"):
        assert got[key] == pytest.approx(ref[key], abs=1e-9), key


def test_dc_and_dsa_score_hard_labels_and_record_a_changed_epoch_count(soft_set, tiny_dataset):
    for name in ("dc", "dsa"):
        res = evaluate_protocol(soft_set, tiny_dataset, name, runs=1, progress=False, epochs=2)
        assert res["label_kind"] == "hard" and res["dsa"] == (name == "dsa")
        assert res["deviations"] == {"epochs": 2} and res["protocol_source"] == PROTOCOLS[name].source
    hard = hard_copy(soft_set)
    assert torch.equal(hard.labels, soft_set.labels.argmax(1)) and not hard.soft
    with pytest.raises(UsageError, match="only epochs may change"):
        evaluate_protocol(soft_set, tiny_dataset, "dc", lr=0.1)
    with pytest.raises(UsageError, match="no setting"):
        evaluate_protocol(soft_set, tiny_dataset, "rfad", epochs=3)
    with pytest.raises(UsageError, match="unknown protocol"):
        evaluate_protocol(soft_set, tiny_dataset, "kip")


def test_an_interrupted_scoring_under_named_protocols_continues_with_resume(soft_set, tmp_path, tiny_npz, capsys):
    """`mgdd evaluate --protocol mgdd,dc --out R`: each protocol's runs keep their progress in
    R.checkpoints/NAME/; left by an interrupted command, --resume continues them (a finished run is
    only tested again, with the same accuracy) and the folder goes once R is written."""
    import json

    from mgdd.cli import main
    from mgdd.data import load_dataset
    s = tmp_path / "s.safetensors"
    soft_set.save(s)
    dataset = load_dataset(f"npz:{tiny_npz}")
    ckpts = tmp_path / "r.json.checkpoints"
    # what the command cut off during dc leaves: mgdd's run finished (here under its protocol's folder)
    done = evaluate_protocol(soft_set, dataset, "mgdd", progress=False, epochs=2, checkpoint_dir=ckpts)
    assert (ckpts / "mgdd" / "seed0.safetensors").is_file()
    args = ["evaluate", str(s), "--protocol", "mgdd,dc", "--epochs", "2", "--out", str(tmp_path / "r.json"), "--quiet"]
    assert main(args) == 2 and "unfinished evaluation" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    res = json.loads((tmp_path / "r.json").read_text())["protocols"]
    assert res["mgdd"]["per_run"][0]["resumed_at_epoch"] == 2 and "resumed_at_epoch" not in res["dc"]["per_run"][0]
    assert res["mgdd"]["accuracy_mean"] == done["accuracy_mean"] and not ckpts.exists()


def test_rfad_memory_is_estimated_before_training(soft_set, tiny_dataset, monkeypatch):
    monkeypatch.setenv("MGDD_MEMORY_LIMIT", "1K")
    with pytest.raises(UsageError, match="rfad protocol's training step .* would need about"):
        evaluate_protocol(soft_set, tiny_dataset, "rfad", progress=False, **TINY_RFAD)


def test_a_set_scored_under_two_protocols_records_both(tmp_path, tiny_npz, capsys):
    import json

    from mgdd.cli import main
    s = tmp_path / "s.safetensors"
    main(["baseline", "random+ls", "--dataset", f"npz:{tiny_npz}", "--ipc", "2", "--out", str(s), "--pool-size", "2",
          "--feature-width", "8", "--feature-depth", "2", "--quiet"])
    out = tmp_path / "e.json"
    main(["evaluate", str(s), "--protocol", "mgdd,dc", "--epochs", "2", "--out", str(out), "--quiet"])
    res = json.loads(out.read_text())["protocols"]
    assert [res[k]["protocol"] for k in ("mgdd", "dc")] == ["mgdd", "dc"]
    assert res["mgdd"]["label_kind"] == "soft" and res["dc"]["label_kind"] == "hard"
    assert res["mgdd"]["deviations"] == res["dc"]["deviations"] == {"epochs": 2}
    one = tmp_path / "one.json"
    main(["evaluate", str(s), "--epochs", "2", "--out", str(one), "--quiet"])  # the default names its protocol too
    assert json.loads(one.read_text())["protocol"] == "mgdd"
    # --batch-size tunes ours: recorded as a deviation, refused with another protocol
    small = tmp_path / "small.json"
    main(["evaluate", str(s), "--epochs", "2", "--batch-size", "4", "--out", str(small), "--quiet"])
    res = json.loads(small.read_text())
    assert res["batch_size"] == 4 and res["deviations"] == {"batch_size": 4, "epochs": 2}
    assert main(["evaluate", str(s), "--protocol", "dc", "--batch-size", "4", "--quiet"]) == 2


def test_an_interrupted_rfad_run_resumes_exactly_and_a_finished_one_is_only_tested_again(
        soft_set, tiny_dataset, tmp_path, monkeypatch):
    """rfad's runs keep their state like the other protocols' (half an hour or more a run on a CPU):
    cut after iteration 25 and resumed, a run ends with the same best iteration, validation and
    test accuracy as the uninterrupted run; batches are sampled here (over full_batch_up_to), so
    the sampler's state must carry over. A finished run's file is only tested again, and a resume
    with another setting is refused."""
    import importlib

    from mgdd.io import load_tensors
    ev, pr = importlib.import_module("mgdd.evaluate"), importlib.import_module("mgdd.progress")
    tiny = dict(TINY_RFAD, full_batch_up_to=3, batch=4, max_iterations=60, patience=60)
    assert len(soft_set.images) > 4
    whole = evaluate_protocol(soft_set, tiny_dataset, "rfad", progress=False, checkpoint_dir=tmp_path / "whole",
                              **tiny)["per_run"][0]

    class Stop(Exception):
        pass

    class StopAt(pr.Progress):  # killed right after the checkpoint of iteration 25
        def update(self, n=1, **postfix):
            super().update(n, **postfix)
            if self.n == 25:
                raise Stop()

    monkeypatch.setattr(ev, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(pr, "Progress", StopAt)
    with pytest.raises(Stop):
        evaluate_protocol(soft_set, tiny_dataset, "rfad", progress=False, checkpoint_dir=tmp_path / "cut", **tiny)
    monkeypatch.setattr(pr, "Progress", StopAt.__mro__[1])
    resumed = evaluate_protocol(soft_set, tiny_dataset, "rfad", progress=False, checkpoint_dir=tmp_path / "cut",
                                resume=True, **tiny)["per_run"][0]
    assert resumed["resumed_at_iteration"] == 25
    for key in ("accuracy", "valid_accuracy", "best_iteration", "iterations"):
        assert resumed[key] == whole[key], key
    # the last and the best networks, the momentum and the sampler's state, bit for bit
    (a, _), (b, _) = (load_tensors(tmp_path / d / "rfad" / "seed0.safetensors") for d in ("whole", "cut"))
    assert a.keys() == b.keys() and any(k.startswith("param.best.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    again = evaluate_protocol(soft_set, tiny_dataset, "rfad", progress=False, checkpoint_dir=tmp_path / "cut",
                              resume=True, **tiny)["per_run"][0]
    assert again["resumed_at_iteration"] == whole["iterations"] and again["accuracy"] == whole["accuracy"]
    with pytest.raises(UsageError, match="other settings"):
        evaluate_protocol(soft_set, tiny_dataset, "rfad", progress=False, checkpoint_dir=tmp_path / "cut",
                          resume=True, **dict(tiny, lr=0.5))


def _protocols_script(monkeypatch, out):
    """benchmarks/protocols.py with its cells in ``out`` (MGDD_PROTOCOLS_OUT)."""
    import importlib.util
    from pathlib import Path
    monkeypatch.setenv("MGDD_PROTOCOLS_OUT", str(out))
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "protocols.py"
    spec = importlib.util.spec_from_file_location("protocols_script", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_protocol_table_reads_ars_from_the_augmented_column(tmp_path, monkeypatch, capsys):
    """The table's ARS is DD-Ranking's, from the set and random+ls with and without DSA; a row
    without its augmented cell (or its subset's) gets none; HLR / IOR / LRS as before."""
    import json
    from mgdd.scores import augmentation_robust_score, label_robust_score
    script = _protocols_script(monkeypatch, tmp_path)
    (tmp_path / "cells").mkdir()

    def cell(method, protocol, acc, runs=1):
        (tmp_path / "cells" / f"{method}-ipc1-{protocol}.json").write_text(json.dumps(
            {"accuracy_mean": acc, "accuracy_std": 0.0, "runs": runs, "protocol": protocol}))
    (tmp_path / "cells" / "real-hard-e10.json").write_text(json.dumps({"accuracy_mean": 0.9, "epochs": 10}))
    cell("random+ls", "mgdd", 0.64), cell("random+ls", "dc", 0.51), cell("random+ls", script.AUG, 0.60)
    cell("greedy+ls", "mgdd", 0.72), cell("greedy+ls", "dc", 0.66), cell("greedy+ls", script.AUG, 0.70)
    cell("herding+ls", "mgdd", 0.70), cell("herding+ls", "dc", 0.67)  # no augmented cell
    script.main(["table"])
    rows = {r.split(" | ")[0].strip("| "): r.split(" | ") for r in (tmp_path / "table.md").read_text().splitlines()
            if r.startswith("| ") and "+ls" in r}
    ars = augmentation_robust_score(0.70, 0.60, 0.72, 0.64)
    assert rows["greedy+ls"][-1].strip(" |") == f"{ars:.2f}"
    assert rows["greedy+ls"][-2] == f"{label_robust_score(0.9 - 0.66, 0.72 - 0.64):.2f}"
    assert rows["herding+ls"][-1].strip(" |") == "—"
    assert rows["random+ls"][-1].strip(" |") == f"{augmentation_robust_score(0.6, 0.6, 0.64, 0.64):.2f}" == "26.89"
    capsys.readouterr()


def test_protocol_table_marks_a_cell_that_scored_other_images(tmp_path, monkeypatch, capsys):
    """A row's cells that recorded other images (hard_digest) than its first are marked, with the
    footnote; cells on the same images, or recording none, are not."""
    import json
    script = _protocols_script(monkeypatch, tmp_path)
    (tmp_path / "cells").mkdir()

    def cell(method, protocol, acc, digest=None):
        c = {"accuracy_mean": acc, "accuracy_std": 0.0, "runs": 1, "protocol": protocol}
        if digest:
            c["hard_digest"] = digest
        (tmp_path / "cells" / f"{method}-ipc1-{protocol}.json").write_text(json.dumps(c))
    cell("krr-pixel", "mgdd", 0.77), cell("krr-pixel", "dc", 0.68, "aaa"), cell("krr-pixel", "dsa", 0.59, "bbb")
    cell("greedy+ls", "mgdd", 0.72, "ccc"), cell("greedy+ls", "dsa", 0.60, "ccc")
    script.main(["table"])
    rows = {r.split(" | ")[0].strip("| "): r.split(" | ") for r in (tmp_path / "table.md").read_text().splitlines()
            if r.startswith(("| krr-pixel |", "| greedy+ls |"))}
    assert rows["krr-pixel"][1] == "77.00 (1)" and rows["krr-pixel"][2] == "68.00 (1)"
    assert rows["krr-pixel"][3] == "59.00 (1) †"
    assert "†" not in " ".join(rows["greedy+ls"])
    assert "† Scored other images" in (tmp_path / "table.md").read_text()
    cell("krr-pixel", "dsa", 0.59, "aaa")
    script.main(["table"])
    assert "†" not in (tmp_path / "table.md").read_text()
    capsys.readouterr()


def test_protocol_cells_copy_no_augmented_evaluation(tmp_path, monkeypatch, soft_set):
    """A hard-labelled set's dc evaluation may be copied from an identical mgdd or dc cell, and a
    set's dsa evaluation from a dsa cell with the same images, but never across dsa and the
    others, never from a cell that ran with augmentation (the mgdd-aug column), nor for that column."""
    import json
    from mgdd.distilled import set_digest
    script = _protocols_script(monkeypatch, tmp_path)
    (tmp_path / "cells").mkdir()
    hard = hard_copy(soft_set)
    digest = set_digest(hard)
    aug = {"hard_digest": digest, "runs": 1, "protocol": "mgdd", "label_kind": "hard", "deviations": {"dsa": True}}
    (tmp_path / "cells" / f"random-ipc2-{script.AUG}.json").write_text(json.dumps(aug))
    assert script.same_evaluation(hard, "dc", 2, 1) is None
    plain = dict(aug, deviations={})
    (tmp_path / "cells" / "random-ipc2-mgdd.json").write_text(json.dumps(plain))
    assert script.same_evaluation(hard, "dc", 2, 1).name == "random-ipc2-mgdd.json"
    assert script.same_evaluation(hard, script.AUG, 2, 1) is None
    assert script.same_evaluation(hard, "dsa", 2, 1) is None  # dsa is never copied from dc or mgdd
    dsa = dict(plain, protocol="dsa")
    (tmp_path / "cells" / "random-ipc2-dsa.json").write_text(json.dumps(dsa))
    assert script.same_evaluation(hard, "dsa", 2, 1).name == "random-ipc2-dsa.json"
    assert script.same_evaluation(soft_set, "dsa", 2, 1).name == "random-ipc2-dsa.json"  # scored hard: same images
    assert script.same_evaluation(hard, "dsa", 2, 3) is None  # another run count is another computation
    (tmp_path / "cells" / "random-ipc2-mgdd.json").unlink()
    assert script.same_evaluation(hard, "dc", 2, 1) is None  # dc is never copied from dsa
    assert script.columns(f"mgdd,{script.AUG}") == ["mgdd", script.AUG]
    with pytest.raises(UsageError):
        script.columns("mgdd,nope")


def test_protocols_script_makes_krr_fresh_as_the_baseline_command_does(tmp_path, monkeypatch, tiny_objective):
    """benchmarks/protocols.py's krr-fresh set is `mgdd baseline krr-fresh`'s (its default steps and
    lr, seed 0): the same images; a second call reads the saved set instead of making it again."""
    import mgdd.baselines as baselines
    script = _protocols_script(monkeypatch, tmp_path)
    monkeypatch.setattr(script, "SETS", tmp_path / "sets")
    monkeypatch.setitem(baselines.DEFAULT_STEPS, "krr-fresh", 3)
    made = script.make_set("krr-fresh", 2, tiny_objective)
    ref = baselines.run_baseline("krr-fresh", tiny_objective.dataset, 2, 0, tiny_objective, steps=3,
                                 lr=baselines.default_lr("krr-fresh", 2), progress=False)
    assert made.meta["method"] == "krr-fresh" and made.meta["objective"]["mode"] == "fresh"
    assert torch.equal(made.images, ref.images) and torch.allclose(made.labels, ref.labels)
    monkeypatch.setitem(baselines.DEFAULT_STEPS, "krr-fresh", 5)  # not made again: the saved set is read
    assert torch.equal(script.make_set("krr-fresh", 2, tiny_objective).images, made.images)
